"""Methods that need only the old model's embeddings train from `--old-features` without `--old` (as the MixBCT
repository does); their runs record the file, and its model's fingerprint carries provenance to the index.
Methods that need more of the old model say so."""

from __future__ import annotations

import json

import pytest
from cli_runner import assert_user_error, compat

TINY = ["--data", "digits", "--backbone", "test_resnet", "--image-size", "8", "--embedding-dim", "8", "--epochs", "1",
        "--device", "cpu", "--val-split", "none", "--augment", "none"]


@pytest.fixture(scope="module")
def old(tmp_path_factory):
    root = tmp_path_factory.mktemp("features-only")
    compat("train", "baseline", *TINY, "--classes", "0-4", "--out", root / "old")
    for split in ("train", "test"):
        compat("features", "extract", "--model", root / "old", "--data", "digits", "--split", split, "--out",
               root / f"old-{split}.npz")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("method", ["l2", "mixbct", "nccl", "bct"])
def test_trains_from_old_features_alone_and_queries_the_old_index(method, old, tmp_path):
    compat("train", method, *TINY, "--old-features", old / "old-train.npz", "--out", tmp_path / "new")
    spec = json.loads((tmp_path / "new" / "model.json").read_text())
    assert spec["old_model"] == [str(old / "old-train.npz")]
    compat("index", "build", "--features", old / "old-test.npz", "--out", tmp_path / "idx")
    found = compat("index", "search", tmp_path / "idx", "--query", tmp_path / "new", "--data", "digits", "--json",
                   tmp_path / "found.json")
    assert found.returncode == 0 and json.loads((tmp_path / "found.json").read_text())["relation"] == "trained"


def test_methods_that_need_the_old_model_say_so(old, tmp_path):
    result = compat("train", "bct", *TINY, "--old-features", old / "old-train.npz", "--synthesize", "new-only",
                    "--out", tmp_path / "paper", check=False)
    assert_user_error(result, "needs the old model itself (--old RUN)", "classifier")
    assert not (tmp_path / "paper" / "model.json").exists()
    assert_user_error(compat("train", "l2", *TINY, "--out", tmp_path / "none", check=False), "--old")
