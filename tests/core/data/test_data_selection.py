"""``--classes`` specs and split manifests."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from compat_core.data import open_dataset
from compat_core.data.base import ArrayDataset
from compat_core.data.selection import load_manifest, make_split, parse_classes, select_classes
from compat_core.errors import CompatError


@pytest.fixture(scope="module")
def digits():
    return open_dataset("digits", "test", 8)


@pytest.fixture
def toy():
    """Eight samples, labels [0, 1, 2, 3, 0, 1, 2, 3], pixel value = sample index."""
    images = torch.arange(8, dtype=torch.uint8).view(8, 1, 1, 1).expand(8, 1, 2, 2).clone()
    return ArrayDataset(images, np.arange(8) % 4, ["a", "b", "c", "d"], 2, name="toy")


def write(tmp_path, manifest, name="split.json"):
    path = tmp_path / name
    path.write_text(json.dumps(manifest))
    return path


# -- --classes specs ---------------------------------------------------------------------------------
def test_no_spec_keeps_the_dataset(toy):
    assert parse_classes(None, toy) is toy


@pytest.mark.parametrize("spec, labels", [("0-2,5", [0, 1, 2, 5]), ("7,3", [3, 7]), (" 4 - 6 ", [4, 5, 6]),
                                          ("0,2,7", [0, 2, 7]), ("2,2,1-2", [1, 2]), ("9", [9])])
def test_class_specs_relabel_in_ascending_order(digits, spec, labels):
    part = parse_classes(spec, digits)
    positions = np.flatnonzero(np.isin(digits.labels, labels))
    assert part.classes == [str(label) for label in labels]
    np.testing.assert_array_equal(part.base_indices, digits.base_indices[positions])
    np.testing.assert_array_equal(np.asarray(labels)[part.labels], digits.labels[positions])
    assert part.labels.dtype == np.int64 and sorted(set(part.labels.tolist())) == list(range(len(labels)))


def test_subset_yields_parent_images_and_base_indices(toy):
    part = parse_classes("1,3", toy)
    assert part.classes == ["b", "d"] and len(part) == 4
    np.testing.assert_array_equal(part.labels, [0, 1, 0, 1])
    image, label, index = part[3]
    assert (label, index) == (1, 7) and int(image[0, 0, 0]) == 7 and image.shape == (3, 2, 2)


def test_nested_selection_keeps_base_indices(toy):
    inner = parse_classes("1-2", parse_classes("0-2", toy))
    assert inner.classes == ["b", "c"]
    np.testing.assert_array_equal(inner.base_indices, [1, 2, 5, 6])
    np.testing.assert_array_equal(inner.labels, [0, 1, 0, 1])


def test_labels_outside_the_data_name_the_range(toy):
    with pytest.raises(CompatError, match=r"label\(s\) 4, 12 are outside the data \(toy has labels 0-3\)"):
        parse_classes("2,4,12", toy)


@pytest.mark.parametrize("spec", ["", "a", "3-1", "1,,2", "-1", "1-", "1:3", "0-2;5", "@", "@split.json", "@:old"])
def test_malformed_specs_show_the_accepted_forms(toy, spec):
    with pytest.raises(CompatError, match=r"malformed.*Accepted forms: `0-4`, `0,2,7`, `0-2,5`"):
        parse_classes(spec, toy)


def test_selection_without_samples_is_an_error(toy):
    half = toy.subset(np.array([0, 1]))
    with pytest.raises(CompatError, match="no images of these classes"):
        select_classes(half, [3])


# -- make_split --------------------------------------------------------------------------------------
def test_class_split_is_seeded_sorted_and_complementary(digits):
    first = make_split(digits, 0.3, seed=4)
    assert first == make_split(digits, 0.3, seed=4)
    assert first["old"] != make_split(digits, 0.3, seed=5)["old"]
    old, new = first["old"]["classes"], first["new"]["classes"]
    assert len(old) == 3 and old == sorted(old) and new == sorted(new)
    assert sorted(old + new) == list(range(10))
    assert {k: first[k] for k in ("format", "data", "by", "seed", "old_fraction")} == {
        "format": "compat-split/1", "data": "digits", "by": "class", "seed": 4, "old_fraction": 0.3}
    json.dumps(first)  # plain JSON types only


@pytest.mark.parametrize("fraction, n_old", [(0.01, 1), (0.5, 2), (0.99, 3)])
def test_class_split_keeps_both_sides_non_empty(toy, fraction, n_old):
    assert len(make_split(toy, fraction)["old"]["classes"]) == n_old


def test_sample_split_per_class_counts_and_complement(digits):
    manifest = make_split(digits, 0.2, by="sample", seed=1)
    old, new = np.asarray(manifest["old"]["indices"]), np.asarray(manifest["new"]["indices"])
    assert np.intersect1d(old, new).size == 0
    np.testing.assert_array_equal(np.union1d(old, new), digits.base_indices)
    expected = [max(1, round(0.2 * n)) for n in np.bincount(digits.labels)]
    assert np.bincount(digits.labels[np.isin(digits.base_indices, old)]).tolist() == expected
    assert manifest == make_split(digits, 0.2, by="sample", seed=1)
    assert manifest["old"] != make_split(digits, 0.2, by="sample", seed=2)["old"]


def test_sample_split_of_a_subset_uses_base_indices(toy):
    part = parse_classes("1,3", toy)
    manifest = make_split(part, 0.5, by="sample")
    indices = manifest["old"]["indices"] + manifest["new"]["indices"]
    assert sorted(indices) == [1, 3, 5, 7] and len(manifest["old"]["indices"]) == 2


@pytest.mark.parametrize("kwargs, message", [({"old_fraction": 0}, "strictly between 0 and 1"),
                                             ({"old_fraction": 1.0}, "strictly between 0 and 1"),
                                             ({"old_fraction": 0.5, "by": "pixel"}, "--by pixel")])
def test_bad_split_arguments(toy, kwargs, message):
    with pytest.raises(CompatError, match=message):
        make_split(toy, **kwargs)


def test_one_class_cannot_be_split_by_class(toy):
    with pytest.raises(CompatError, match="at least 2"):
        make_split(parse_classes("2", toy), 0.5)


# -- manifests -----------------------------------------------------------------------------------------
def test_class_manifest_selects_old_and_new(tmp_path, digits):
    path = write(tmp_path, make_split(digits, 0.5, seed=3))
    manifest = load_manifest(path)
    old, new = parse_classes(f"@{path}:old", digits), parse_classes(f"@{path}:new", digits)
    assert old.classes == [str(c) for c in manifest["old"]["classes"]]
    assert new.classes == [str(c) for c in manifest["new"]["classes"]]
    assert len(old) + len(new) == len(digits)
    assert np.intersect1d(old.base_indices, new.base_indices).size == 0


def test_sample_manifest_selects_base_indices_and_keeps_labels(tmp_path, toy):
    path = write(tmp_path, make_split(toy, 0.5, by="sample", seed=0))
    old = parse_classes(f"@{path}:old", toy)
    np.testing.assert_array_equal(old.base_indices, load_manifest(path)["old"]["indices"])
    np.testing.assert_array_equal(old.labels, toy.labels[old.base_indices])
    assert old.classes == toy.classes


def test_sample_manifest_for_other_data_is_an_error(tmp_path, toy):
    path = write(tmp_path, {**make_split(toy, 0.5, by="sample"), "old": {"indices": [0, 8, 9]}})
    with pytest.raises(CompatError, match="2 sample\\(s\\) of the manifest are not in toy"):
        parse_classes(f"@{path}:old", toy)


def test_manifest_errors(tmp_path, toy):
    with pytest.raises(CompatError, match="missing.json does not exist.*compat data split"):
        parse_classes(f"@{tmp_path / 'missing.json'}:old", toy)
    good = make_split(toy, 0.5)
    with pytest.raises(CompatError, match="malformed"):
        parse_classes(f"@{write(tmp_path, good)}:older", toy)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CompatError, match="not readable JSON"):
        load_manifest(broken)
    for bad in ({**good, "format": "other/1"}, {**good, "new": {}}, {**good, "old": {"classes": ["a"]}}, [1]):
        with pytest.raises(CompatError, match="is not a compat-split/1 split manifest"):
            load_manifest(write(tmp_path, bad, "bad.json"))
    outside = write(tmp_path, {**good, "old": {"classes": [0, 7]}}, "outside.json")
    with pytest.raises(CompatError, match="outside the data"):
        parse_classes(f"@{outside}:old", toy)


def test_training_on_classes_of_which_one_has_no_image_is_refused(tmp_path):
    """An ImageFolder whose class folder `c` is empty: the head would learn a class it never sees."""
    import subprocess
    import sys

    from PIL import Image

    for split in ("train", "test"):
        for name in ("a", "b", "c"):
            (tmp_path / "data" / split / name).mkdir(parents=True)
        for name in ("a", "b"):
            for k in range(2):
                Image.new("RGB", (8, 8), (k * 40, 0, 0)).save(tmp_path / "data" / split / name / f"{k}.png")
    proc = subprocess.run([sys.executable, "-m", "compat_cli.main", "train", "baseline", "--data",
                           str(tmp_path / "data"), "--backbone", "test_resnet", "--image-size", "8", "--epochs", "1",
                           "--device", "cpu", "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "no image of 1 of its 3 classes (c)" in proc.stderr.replace("\n", " ")
    assert not (tmp_path / "run").exists()
