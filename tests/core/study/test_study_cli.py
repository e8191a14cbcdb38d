"""`compat study run|report` as a user runs them: the shipped digits smoke study end to end, a kill
and --resume that ends where the uninterrupted study ends, the dry run, and bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_runner import assert_user_error, compat
from study_files import TINY_DIGITS

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "studies" / "digits-smoke.yaml"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "smoke"
    compat("study", "run", SMOKE, "--out", out)
    return out


def test_smoke_study_reports_every_method_over_every_pair(finished, tmp_path):
    proc = compat("study", "report", finished, "--split", "val", "--json", tmp_path / "r.json",
                  "--markdown", tmp_path / "r.md", "--plot", tmp_path / "r.png")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["split"] == "val" and report["reference"] == "independent" and report["n_pairs"] == 2
    assert set(report["methods"]) == {"independent", "bct", "l2"}
    for summary in report["methods"].values():
        assert summary["n"] == 2 and len(summary["per_pair"]) == 2
        assert set(summary["new_old"]) == {"top1", "top5", "mAP"}
        assert set(summary["gain"]["top1"]) >= {"mean", "std", "min", "max", "values"}
    assert "new_old_by_group" in report["methods"]["bct"]  # the old model saw digits 0-4 only
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert "| bct |" in (tmp_path / "r.md").read_text()
    assert "held top-1" in proc.stdout


def test_val_and_test_are_different_images(finished):
    val = json.loads((finished / "results" / "val" / "old-s1--old-s1.json").read_text())
    test = json.loads((finished / "results" / "test" / "old-s1--old-s1.json").read_text())
    assert (val["n_query"], test["n_query"]) == (160, 450)
    assert val["leave_one_out"] and test["leave_one_out"]


def test_rerun_without_resume_is_refused_and_resume_retrains_nothing(finished):
    assert_user_error(compat("study", "run", SMOKE, "--out", finished, check=False), "--resume")
    stamps = {p: p.stat().st_mtime_ns for p in (finished / "runs").glob("*/model.safetensors")}
    compat("study", "run", SMOKE, "--out", finished, "--resume")
    assert stamps == {p: p.stat().st_mtime_ns for p in (finished / "runs").glob("*/model.safetensors")}


def test_killed_and_resumed_study_ends_where_the_uninterrupted_one_ends(finished, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "COLUMNS": "250"}
    proc = subprocess.Popen([sys.executable, "-m", "compat_cli.main", "study", "run", str(SMOKE), "--out",
                             str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    # kill it in the middle of a method run: after the first epoch checkpoint of bct's first run
    checkpoint = out / "runs" / "bct-o1-n2" / "checkpoint" / "state.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "results").exists() or len(list((out / "results").rglob("*.json"))) < 26
    compat("study", "run", SMOKE, "--out", out, "--resume")
    for split in ("val", "test"):
        resumed = compat("study", "report", out, "--split", split, "--json", tmp_path / f"{split}-a.json")
        whole = compat("study", "report", finished, "--split", split, "--json", tmp_path / f"{split}-b.json")
        assert resumed.stdout == whole.stdout
        first, second = (json.loads((tmp_path / f"{split}-{k}.json").read_text()) for k in "ab")
        assert first == second
    # a method added to the study file later trains only its own runs
    grown = tmp_path / "grown.yaml"
    grown.write_text(SMOKE.read_text().replace("  l2: {method: l2}\n",
                                               "  l2: {method: l2}\n  l2-hinge: {method: l2, set: {l2_threshold: 0.2}}\n"))
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/model.safetensors")}
    compat("study", "run", grown, "--out", out, "--resume")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    report = compat("study", "report", out, "--json", tmp_path / "grown.json")
    assert json.loads((tmp_path / "grown.json").read_text())["methods"]["l2-hinge"]["n"] == 2
    assert "l2-hinge" in report.stdout


def test_changed_options_of_a_trained_entry_are_refused(finished, tmp_path):
    changed = tmp_path / "changed.yaml"
    changed.write_text(SMOKE.read_text().replace("  bct: {method: bct}", "  bct: {method: bct, set: {influence_scale: 8}}"))
    proc = compat("study", "run", changed, "--out", finished, "--resume", check=False)
    assert_user_error(proc, "study run bct-o1-n2 was trained with other options", "influence_scale",
                      "new name")


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path):
    proc = compat("study", "run", SMOKE, "--out", tmp_path / "dry", "--dry-run")
    assert "old-s1" in proc.stdout and "bct-o3-n2" in proc.stdout and "7 runs" in proc.stdout
    assert "estimated training time" in proc.stdout
    assert not (tmp_path / "dry").exists()


def write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = """name: t
data: digits
common: {backbone: test_resnet, epochs: 1, image_size: 8}
old: {classes: 0-4}
methods:
  independent: {method: baseline, reference: true, old_model: false}
  bct: {method: bct}
seeds: {old: [1], new: [2]}
"""


@pytest.mark.parametrize("change, fragments", [
    (("seeds: {old: [1], new: [2]}", "seeds: {old: [1, 2], new: [2]}"), ["seed(s) 2", "never coincide"]),
    (("methods:", "validation: {fraction: 0.7}\nmethods:"), ["validation.fraction 0.7", "(0, 0.5]"]),
    (("methods:", "validation: {fraction: 0}\nmethods:"), ["validation.fraction 0", "(0, 0.5]"]),
    (("bct: {method: bct}", "bct: {method: no-such-method}"), ["'no-such-method' is not installed"]),
    (("reference: true, ", ""), ["exactly one method entry must be the reference"]),
    (("name: t", "name: t\nepochs: 3"), ["unknown key epochs"]),
    (("bct: {method: bct}", "bct: {method: bct, sett: {}}"), ["unknown key methods.bct.sett", "'set'"]),
    (("common: {", "common: {seed: 4, "), ["common sets 'seed'"]),
    (("bct: {method: bct}", "bct: {method: bct, teachers: [1, 21]}"), ["teachers: seed(s) 1", "21-28"]),
    (("bct: {method: bct}", "bct: {method: bct, teachers: [21, 21]}"), ["listed twice"]),
    (("old_model: false}", "old_model: false, teachers: [21]}"), ["reference 'independent' lists teachers"]),
])
def test_bad_study_files_are_one_paragraph_errors(tmp_path, change, fragments):
    path = write(tmp_path, BASE.replace(*change))
    assert_user_error(compat("study", "run", path, "--out", tmp_path / "out", check=False), *fragments)
    assert not (tmp_path / "out").exists()


def test_a_folder_of_another_study_is_refused_and_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    state = {"format": "compat-study/1", "name": "other", "fingerprint": "0123456789abcdef", "spec": {}}
    (out / "study.json").write_text(json.dumps(state))
    (out / "precious.txt").write_text("keep me")
    proc = compat("study", "run", write(tmp_path, BASE), "--out", out, "--resume", check=False)
    assert_user_error(proc, "holds another study", "other")
    assert (out / "precious.txt").read_text() == "keep me"


def test_report_of_a_folder_that_is_no_study(tmp_path):
    assert_user_error(compat("study", "report", tmp_path, check=False), "is not a study folder")


def test_the_shipped_fashion_study_file_is_valid():
    proc = compat("study", "run", ROOT / "studies" / "fashion-mnist-5to10.yaml", "--out", "unused",
                  "--dry-run", check=False)
    if shutil.which("true") and "fashion-mnist: no Fashion-MNIST" in proc.stderr:
        pytest.skip("Fashion-MNIST is not installed here (dataset-fashion-mnist)")
    assert proc.returncode == 0, proc.stderr
    assert "113 runs" in proc.stdout and "old-s1 + independent-n2" in proc.stdout
    # in an 80-column pipe no name is cut, and each run's name stays on one line
    narrow = compat("study", "run", ROOT / "studies" / "fashion-mnist-5to10.yaml", "--out", "unused",
                    "--dry-run", env={"COLUMNS": "80"})
    assert "…" not in narrow.stdout and max(map(len, narrow.stdout.splitlines())) <= 80
    for name in ("advbct-disc-lr-0.01-o5-n4", "procrustes-to-old-o5-n4", "independent-n4"):
        assert f"  {name} " in narrow.stdout


CLASSIFICATION = """name: digits-cls
""" + TINY_DIGITS + """methods:
  independent: {method: baseline, reference: true, old_model: false}
  pct: {method: pct}
seeds: {old: [1, 3], new: [2]}
evaluation: {task: classification, splits: [val, test]}
"""


def test_classification_study_scores_each_new_classifier_against_its_old_one(tmp_path):
    out = tmp_path / "cls"
    compat("study", "run", write(tmp_path, CLASSIFICATION), "--out", out)
    proc = compat("study", "report", out, "--split", "val", "--json", tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["task"] == "classification" and set(report["methods"]) == {"independent", "pct"}
    pct = report["methods"]["pct"]
    assert pct["n"] == 2 and 0 < pct["new_accuracy"]["mean"] <= 1 and 0 <= pct["nfr"]["mean"] <= 1
    row = pct["per_pair"][0]
    saved = json.loads((out / "results" / "val" / "pct-o1-n2--old-s1.json").read_text())
    assert row["nfr"] == saved["nfr"] and row["reference"]["nfr"] == json.loads(
        (out / "results" / "val" / "independent-n2--old-s1.json").read_text())["nfr"]
    assert saved["old_accuracy"] == json.loads(
        (out / "results" / "val" / "independent-n2--old-s1.json").read_text())["old_accuracy"]
    assert sorted(p.name for p in (out / "results" / "test").iterdir()) == [
        "independent-n2--old-s1.json", "independent-n2--old-s3.json", "pct-o1-n2--old-s1.json",
        "pct-o3-n2--old-s3.json"]
    assert "NFR" in proc.stdout and "fewer flips" in proc.stdout


def test_the_shipped_pct_study_file_is_valid():
    proc = compat("study", "run", ROOT / "studies" / "fashion-mnist-pct.yaml", "--out", "unused",
                  "--dry-run", check=False)
    if "fashion-mnist: no Fashion-MNIST" in proc.stderr:
        pytest.skip("Fashion-MNIST is not installed here (dataset-fashion-mnist)")
    assert proc.returncode == 0, proc.stderr
    assert "39 runs" in proc.stdout and "classification evaluations" in proc.stdout
    assert "teacher-s28" in proc.stdout and "8 teachers" in proc.stdout
