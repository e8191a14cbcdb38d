"""CachedFeatures: rows of a feature file by dataset index, checked against the model and the data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from compat_core.data import open_dataset
from compat_core.data.selection import parse_classes
from compat_core.errors import CompatError
from compat_core.features import FeatureSet, save
from compat_core.models.cached import CachedFeatures


def feature_file(tmp_path, index, dim=3, name="f.npz"):
    index = np.asarray(index, dtype=np.int64)
    features = np.arange(len(index) * dim, dtype=np.float32).reshape(len(index), dim)
    return save(tmp_path / name, FeatureSet(features, np.zeros(len(index), np.int64), index)), features


def test_rows_are_found_by_dataset_index_not_position(tmp_path):
    path, features = feature_file(tmp_path, [7, 2, 5])  # shuffled, with gaps
    table = CachedFeatures(path, dim=3)
    assert torch.equal(table(torch.tensor([5, 7, 2, 5])), torch.from_numpy(features[[2, 0, 1, 2]]))


def test_subset_of_the_data_is_covered_by_its_base_indices(tmp_path):
    digits = open_dataset("digits", "train", 8)
    subset = parse_classes("3", digits)  # base indices of class 3 only
    path, _ = feature_file(tmp_path, digits.base_indices)
    CachedFeatures(path, dim=3, data=subset)  # covers: no error
    short, _ = feature_file(tmp_path, subset.base_indices[:-1], name="short.npz")
    with pytest.raises(CompatError, match="lacks 1 of the"):
        CachedFeatures(short, dim=3, data=subset)


def test_wrong_dimension_missing_file_and_unknown_index_are_user_errors(tmp_path):
    path, _ = feature_file(tmp_path, [0, 1])
    with pytest.raises(CompatError, match="3-dim features but the model it stands for embeds in 4"):
        CachedFeatures(path, dim=4)
    with pytest.raises(CompatError, match="no such file"):
        CachedFeatures(tmp_path / "missing.npz", dim=3, flag="--side-features")
    table = CachedFeatures(path)
    with pytest.raises(CompatError, match="no row for some samples"):
        table(torch.tensor([0, 9]))


def test_repeated_indices_are_refused(tmp_path):
    path, _ = feature_file(tmp_path, [1, 1])
    with pytest.raises(CompatError, match="repeated"):
        CachedFeatures(path)


def test_table_is_not_written_to_checkpoints(tmp_path):
    path, _ = feature_file(tmp_path, [0, 1])
    assert CachedFeatures(path).state_dict() == {}
