"""The user's path through the CLI: old model -> new model -> features -> retrieval and matrix."""

import json

import numpy as np
import pytest
from cli_runner import compat
from compat_core.data import open_dataset

TINY = ["--data", "digits", "--backbone", "test_resnet", "--embedding-dim", "16", "--image-size", "16",
        "--epochs", "2", "--batch-size", "64", "--device", "cpu"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    old, new = root / "old", root / "new"
    compat("train", "baseline", *TINY, "--classes", "0-4", "--seed", "1", "--out", old)
    compat("train", "baseline", *TINY, "--seed", "2", "--out", new)
    return root, old, new


@pytest.mark.slow
def test_runs_have_every_artifact(runs):
    _, old, new = runs
    for run in (old, new):
        for name in ("model.safetensors", "model.json", "config.yaml", "history.jsonl", "checkpoint/state.pt"):
            assert (run / name).is_file(), name
    spec = json.loads((old / "model.json").read_text())
    assert spec["format"] == "compat-model/1"
    assert spec["classes"] == ["0", "1", "2", "3", "4"] and spec["num_classes"] == 5
    assert len((new / "history.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_features_extract_and_retrieval_agree(runs):
    root, old, new = runs
    feats = root / "new.npz"
    compat("features", "extract", "--model", new, "--data", "digits", "--out", feats, "--device", "cpu")
    with np.load(feats) as npz:
        assert npz["features"].shape == (len(npz["labels"]), 16) and npz["features"].dtype == np.float32
        assert np.array_equal(npz["index"], open_dataset("digits", "test", 8).base_indices)
    from_run = root / "run.json"
    from_file = root / "file.json"
    compat("eval", "retrieval", "--query", new, "--gallery", new, "--data", "digits", "--device", "cpu",
           "--json", from_run)
    compat("eval", "retrieval", "--query", feats, "--gallery", feats, "--json", from_file)
    a, b = json.loads(from_run.read_text()), json.loads(from_file.read_text())
    assert a["leave_one_out"] and b["leave_one_out"]
    assert a["n_query"] == a["n_gallery"] == len(np.load(feats)["labels"])
    for key in ("top1", "top5", "mAP"):
        assert 0.0 <= a[key] <= 1.0 and a[key] == pytest.approx(b[key], abs=1e-6)
    assert a["top1"] > 0.3  # far above chance (0.1) after two epochs on digits


@pytest.mark.slow
def test_matrix_reports_every_pair_and_the_criterion(runs):
    root, old, new = runs
    out = root / "matrix.json"
    proc = compat("eval", "matrix", old, new, "--data", "digits", "--device", "cpu", "--json", out)
    assert "compatibility" in proc.stdout
    result = json.loads(out.read_text())
    pairs = {(r["query"], r["gallery"]) for r in result["results"]}
    assert pairs == {(str(q), str(g)) for q in (old, new) for g in (old, new)}
    (verdict,) = result["compatibility"]
    assert verdict["new"] == str(new) and verdict["old"] == str(old)
    score = {(r["query"], r["gallery"]): r for r in result["results"]}
    for metric in ("top1", "mAP"):
        assert verdict[metric]["new_old"] == score[str(new), str(old)][metric]
        assert verdict[metric]["compatible"] == (verdict[metric]["new_old"] > verdict[metric]["old_old"])
    # independently trained models share no embedding space: cross retrieval near chance
    assert score[str(new), str(old)]["top1"] < score[str(old), str(old)]["top1"]
