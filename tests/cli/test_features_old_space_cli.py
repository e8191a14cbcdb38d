"""`compat features class-means` and `compat features denoise` as a user runs them: values against an
independent numpy computation, and bad input as one-paragraph errors."""

import math

import numpy as np
import pytest
from cli_runner import assert_user_error, compat
from compat_core.features import FeatureSet, save
from compat_core.old_space import credible_mask


@pytest.fixture
def feature_file(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.array([2, 0, 1, 0, 2, 0, 1, 2, 0, 2, 0, 0])  # unsorted, class sizes 6 / 2 / 4
    features = rng.normal(size=(12, 5)).astype(np.float32) + labels[:, None]
    path = tmp_path / "old.npz"
    save(path, FeatureSet(features, labels, np.arange(100, 112), classes=["a", "b", "c", "d"]))
    return path, features, labels


def test_class_means_are_normalised_means_of_normalised_features(feature_file, tmp_path):
    path, features, labels = feature_file
    proc = compat("features", "class-means", path, "--out", tmp_path / "m.npz")
    out = np.load(tmp_path / "m.npz")
    assert out["classes"].tolist() == ["a", "b", "c", "d"] and out["counts"].tolist() == [6, 2, 4, 0]
    for c in range(3):
        rows = features[labels == c] / np.linalg.norm(features[labels == c], axis=1, keepdims=True)
        expected = rows.mean(axis=0) / np.linalg.norm(rows.mean(axis=0))
        assert np.allclose(out["means"][c], expected, atol=1e-6)
    assert not out["means"][3].any() and "no sample" in proc.stderr and "d" in proc.stderr


def brute_force(features, labels, keep, column=False):
    x = features / np.linalg.norm(features, axis=1, keepdims=True)
    if column:
        x = x / np.linalg.norm(x, axis=0, keepdims=True)
    mask = np.zeros(len(labels), dtype=bool)
    for c in set(labels.tolist()):
        members = [i for i in range(len(labels)) if labels[i] == c]
        centre = x[members].mean(axis=0)
        ranked = sorted(members, key=lambda i: (np.linalg.norm(x[i] - centre), i))
        mask[ranked[:math.ceil(keep * len(members))]] = True
    return mask


@pytest.mark.parametrize("keep", [0.9, 0.5, 1.0])
def test_denoise_keeps_the_samples_nearest_each_class_mean(feature_file, tmp_path, keep):
    path, features, labels = feature_file
    compat("features", "denoise", path, "--keep", keep, "--out", tmp_path / "d.npz")
    out = np.load(tmp_path / "d.npz")
    assert out["credible"].tolist() == brute_force(features, labels, keep).tolist()
    assert out["index"].tolist() == list(range(100, 112)) and float(out["keep"]) == keep
    assert credible_mask(features, labels, keep).tolist() == out["credible"].tolist()


def test_column_normalisation_is_an_option(feature_file, tmp_path):
    path, features, labels = feature_file
    compat("features", "denoise", path, "--keep", "0.5", "--column-normalize", "--out", tmp_path / "d.npz")
    got = np.load(tmp_path / "d.npz")["credible"]
    assert got.tolist() == brute_force(features, labels, 0.5, column=True).tolist()


@pytest.mark.parametrize("args, fragments", [
    (["--keep", "1.5"], ["keep ratio 1.5", "(0, 1]"]),
    (["--keep", "0"], ["keep ratio 0", "(0, 1]"]),
    (["--out", "d.txt"], ["must end in .npz"]),
])
def test_denoise_bad_input(feature_file, tmp_path, args, fragments):
    path, _, _ = feature_file
    full = ["features", "denoise", path, "--out", tmp_path / "d.npz", *args]
    assert_user_error(compat(*full, check=False), *fragments)


def test_missing_feature_file_is_an_error(tmp_path):
    proc = compat("features", "class-means", tmp_path / "none.npz", "--out", tmp_path / "m.npz", check=False)
    assert_user_error(proc, "no such file", "compat features extract")
