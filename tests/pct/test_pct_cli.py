"""compat-pct through the real CLI on digits: old baselines -> pct / elodi / cna -> eval regression,
the class-incremental case, logit files, and bad input."""

import json
import shutil

import pytest
from cli_runner import assert_user_error, compat

TINY = ["--data", "digits", "--backbone", "test_resnet", "--embedding-dim", "16", "--image-size", "16",
        "--epochs", "1", "--batch-size", "64", "--device", "cpu", "--grad-clip", "5"]
FRACTIONS = ("old_accuracy", "new_accuracy", "nfr", "nfi", "pfr", "pfi", "btc", "bec")


@pytest.fixture(scope="module")
def olds(tmp_path_factory):
    root = tmp_path_factory.mktemp("pct-cli")
    runs = {"a": root / "old-a", "b": root / "old-b", "sub": root / "old-sub"}
    compat("train", "baseline", *TINY, "--seed", "1", "--out", runs["a"])
    compat("train", "baseline", *TINY, "--seed", "2", "--out", runs["b"])
    compat("train", "baseline", *TINY, "--seed", "1", "--classes", "0-4", "--out", runs["sub"])
    renamed = root / "old-renamed"  # a run whose classes are named differently from the data's
    shutil.copytree(runs["sub"], renamed)
    spec = json.loads((renamed / "model.json").read_text())
    spec["classes"] = ["cat", "dog", "cow", "owl", "emu"]
    (renamed / "model.json").write_text(json.dumps(spec))
    runs["renamed"] = renamed
    return runs


def regression(old_args, new, out, *extra):
    compat("eval", "regression", *old_args, "--new", new, "--data", "digits", "--device", "cpu", "--json", out,
           *extra)
    return json.loads(out.read_text())


@pytest.mark.slow
def test_pct_end_to_end(olds, tmp_path):
    new = tmp_path / "pct"
    compat("train", "pct", *TINY, "--old", olds["a"], "--seed", "3", "--out", new)
    spec = json.loads((new / "model.json").read_text())
    assert spec["method"] == "pct" and spec["old_model"] == [str(olds["a"])]
    history = [json.loads(line) for line in (new / "history.jsonl").read_text().splitlines()]
    assert set(history[-1]["loss"]) == {"total", "ce", "kd"}
    result = regression(["--old", olds["a"]], new, tmp_path / "r.json")
    for key in FRACTIONS:
        assert 0.0 <= result[key] <= 1.0, key
    assert result["n"] == 450 and len(result["per_class"]) == 10 and result["old_classes"] is None
    assert result["negative_flips"] == round(result["nfr"] * 450)


@pytest.mark.slow
def test_elodi_ensemble_and_cna_train_from_the_cli(olds, tmp_path):
    elodi = tmp_path / "elodi"
    compat("train", "elodi", *TINY, "--old", olds["a"], "--old", olds["b"], "--min-teachers", "2",
           "--teacher-weights", "2", "--teacher-weights", "1", "--ldi-topk", "3", "--out", elodi)
    assert json.loads((elodi / "model.json").read_text())["old_model"] == [str(olds["a"]), str(olds["b"])]
    assert "ldi" in (elodi / "history.jsonl").read_text()
    cna = tmp_path / "cna"
    compat("train", "cna", *TINY, "--old", olds["a"], "--embedding-dim", "8", "--out", cna)
    assert "cna" in (cna / "history.jsonl").read_text()
    # an ensemble of old runs on the evaluation side as well
    result = regression(["--old", olds["a"], "--old", olds["b"]], elodi, tmp_path / "r.json")
    assert result["old"] == [str(olds["a"]), str(olds["b"])]


@pytest.mark.slow
def test_class_incremental_update_and_logit_files(olds, tmp_path):
    help_text = compat("train", "pct", "--help").stdout
    assert "shared classes" in help_text
    new = tmp_path / "pct-incremental"
    compat("train", "pct", *TINY, "--old", olds["sub"], "--out", new)  # old knows 0-4, new 0-9
    from_runs = regression(["--old", olds["sub"]], new, tmp_path / "runs.json")
    subset = from_runs["old_classes"]
    assert subset is not None and subset["n"] == sum(row["n"] for row in from_runs["per_class"][:5])
    assert subset["nfr"] >= from_runs["nfr"]  # the same flips over fewer samples
    old_file, new_file = tmp_path / "old.npz", tmp_path / "new.npz"
    for run, file in ((olds["sub"], old_file), (new, new_file)):
        compat("features", "extract", "--model", run, "--data", "digits", "--logits", "--out", file, "--device", "cpu")
    out = tmp_path / "files.json"
    compat("eval", "regression", "--old-logits", old_file, "--new-logits", new_file, "--json", out)
    from_files = json.loads(out.read_text())
    for key in (*FRACTIONS, "old_top5", "new_top5"):
        assert from_files[key] == pytest.approx(from_runs[key], abs=1e-9), key
    assert from_files["old_classes"]["nfr"] == pytest.approx(subset["nfr"])


@pytest.mark.slow
def test_elodi_with_fewer_teachers_than_the_paper_is_a_user_error_naming_the_fix(olds, tmp_path):
    out = tmp_path / "x"
    proc = compat("train", "elodi", *TINY, "--old", olds["a"], "--old", olds["b"], "--out", out, check=False)
    assert_user_error(proc, "at least 8 teacher runs", "2 --old runs were given", "--old RUN 8 times",
                      "--min-teachers 2", "--recipe ldi")
    assert "\n\n" not in (proc.stdout + proc.stderr).strip()  # one paragraph
    assert not out.exists()
    # the two ways out both train
    compat("train", "elodi", *TINY, "--old", olds["a"], "--recipe", "ldi", "--out", tmp_path / "ldi")
    config = (tmp_path / "ldi" / "config.yaml").read_text()
    for line in ("recipe: ldi", "alpha: 0.5", "ldi_margin: 0.5", "ldi_topk: 0", "min_teachers: 1"):
        assert line in config, config
    compat("train", "elodi", *TINY, "--old", olds["a"], "--old", olds["b"], "--set", "min_teachers=2",
           "--out", tmp_path / "two")
    config = (tmp_path / "two" / "config.yaml").read_text()
    for line in ("recipe: elodi", "alpha: 0.8", "ldi_margin: 0.0", "ldi_topk: 10", "min_teachers: 2"):
        assert line in config, config


def test_pct_without_old_is_a_user_error(tmp_path):
    proc = compat("train", "elodi", *TINY, "--out", tmp_path / "x", check=False)
    assert_user_error(proc, "--old")
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_class_lists_that_do_not_fit_are_user_errors(olds, tmp_path):
    out = tmp_path / "x"
    assert_user_error(compat("train", "elodi", *TINY, "--old", olds["a"], "--old", olds["sub"], "--min-teachers", "2",
                             "--out", out, check=False), "same classes in the same order")
    assert_user_error(compat("train", "elodi", *TINY, "--old", olds["a"], "--recipe", "ldi", "--teacher-weights", "1",
                             "--teacher-weights", "2", "--out", out, check=False), "2 weights for 1")
    assert_user_error(compat("train", "pct", *TINY, "--old", olds["renamed"], "--out", out, check=False),
                      "--label-map")
    assert not out.exists()  # nothing written before the input was checked
    assert_user_error(compat("eval", "regression", "--old", olds["renamed"], "--new", olds["a"], "--data", "digits",
                             "--device", "cpu", check=False), "share no name", "--label-map")
    assert_user_error(compat("eval", "regression", "--old", olds["a"], "--old", olds["sub"], "--new", olds["a"],
                             "--data", "digits", "--device", "cpu", check=False), "same classes in the same order")
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"0": "cat", "1": "dog", "2": "cow", "3": "owl", "4": "emu"}))
    mapped = regression(["--old", olds["renamed"]], olds["a"], tmp_path / "m.json", "--label-map", mapping)
    plain = regression(["--old", olds["sub"]], olds["a"], tmp_path / "p.json")
    assert mapped["nfr"] == plain["nfr"] and mapped["old_accuracy"] == plain["old_accuracy"]
