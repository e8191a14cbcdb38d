"""compat-bct through the real CLI: old baseline -> bct / l2 -> eval matrix, and bad input."""

import json

import pytest
from cli_runner import assert_user_error, compat

TINY = ["--data", "digits", "--backbone", "test_resnet", "--embedding-dim", "16", "--image-size", "16",
        "--epochs", "2", "--batch-size", "64", "--device", "cpu"]


@pytest.fixture(scope="module")
def old_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bct-cli")
    old = root / "old"
    compat("train", "baseline", *TINY, "--classes", "0-4", "--seed", "1", "--out", old)
    return old


@pytest.mark.slow
def test_bct_end_to_end(old_run, tmp_path):
    new = tmp_path / "new-bct"
    compat("train", "bct", *TINY, "--old", old_run, "--seed", "2", "--influence-weight", "1", "--out", new)
    spec = json.loads((new / "model.json").read_text())
    assert spec["method"] == "bct" and spec["old_model"] == [str(old_run)]
    history = [json.loads(line) for line in (new / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2 and "influence" in json.dumps(history[-1])
    out = tmp_path / "m.json"
    compat("eval", "matrix", old_run, new, "--data", "digits", "--device", "cpu", "--json", out)
    result = json.loads(out.read_text())
    score = {(r["query"], r["gallery"]): r for r in result["results"]}
    # the influence loss puts new queries in the old space: far above chance (0.1) against the old gallery
    assert score[str(new), str(old_run)]["top1"] > 0.3
    (verdict,) = result["compatibility"]
    assert verdict["new"] == str(new) and verdict["old"] == str(old_run)


@pytest.mark.slow
def test_l2_triplet_contrastive_train_from_the_cli(old_run, tmp_path):
    for method, extra in [("l2", ["--l2-threshold", "0.2"]), ("triplet", []), ("contrastive", ["--temperature", "0.1"])]:
        new = tmp_path / f"new-{method}"
        compat("train", method, *TINY, "--epochs", "1", "--old", old_run, *extra, "--out", new)
        assert (new / "model.safetensors").is_file()


def test_bct_without_old_is_a_user_error(tmp_path):
    assert_user_error(compat("train", "bct", *TINY, "--out", tmp_path / "x", check=False), "--old")


def test_old_that_is_not_a_run_is_a_user_error(tmp_path):
    (tmp_path / "notarun").mkdir()
    proc = compat("train", "bct", *TINY, "--old", tmp_path / "notarun", "--out", tmp_path / "x", check=False)
    assert_user_error(proc, "not a compat run")


@pytest.mark.slow
def test_label_map_with_unknown_class_is_a_user_error(old_run, tmp_path):
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({"7": "cat"}))
    proc = compat("train", "bct", *TINY, "--old", old_run, "--synthesize", "new-only", "--label-map", label_map,
                  "--out", tmp_path / "x", check=False)
    assert_user_error(proc, "'cat'")
    assert not (tmp_path / "x" / "model.json").exists()
    # with the default --synthesize all no old-head row is used, so any label map is refused
    proc = compat("train", "bct", *TINY, "--old", old_run, "--label-map", label_map, "--out", tmp_path / "x",
                  check=False)
    assert_user_error(proc, "--synthesize new-only")


@pytest.mark.slow
def test_overwrite_with_a_bad_label_map_keeps_the_existing_run(old_run, tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "model.json").write_text("{}")
    (existing / "config.yaml").write_text("method: bct\n")
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({"7": "cat"}))
    proc = compat("train", "bct", *TINY, "--old", old_run, "--synthesize", "new-only", "--label-map", label_map,
                  "--out", existing, "--overwrite", check=False)
    assert_user_error(proc, "'cat'")  # the method's own check runs before --out is cleared
    assert (existing / "model.json").read_text() == "{}" and (existing / "config.yaml").is_file()


@pytest.mark.slow
def test_dims_that_cannot_be_aligned_are_a_user_error(old_run, tmp_path):
    args = ["train", "bct", *TINY, "--embedding-dim", "8", "--old", old_run, "--out", tmp_path / "x"]
    assert_user_error(compat(*args, check=False), "--dim-policy zero-pad")
    assert_user_error(compat(*args, "--dim-policy", "truncate", check=False), "needs a new embedding longer")


def test_unknown_choice_is_a_user_error(tmp_path):
    proc = compat("train", "bct", *TINY, "--influence", "kd", "--out", tmp_path / "x", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr


def test_plugins_list_shows_the_four_methods():
    data = json.loads(compat("plugins", "list", "--json").stdout)
    (bct,) = [p for p in data if p["name"] == "compat-bct"]
    assert bct["loaded"] and bct["error"] is None and bct["version"] == "0.1.0"
    for method in ("bct", "l2", "triplet", "contrastive"):
        assert f"method:{method}" in bct["provides"]


def test_train_help_shows_method_options():
    out = compat("train", "bct", "--help").stdout
    for flag in ("--influence-weight", "--synthesize", "--label-map", "--dim-policy", "--old-features",
                 "--influence-scale", "--fit-max-samples", "--fit-block", "--fit-max-iter"):
        assert flag in out
    assert "4 + ln((C - 1) / 9)" in out and "sqrt(2) * ln(C - 1)" in out  # auto and adacos explained at the flag


@pytest.mark.slow
def test_truncated_model_is_cross_evaluated_through_its_recorded_policy(old_run, tmp_path):
    new = tmp_path / "wide"
    compat("train", "bct", *TINY, "--epochs", "1", "--embedding-dim", "24", "--dim-policy", "truncate",
           "--old", old_run, "--out", new)
    assert json.loads((new / "model.json").read_text())["dim_policy"] == "truncate"
    out = tmp_path / "m.json"
    compat("eval", "retrieval", "--query", new, "--gallery", old_run, "--data", "digits", "--device", "cpu",
           "--json", out)
    result = json.loads(out.read_text())
    assert result["leave_one_out"] and 0.0 <= result["top1"] <= 1.0
