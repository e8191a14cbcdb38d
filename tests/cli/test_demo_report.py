"""The demo's report places the run next to the committed study and flags numbers outside its range."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "demo_report.py"


@pytest.fixture(scope="module")
def demo_report():
    spec = importlib.util.spec_from_file_location("demo_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def summary(values):
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "values": values}


def matrix(new_old_top1):
    rows = [{"query_label": q, "gallery_label": g, "top1": 0.8, "top5": 0.9, "mAP": 0.6}
            for q in ("old", "new-bct") for g in ("old", "new-bct")]
    entry = {"new": "r/new-bct", "old": "r/old", "new_label": "new-bct", "old_label": "old",
             "gain_reference": "new-independent"}
    for metric in ("top1", "mAP"):
        entry[metric] = {"old_old": 0.80, "new_old": new_old_top1, "new_new": 0.88, "compatible": True,
                         "gain": 0.5}
    return {"metric": "cosine", "results": rows, "compatibility": [entry]}


STUDY = {"study": "fashion-mnist-5to10", "split": "test", "methods": {"bct": {
    "n": 3, "old_old": {m: summary([0.79, 0.80, 0.81]) for m in ("top1", "mAP")},
    "new_old": {m: summary([0.82, 0.84, 0.86]) for m in ("top1", "mAP")},
    "new_new": {m: summary([0.87, 0.88, 0.89]) for m in ("top1", "mAP")},
    "gain": {m: summary([0.4, 0.5, 0.6]) for m in ("top1", "mAP")},
    "criterion_held": {"top1": 2, "mAP": 3}}}}


def test_expected_range_is_two_stds_or_the_study_range(demo_report):
    assert demo_report.expected_range(summary([0.82, 0.84, 0.86])) == pytest.approx((0.80, 0.88))
    wide = {"mean": 0.5, "std": 0.01, "min": 0.4, "max": 0.6}
    assert demo_report.expected_range(wide) == (0.4, 0.6)


def test_a_run_inside_the_study_is_not_flagged(demo_report):
    lines, inside = demo_report.study_table(matrix(0.83), STUDY, "bct")
    assert inside
    text = "\n".join(lines)
    assert "| new-bct/old top-1 | 83.00 | 84.00 ± 2.00 | 80.00 .. 88.00 | yes |" in text
    assert "held on top-1 in 2 of 3" in text


def test_a_run_outside_the_study_is_flagged(demo_report):
    lines, inside = demo_report.study_table(matrix(0.70), STUDY, "bct")
    assert not inside
    assert "| new-bct/old top-1 | 70.00 | 84.00 ± 2.00 | 80.00 .. 88.00 | **no** |" in "\n".join(lines)
    assert "outside the study's expected range" in "\n".join(lines)


def test_quick_mode_is_not_compared(demo_report):
    text = demo_report.report(matrix(0.83), 100, STUDY, "bct", epochs=2)
    assert "Quick mode (2 epochs)" in text and "expected range" not in text
