"""A classification study's report on fixed per-pair results (no training): accuracy and NFR as mean ±
std, NFR against the reference of the same seed pair, paired differences, and its tables and plot."""

import json
import math

import pytest
from compat_core.study.plan import Pair, plan_pairs, plan_runs
from compat_core.study.render import markdown, plot, tables
from compat_core.study.report import build_report
from compat_core.study.spec import StudySpec

SPEC = {
    "name": "cls", "data": "digits",
    "methods": {"ref": {"method": "baseline", "reference": True, "old_model": False},
                "a": {"method": "pct"}, "b": {"method": "cna"}},
    "seeds": {"old": [1, 3], "new": [2]}, "evaluation": {"task": "classification", "splits": ["test"]},
}
# (new run, old run): (old accuracy, new accuracy, nfr)
VALUES = {
    ("ref-n2", "old-s1"): (0.80, 0.90, 0.04), ("ref-n2", "old-s3"): (0.82, 0.90, 0.05),
    ("a-o1-n2", "old-s1"): (0.80, 0.89, 0.02), ("a-o3-n2", "old-s3"): (0.82, 0.91, 0.04),
    ("b-o1-n2", "old-s1"): (0.80, 0.88, 0.05), ("b-o3-n2", "old-s3"): (0.82, 0.92, 0.03),
}


def write_study(root, values=VALUES):
    spec = StudySpec.model_validate(SPEC)
    (root / "study.json").write_text(json.dumps({"format": "compat-study/1", "name": "cls",
                                                 "fingerprint": spec.fingerprint(),
                                                 "spec": spec.model_dump(mode="json")}))
    folder = root / "results" / "test"
    folder.mkdir(parents=True)
    for (new, old), (old_acc, new_acc, nfr) in values.items():
        result = {"query": new, "gallery": old, "old_accuracy": old_acc, "new_accuracy": new_acc,
                  "new_top5": 0.99, "nfr": nfr, "nfi": nfr / (1 - new_acc), "pfr": 0.1, "btc": 0.97, "bec": 0.8,
                  "old_classes": None}
        (folder / f"{new}--{old}.json").write_text(json.dumps(result))
    return root


def test_classification_pairs_are_new_against_old_only():
    spec = StudySpec.model_validate(SPEC)
    pairs = plan_pairs(spec, plan_runs(spec, "s"))
    assert set(pairs) == {Pair(n, o, "test") for n, o in VALUES}


def test_accuracy_nfr_and_the_reference_by_hand(tmp_path):
    report = build_report(write_study(tmp_path), "test")
    assert report["task"] == "classification" and report["comparison"] == "a"
    a = report["methods"]["a"]
    assert a["n"] == 2 and a["nfr"]["values"] == [0.02, 0.04]
    assert a["nfr"]["mean"] == pytest.approx(0.03) and a["nfr"]["std"] == pytest.approx(math.sqrt(2) * 0.01)
    assert a["old_accuracy"]["values"] == [0.80, 0.82]
    assert a["vs_reference"]["nfr"]["diff"]["values"] == pytest.approx([-0.02, -0.01])
    assert a["vs_reference"]["new_accuracy"]["diff"]["values"] == pytest.approx([-0.01, 0.01])
    assert a["relative_nfr"]["values"] == pytest.approx([-0.5, -0.2])  # 0.02/0.04 - 1, 0.04/0.05 - 1
    assert a["fewer_flips"] == 2 and report["methods"]["b"]["fewer_flips"] == 1
    ref = report["methods"]["ref"]
    assert ref["relative_nfr"]["values"] == [0.0, 0.0] and ref["fewer_flips"] == 0


def test_paired_with_the_comparison_method(tmp_path):
    b = build_report(write_study(tmp_path), "test")["methods"]["b"]["versus"]
    assert b["against"] == "a" and b["n"] == 2
    assert b["nfr"]["diff"]["values"] == pytest.approx([0.03, -0.01])
    assert (b["nfr"]["favour_method"], b["nfr"]["favour_comparison"]) == (1, 1)


def test_a_reference_without_flips_leaves_the_relative_nfr_undefined(tmp_path):
    values = {**VALUES, ("ref-n2", "old-s1"): (0.80, 0.90, 0.0)}
    a = build_report(write_study(tmp_path, values), "test")["methods"]["a"]
    assert a["relative_nfr"]["values"] == pytest.approx([-0.2]) and a["relative_nfr"]["undefined"] == 1


def test_tables_markdown_and_plot(tmp_path):
    report = build_report(write_study(tmp_path), "test")
    titles = [title for title, _, _ in tables(report)]
    assert any("NFR" in t for t in titles) and any("paired with a" in t for t in titles)
    text = markdown(report)
    assert "| a | 2 | 90.00 ± 1.41 | 3.00 ± 1.41 |" in text and "classification" in text
    pytest.importorskip("matplotlib")
    assert plot(report, tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_retrieval_fingerprints_are_unchanged_by_the_task_field():
    retrieval = {**SPEC, "evaluation": {"splits": ["test"]}}
    explicit = {**SPEC, "evaluation": {"splits": ["test"], "task": "retrieval"}}
    assert StudySpec.model_validate(retrieval).fingerprint() == StudySpec.model_validate(explicit).fingerprint()
    assert StudySpec.model_validate(SPEC).fingerprint() != StudySpec.model_validate(retrieval).fingerprint()


def test_report_json_to_stdout_is_json_alone(tmp_path):
    import subprocess
    import sys

    write_study(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "compat_cli.main", "study", "report", str(tmp_path), "--json", "-"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["methods"]["a"]["n"] == 2 and "NFR" in proc.stderr
