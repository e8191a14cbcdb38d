"""`compat runs list|show|diff` and `compat features info` as a user runs them."""

import pytest
from cli_runner import assert_user_error, compat

pytestmark = pytest.mark.slow
TRAIN = ["train", "baseline", "--data", "digits", "--backbone", "test_resnet", "--image-size", "8",
         "--embedding-dim", "8", "--device", "cpu", "--epochs", "2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    compat(*TRAIN, "--classes", "0-4", "--out", root / "old")
    compat("train", "l2", *TRAIN[2:], "--old", root / "old", "--lr", "0.05", "--out", root / "group" / "new")
    (root / "group" / "started").mkdir()
    (root / "group" / "started" / "config.yaml").write_text("method: baseline\nepochs: 3\ndata: digits\n")
    return root


def test_list_finds_every_run_with_its_status(runs):
    out = compat("runs", "list", runs).stdout
    assert "3 runs" in out
    for name, status, method in (("old", "done", "baseline"), ("group/new", "done", "l2"),
                                 ("group/started", "started", "baseline")):
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert status in line and method in line
    assert "0/3" in out and "2/2" in out


def test_show_prints_the_history_options_and_results(runs, tmp_path):
    compat("eval", "retrieval", "--data", "digits", "--query", runs / "old", "--gallery", runs / "old", "--json",
           runs / "old" / "self.json")
    out = compat("runs", "show", runs / "old").stdout
    assert "baseline, done, 2/2 epochs" in out and "classes 0-4" in out
    assert "history" in out and "lr" in out and "image_size: 8" in out
    assert "result self.json: top1" in out


def test_diff_names_the_options_that_differ(runs):
    out = compat("runs", "diff", runs / "old", runs / "group" / "new").stdout
    for option in ("method", "classes", "lr", "old"):
        assert any(line.strip().startswith(option + " ") for line in out.splitlines()), option
    assert "l2" in out and "last epoch's losses" in out


def test_features_info_tells_whether_the_model_changed(runs, tmp_path):
    path = tmp_path / "f.npz"
    compat("features", "extract", "--model", runs / "old", "--data", "digits", "--out", path)
    out = compat("features", "info", path).stdout
    assert "450 x 8 float32, all finite" in out and "(unchanged)" in out and "split test" in out
    other = tmp_path / "copy"
    compat(*TRAIN, "--classes", "0-4", "--seed", "5", "--out", other)
    import numpy as np

    arrays = dict(np.load(path))
    arrays["model"] = np.array(str(other))
    np.savez(tmp_path / "g.npz", **arrays)
    assert "CHANGED since extraction" in compat("features", "info", tmp_path / "g.npz").stdout
    stale = compat("eval", "retrieval", "--query", tmp_path / "g.npz", "--gallery", path, check=False)
    assert_user_error(stale, "the vectors are stale", "fingerprint")
    twice = compat("eval", "matrix", runs / "old", path, "--data", "digits", check=False)
    assert_user_error(twice, "hold vectors of the same model")


def test_bad_input(tmp_path):
    assert_user_error(compat("runs", "show", tmp_path, check=False), "is not a run directory")
    assert_user_error(compat("runs", "list", tmp_path / "nope", check=False), "is not a folder")
    assert_user_error(compat("features", "info", tmp_path / "x.npz", check=False), "no such file")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("epochs: 1\n")
    (tmp_path / "run" / "history.jsonl").write_text('{"epoch": 1, "loss": {"tot\n')
    assert_user_error(compat("runs", "show", tmp_path / "run", check=False), "history.jsonl:1 is not a history record")


def test_list_fits_80_columns(runs):
    import os
    import subprocess
    import sys

    env = {**os.environ, "COLUMNS": "80"}
    out = subprocess.run([sys.executable, "-m", "compat_cli.main", "runs", "list", str(runs)], capture_output=True,
                         text=True, env=env).stdout
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "group/started" in out  # whole, not cut


def test_a_validated_run_shows_its_metric_per_epoch_and_keeps_the_best(tmp_path):
    compat("data", "split", "digits", "--validation", "0.2", "--out", tmp_path / "split.json")
    proc = compat(*TRAIN, "--split", f"@{tmp_path / 'split.json'}:train", "--keep", "best", "--out", tmp_path / "run")
    assert "val accuracy" in proc.stderr
    out = compat("runs", "show", tmp_path / "run").stdout
    assert "val accuracy" in out and "*" in out and "the kept weights are the last *" in out
