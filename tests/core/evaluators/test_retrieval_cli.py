"""`compat eval retrieval` and `compat eval matrix` on hand-made feature files (angle_features.py):
leave-one-out, the gain against a --reference run, run labels and the 80-column tables."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from angle_features import NEW, OLD, REF, angle_set
from cli_runner import assert_user_error, compat
from compat_core.features import FeatureSet, save
from compat_core.metrics.compatibility import update_gain


def compat_at(columns: int, *args) -> subprocess.CompletedProcess:
    """``compat ARGS`` with the terminal ``columns`` wide (stdout is a pipe: rich reads COLUMNS)."""
    env = {**os.environ, "COLUMNS": str(columns)}
    proc = subprocess.run([sys.executable, "-m", "compat_cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture()
def files(tmp_path):
    """old, new and the independently trained ref, all of the same images (same data and split)."""
    return {name: save(tmp_path / f"{name}.npz", angle_set(degrees, model=name))
            for name, degrees in (("old", OLD), ("new", NEW), ("ref", REF))}


def test_same_file_leaves_each_query_out_unless_told_not_to(tmp_path):
    bare = save(tmp_path / "bare.npz", angle_set(OLD, data=""))  # no data/split provenance
    out = tmp_path / "r.json"
    proc = compat("eval", "retrieval", "--query", bare, "--gallery", bare, "--json", out)
    result = json.loads(out.read_text())
    assert result["leave_one_out"] is True and result["top1"] == pytest.approx(5 / 8)  # not 100%
    assert "leave_one_out" in proc.stdout and "62.50" in proc.stdout
    assert (result["query_label"], result["gallery_label"]) == ("bare", "bare")
    compat("eval", "retrieval", "--query", bare, "--gallery", bare, "--leave-one-out", "off", "--json", out)
    result = json.loads(out.read_text())
    assert result["leave_one_out"] is False and result["top1"] == 1.0


def test_copies_without_provenance_warn_and_on_forces_leave_one_out(tmp_path):
    a = save(tmp_path / "a.npz", angle_set(OLD, data=""))
    b = save(tmp_path / "b.npz", angle_set(OLD, data=""))
    out = tmp_path / "r.json"
    proc = compat("eval", "retrieval", "--query", a, "--gallery", b, "--json", out)
    assert json.loads(out.read_text())["leave_one_out"] is False
    assert "leave-one-out was not applied" in proc.stderr and "--leave-one-out on" in proc.stderr
    compat("eval", "retrieval", "--query", a, "--gallery", b, "--leave-one-out", "on", "--json", out)
    result = json.loads(out.read_text())
    assert result["leave_one_out"] is True and result["top1"] == pytest.approx(5 / 8)


def test_leave_one_out_on_different_images_is_a_user_error(tmp_path):
    full = angle_set(OLD, data="")
    a = save(tmp_path / "a.npz", full)
    b = save(tmp_path / "b.npz", FeatureSet(full.features[:6], full.labels[:6], full.index[:6]))
    proc = compat("eval", "retrieval", "--query", a, "--gallery", b, "--leave-one-out", "on", check=False)
    assert_user_error(proc, "--leave-one-out on", "8 rows and the gallery 6")


def test_matrix_gain_uses_the_reference_self_retrieval(files, tmp_path):
    out = tmp_path / "m.json"
    compat("eval", "matrix", files["old"], files["new"], "--reference", files["ref"], "--json", out)
    result = json.loads(out.read_text())
    assert result["reference"]["label"] == "ref" and result["reference"]["top1"] == 1.0
    assert all(row["leave_one_out"] for row in result["results"])
    (entry,) = result["compatibility"]
    assert (entry["new"], entry["old"]) == (str(files["new"]), str(files["old"]))
    assert (entry["new_label"], entry["old_label"], entry["gain_reference"]) == ("new", "old", "ref")
    # top-1: old/old 5/8, new/old 7/8, ref/ref 1; mAP: 37/48, 45/48, 1
    assert entry["top1"]["gain"] == pytest.approx((7 / 8 - 5 / 8) / (1 - 5 / 8))  # 2/3
    assert entry["mAP"]["gain"] == pytest.approx((45 / 48 - 37 / 48) / (1 - 37 / 48))  # 8/11
    assert entry["top1"]["new_new"] == pytest.approx(6 / 8) and entry["compatible"] is True


def test_matrix_gain_without_reference_is_self_referenced(files, tmp_path):
    out = tmp_path / "m.json"
    proc = compat("eval", "matrix", files["old"], files["new"], "--json", out)
    result = json.loads(out.read_text())
    (entry,) = result["compatibility"]
    assert result["reference"] is None and entry["gain_reference"] == "self"
    # new/new 6/8 and 40/48 stand in for the reference
    assert entry["top1"]["gain"] == pytest.approx((7 / 8 - 5 / 8) / (6 / 8 - 5 / 8))  # 2
    assert entry["mAP"]["gain"] == pytest.approx((45 / 48 - 37 / 48) / (40 / 48 - 37 / 48))  # 8/3
    assert "no --reference" in proc.stdout


def test_matrix_rows_carry_labels_and_class_groups(tmp_path):
    old = save(tmp_path / "a" / "run.npz", angle_set(OLD, model_classes=["a", "b"]))
    new = save(tmp_path / "b" / "run.npz", angle_set(NEW, model_classes="abcd"))
    out = tmp_path / "m.json"
    compat("eval", "matrix", old, new, "--json", out)
    result = json.loads(out.read_text())
    row = {(r["query_label"], r["gallery_label"]): r for r in result["results"]}
    assert set(row) == {(q, g) for q in ("a/run", "b/run") for g in ("a/run", "b/run")}
    assert row["b/run", "a/run"]["query"] == str(new)  # full paths stay in query / gallery
    groups = row["b/run", "a/run"]["by_group"]  # gallery: the old model, trained on a and b
    assert groups["old_classes"]["top1"] == 1.0 and groups["new_classes"]["top1"] == pytest.approx(3 / 4)
    assert "by_group" not in row["a/run", "b/run"]
    compat("eval", "matrix", old, new, "--label", "first", "--label", "second", "--json", out)
    compatibility = json.loads(out.read_text())["compatibility"][0]
    assert (compatibility["new_label"], compatibility["old_label"]) == ("second", "first")


def test_matrix_names_that_cannot_be_told_apart_need_labels(tmp_path):
    a = save(tmp_path / "x" / "run" / "f.npz", angle_set(OLD))
    b = save(tmp_path / "y" / "run" / "f.npz", angle_set(NEW))
    assert_user_error(compat("eval", "matrix", a, b, check=False), "--label")
    assert_user_error(compat("eval", "matrix", a, b, "--label", "one", check=False), "one --label per run")


def test_matrix_of_three_runs_fits_80_columns(tmp_path):
    names = {"old-baseline": OLD, "bct-influence1": NEW, "independent-seed2": REF}
    paths = [save(tmp_path / f"{name}.npz", angle_set(degrees)) for name, degrees in names.items()]
    out = tmp_path / "m.json"
    proc = compat_at(80, "eval", "matrix", *paths, "--reference", paths[-1], "--json", out)
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, proc.stdout
    tokens = set(proc.stdout.split())
    assert set(names) <= tokens  # every name whole, on one line
    result = json.loads(out.read_text())
    for row in result["results"]:
        for key in ("top1", "top5", "mAP"):
            assert f"{100 * row[key]:.2f}" in tokens, (row, key)
    for entry in result["compatibility"]:
        for metric in ("top1", "mAP"):
            assert f"{entry[metric]['gain']:.2f}" in tokens
            assert f"{100 * entry[metric]['new_old']:.2f}" in tokens
    assert "ref/ref" in tokens and "independent-seed2" in proc.stdout.split("ref =")[-1]


@pytest.mark.slow
def test_digits_runs_report_old_and_new_classes(tmp_path):
    tiny = ["--data", "digits", "--backbone", "test_resnet", "--epochs", "1", "--image-size", "8", "--device", "cpu"]
    old, new = tmp_path / "old", tmp_path / "new"
    compat("train", "baseline", *tiny, "--classes", "0-4", "--seed", "1", "--out", old)
    compat("train", "baseline", *tiny, "--seed", "2", "--out", new)
    feats = tmp_path / "old.npz"
    compat("features", "extract", "--model", old, "--data", "digits", "--out", feats, "--device", "cpu")
    with np.load(feats) as npz:
        assert npz["model_classes"].tolist() == ["0", "1", "2", "3", "4"]
        n_old_class_queries = int((npz["labels"] <= 4).sum())
        n_queries = len(npz["labels"])
    out = tmp_path / "m.json"
    proc = compat_at(80, "eval", "matrix", old, new, "--reference", new, "--data", "digits", "--device", "cpu",
                     "--json", out)
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80
    result = json.loads(out.read_text())
    row = {(r["query_label"], r["gallery_label"]): r for r in result["results"]}
    groups = row["new", "old"]["by_group"]  # the old gallery model saw digits 0-4 only
    assert groups["old_classes"]["n_query"] == n_old_class_queries
    assert groups["old_classes"]["n_query"] + groups["new_classes"]["n_query"] == n_queries
    assert "by_group" not in row["old", "new"]  # the new model saw every digit
    (entry,) = result["compatibility"]
    assert entry["gain_reference"] == "new" and result["reference"]["run"] == str(new)
    top1 = entry["top1"]
    assert top1["gain"] == update_gain(top1["new_old"], top1["old_old"], result["reference"]["top1"])


def test_l2_scores_beyond_float32_are_a_user_error(tmp_path):
    # Finite features whose squared distances float32 cannot hold: one paragraph, not a traceback.
    full = angle_set(OLD, data="")
    huge = save(tmp_path / "huge.npz", FeatureSet(full.features * np.float32(3e19), full.labels, full.index))
    proc = compat("eval", "retrieval", "--query", huge, "--gallery", huge, "--metric", "l2", check=False)
    assert_user_error(proc, "could overflow float32", "use the cosine metric")
