"""Validation holdouts (``compat data split --validation``), ``@split.json:train|val`` split specs and
digits' real train/val/test splits: choose on validation, report on test."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_runner import assert_user_error, compat
from compat_core.data import open_dataset
from compat_core.data.base import ArrayDataset
from compat_core.data.selection import make_holdout, make_split, parse_classes
from compat_core.errors import CompatError

TINY = ["--backbone", "test_resnet", "--epochs", "1", "--image-size", "8", "--embedding-dim", "8",
        "--batch-size", "64", "--device", "cpu"]


@pytest.fixture(scope="module")
def train():
    return open_dataset("digits", "train", 8)


@pytest.fixture(scope="module")
def manifest_path(train, tmp_path_factory):
    path = tmp_path_factory.mktemp("holdout") / "split.json"
    path.write_text(json.dumps(make_split(train, 0.5, by="sample", seed=3, validation=0.1)))
    return path


def write(tmp_path, manifest, name="bad.json"):
    path = tmp_path / name
    path.write_text(json.dumps(manifest))
    return path


# -- make_holdout ------------------------------------------------------------------------------------
def test_holdout_is_disjoint_and_covers_the_train_split(train):
    holdout = make_holdout(train, 0.1, seed=0)
    assert (holdout["from"], holdout["fraction"], holdout["seed"]) == ("train", 0.1, 0)
    assert not set(holdout["train"]) & set(holdout["val"])
    assert sorted(holdout["train"] + holdout["val"]) == sorted(train.base_indices.tolist())
    assert holdout["train"] == sorted(holdout["train"]) and holdout["val"] == sorted(holdout["val"])


def test_holdout_is_stratified(train):
    holdout = make_holdout(train, 0.2, seed=1)
    label_of = dict(zip(train.base_indices.tolist(), train.labels.tolist(), strict=True))
    got = np.bincount([label_of[i] for i in holdout["val"]], minlength=10)
    expected = [round(0.2 * n) for n in np.bincount(train.labels)]
    assert got.tolist() == expected


def test_a_class_of_two_gives_one_to_validation():
    images = torch.zeros(5, 1, 2, 2, dtype=torch.uint8)
    toy = ArrayDataset(images, np.array([0, 0, 1, 1, 1]), ["a", "b"], 2, name="toy")
    holdout = make_holdout(toy, 0.1, seed=0)  # round(0.2) = round(0.3) = 0, yet each class gives one
    assert len(holdout["val"]) == 2 and len(holdout["train"]) == 3


def test_same_seed_same_manifest_another_seed_another(train):
    first, again = make_split(train, 0.5, seed=4, validation=0.1), make_split(train, 0.5, seed=4, validation=0.1)
    assert first == again
    other = make_holdout(train, 0.1, seed=5)
    assert other["val"] != first["holdout"]["val"]


def test_old_new_parts_do_not_depend_on_the_holdout(train):
    for by in ("class", "sample"):
        plain, held = make_split(train, 0.5, by=by, seed=2), make_split(train, 0.5, by=by, seed=2, validation=0.2)
        assert (plain["old"], plain["new"]) == (held["old"], held["new"]) and "holdout" not in plain


@pytest.mark.parametrize("fraction", [0, 0.6, -1, float("nan")])
def test_bad_fraction_is_a_user_error_with_the_fix(train, fraction):
    with pytest.raises(CompatError, match=r"\(0, 0.5\].*--validation 0.1"):
        make_holdout(train, fraction, seed=0)
    with pytest.raises(CompatError, match="--validation 0.1"):
        make_split(train, 0.5, validation=fraction)


# -- @split.json:train / @split.json:val -------------------------------------------------------------
def test_val_spec_opens_exactly_the_held_out_images_with_their_labels(train, manifest_path):
    holdout = json.loads(manifest_path.read_text())["holdout"]
    for part in ("train", "val"):
        opened = open_dataset("digits", f"@{manifest_path}:{part}", 8)
        np.testing.assert_array_equal(opened.base_indices, holdout[part])
        positions = np.flatnonzero(np.isin(train.base_indices, holdout[part]))
        np.testing.assert_array_equal(opened.labels, train.labels[positions])
        assert np.array_equal(opened.load_images(np.arange(len(opened))), train.load_images(positions))
        assert opened.classes == train.classes and opened.name == "digits"


def test_sample_old_part_on_a_holdout_part_keeps_the_intersection(manifest_path):
    manifest = json.loads(manifest_path.read_text())
    part = open_dataset("digits", f"@{manifest_path}:train", 8)
    old = parse_classes(f"@{manifest_path}:old", part)
    expected = np.intersect1d(manifest["old"]["indices"], manifest["holdout"]["train"])
    np.testing.assert_array_equal(old.base_indices, expected)
    with pytest.raises(CompatError, match="not in digits"):  # the test split shares no sample with them
        parse_classes(f"@{manifest_path}:old", open_dataset("digits", "test", 8))


def test_missing_manifest_and_missing_holdout_name_the_fix(train, tmp_path):
    with pytest.raises(CompatError, match="does not exist.*--validation 0.1 --out"):
        open_dataset("digits", f"@{tmp_path / 'none.json'}:val", 8)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(CompatError, match="not readable JSON"):
        open_dataset("digits", f"@{tmp_path / 'junk.json'}:val", 8)
    plain = write(tmp_path, make_split(train, 0.5, seed=0))
    with pytest.raises(CompatError, match=r"no validation holdout.*compat data split DATA --validation 0.1 --out"):
        open_dataset("digits", f"@{plain}:val", 8)


def test_unknown_part_is_a_user_error(manifest_path):
    for spec in (f"@{manifest_path}:old", f"@{manifest_path}:test", f"@{manifest_path}", "@:val"):
        with pytest.raises(CompatError, match=r"`@split.json:train` or `@split.json:val`"):
            open_dataset("digits", spec, 8)


def test_manifest_of_other_data_is_a_user_error(manifest_path, tmp_path):
    manifest = json.loads(manifest_path.read_text())
    other = write(tmp_path, {**manifest, "data": "fashion-mnist"})
    with pytest.raises(CompatError, match="made for 'fashion-mnist', not for 'digits'.*--validation 0.1"):
        open_dataset("digits", f"@{other}:val", 8)
    unknown = write(tmp_path, {**manifest, "holdout": {**manifest["holdout"], "val": [5000]}}, "far.json")
    with pytest.raises(CompatError, match="1 sample.* not in digits.*--validation 0.1"):
        open_dataset("digits", f"@{unknown}:val", 8)
    looping = write(tmp_path, {**manifest, "holdout": {**manifest["holdout"], "from": f"@{other}:train"}}, "l.json")
    with pytest.raises(CompatError, match="holdout is malformed"):
        open_dataset("digits", f"@{looping}:val", 8)


# -- digits -------------------------------------------------------------------------------------------
def test_digits_splits_are_disjoint_by_index_and_by_pixels():
    parts = {name: open_dataset("digits", name, 8) for name in ("train", "val", "test")}
    assert {name: len(part) for name, part in parts.items()} == {"train": 1077, "val": 270, "test": 450}
    indices = {name: set(part.base_indices.tolist()) for name, part in parts.items()}
    pixels = {name: {bytes(image) for image in part.load_images(np.arange(len(part))).numpy()}
              for name, part in parts.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not indices[a] & indices[b] and not pixels[a] & pixels[b], (a, b)
    assert set().union(*indices.values()) == set(range(1797))
    # test stays the historical 25% split, image for image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    labels = load_digits().target
    _, test = train_test_split(np.arange(1797), test_size=0.25, random_state=0, stratify=labels)
    np.testing.assert_array_equal(parts["test"].base_indices, np.sort(test))
    assert np.bincount(parts["val"].labels).min() >= 26  # stratified: about 27 per class


# -- the CLI --------------------------------------------------------------------------------------------
def test_cli_split_with_validation_and_data_info(tmp_path):
    out = tmp_path / "s.json"
    compat("data", "split", "digits", "--validation", "0.1", "--seed", "7", "--out", out)
    manifest = json.loads(out.read_text())
    assert manifest["format"] == "compat-split/1" and manifest["holdout"]["seed"] == 7
    assert len(manifest["holdout"]["train"]) + len(manifest["holdout"]["val"]) == 1077
    info = compat("data", "info", "digits", "--split", f"@{out}:val")
    assert f"digits [@{out}:val]: {len(manifest['holdout']['val'])} images, 10 classes" in info.stdout


@pytest.mark.parametrize("fraction", ["0", "0.6", "-1"])
def test_cli_bad_validation_fraction_exits_2(tmp_path, fraction):
    proc = compat("data", "split", "digits", "--validation", fraction, "--out", tmp_path / "s.json", check=False)
    assert_user_error(proc, "--validation 0.1")
    assert not (tmp_path / "s.json").exists()


@pytest.mark.slow
def test_cli_trains_on_the_train_part_and_evaluates_on_the_val_part(tmp_path):
    split, run, result = tmp_path / "s.json", tmp_path / "run", tmp_path / "val.json"
    compat("data", "split", "digits", "--validation", "0.1", "--out", split)
    compat("train", "baseline", "--data", "digits", "--split", f"@{split}:train", *TINY, "--out", run)
    compat("eval", "retrieval", "--query", run, "--gallery", run, "--data", "digits", "--split", f"@{split}:val",
           "--device", "cpu", "--json", result)
    metrics, holdout = json.loads(result.read_text()), json.loads(split.read_text())["holdout"]
    assert metrics["n_query"] == metrics["n_gallery"] == len(holdout["val"]) and metrics["leave_one_out"]
    proc = compat("train", "baseline", "--data", "digits", "--split", f"@{split}:old", *TINY, "--out",
                  tmp_path / "bad", check=False)
    assert_user_error(proc, "@split.json:val")
