"""The report's numbers on fixed per-pair results (no training): means, stds, the BCT criterion, the
update gain with the reference run as denominator, paired differences and the by-group split."""

import json
import math

import pytest
from compat_core.errors import CompatError
from compat_core.study.render import markdown
from compat_core.study.report import build_report
from compat_core.study.spec import StudySpec

SPEC = {
    "name": "fixed", "data": "digits",
    "methods": {"ref": {"method": "baseline", "reference": True, "old_model": False},
                "a": {"method": "bct"}, "b": {"method": "l2"}},
    "seeds": {"old": [1, 3], "new": [2]}, "evaluation": {"splits": ["test"]},
}
# top-1 = top-5 = mAP = value, for brevity
VALUES = {
    ("old-s1", "old-s1"): 0.60, ("old-s3", "old-s3"): 0.70,
    ("ref-n2", "ref-n2"): 0.90, ("ref-n2", "old-s1"): 0.10, ("ref-n2", "old-s3"): 0.05,
    ("a-o1-n2", "a-o1-n2"): 0.88, ("a-o1-n2", "old-s1"): 0.66,
    ("a-o3-n2", "a-o3-n2"): 0.86, ("a-o3-n2", "old-s3"): 0.68,
    ("b-o1-n2", "b-o1-n2"): 0.80, ("b-o1-n2", "old-s1"): 0.63,
    ("b-o3-n2", "b-o3-n2"): 0.82, ("b-o3-n2", "old-s3"): 0.71,
}


def write_study(root, values=VALUES, by_group=None):
    spec = StudySpec.model_validate(SPEC)
    (root / "study.json").write_text(json.dumps({"format": "compat-study/1", "name": "fixed",
                                                 "fingerprint": spec.fingerprint(),
                                                 "spec": spec.model_dump(mode="json")}))
    folder = root / "results" / "test"
    folder.mkdir(parents=True)
    for (query, gallery), value in values.items():
        result = {"query": query, "gallery": gallery, "top1": value, "top5": value, "mAP": value}
        if by_group and (query, gallery) in by_group:
            result["by_group"] = by_group[query, gallery]
        (folder / f"{query}--{gallery}.json").write_text(json.dumps(result))
    return root


def test_means_stds_criterion_and_gain_by_hand(tmp_path):
    report = build_report(write_study(tmp_path), "test")
    a = report["methods"]["a"]
    assert report["n_pairs"] == 2 and a["n"] == 2
    assert a["new_old"]["top1"]["mean"] == pytest.approx(0.67)
    assert a["new_old"]["top1"]["std"] == pytest.approx(math.sqrt(2 * 0.01 ** 2))  # (0.66, 0.68)
    assert a["old_old"]["mAP"]["values"] == [0.60, 0.70]
    # gain uses the reference's new/new (0.90), not the method's own: (0.66-0.60)/(0.90-0.60), (0.68-0.70)/(0.20)
    assert a["gain"]["top1"]["values"] == pytest.approx([0.2, -0.1])
    assert a["criterion_held"] == {"top1": 1, "mAP": 1}
    assert a["new_new_vs_reference"]["mAP"]["diff"]["values"] == pytest.approx([-0.02, -0.04])
    assert report["methods"]["b"]["criterion_held"] == {"top1": 2, "mAP": 2}


def test_reference_is_evaluated_against_every_old_model(tmp_path):
    ref = build_report(write_study(tmp_path), "test")["methods"]["ref"]
    assert ref["new_old"]["top1"]["values"] == [0.10, 0.05]
    assert ref["criterion_held"]["top1"] == 0


def test_paired_difference_against_the_comparison_method(tmp_path):
    report = build_report(write_study(tmp_path), "test")
    assert report["comparison"] == "a"  # the first method trained against the old model
    versus = report["methods"]["b"]["versus"]
    assert versus["new_old"]["top1"]["diff"]["values"] == pytest.approx([-0.03, 0.03])
    assert (versus["new_old"]["top1"]["favour_method"], versus["new_old"]["top1"]["favour_comparison"]) == (1, 1)
    other = build_report(tmp_path, "test", compare_to="b")["methods"]["a"]["versus"]
    assert other["new_old"]["mAP"]["diff"]["values"] == pytest.approx([0.03, -0.03])


def test_missing_pairs_are_left_out_and_named(tmp_path):
    values = {k: v for k, v in VALUES.items() if k != ("a-o3-n2", "old-s3")}
    report = build_report(write_study(tmp_path, values), "test")
    assert report["methods"]["a"]["n"] == 1
    assert report["missing"] == {"a": ["3/2"]}
    assert "Missing: a, seed pairs 3/2." in markdown(report)


def test_by_group_is_summarised_over_pairs(tmp_path):
    group = lambda old, new: {"old_classes": {"top1": old, "top5": old, "mAP": old, "n_query": 5},  # noqa: E731
                              "new_classes": {"top1": new, "top5": new, "mAP": new, "n_query": 5}}
    by_group = {("a-o1-n2", "old-s1"): group(0.9, 0.4), ("a-o3-n2", "old-s3"): group(0.8, 0.5)}
    report = build_report(write_study(tmp_path, by_group=by_group), "test")
    summary = report["methods"]["a"]["new_old_by_group"]
    assert summary["old_classes"]["top1"]["mean"] == pytest.approx(0.85)
    assert summary["new_classes"]["mAP"]["values"] == [0.4, 0.5]
    assert "new_old_by_group" not in report["methods"]["b"]  # no pair of b has it


def test_runs_that_warned_during_training_are_named(tmp_path):
    write_study(tmp_path)
    run = tmp_path / "runs" / "b-o3-n2"
    run.mkdir(parents=True)
    records = [{"epoch": e, "loss": {"total": 1.0}, **({"warnings": ["D died"]} if e > 1 else {})} for e in (1, 2, 3)]
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    report = build_report(tmp_path, "test")
    assert report["methods"]["b"]["training_warnings"] == {"b-o3-n2": [2, 3]}
    assert "training_warnings" not in report["methods"]["a"]
    assert ("Warning: b: 1 of 2 runs warned during training (b-o3-n2 from epoch 2); its numbers may not show "
            "what the method is meant to do.") in markdown(report)


def test_markdown_holds_every_method_and_the_split(tmp_path):
    text = markdown(build_report(write_study(tmp_path), "test"))
    assert "split `test`" in text
    for row in ("| a | 2 | 67.00 ± 1.41 |", "| ref |", "| b |"):
        assert row in text


def _split_folders(tmp_path, old_old_there=0.60):
    """The study split over two folders: `a` (and the reference) here, `b` (and the reference) there, the
    latter reported to JSON as an earlier report."""
    here = {k: v for k, v in VALUES.items() if not k[0].startswith("b-")}
    there = {k: v for k, v in VALUES.items() if not k[0].startswith("a-")}
    there[("old-s1", "old-s1")] = old_old_there
    (tmp_path / "here").mkdir()
    (tmp_path / "there").mkdir()
    write_study(tmp_path / "here", here)
    earlier = tmp_path / "there.json"
    earlier.write_text(json.dumps(build_report(write_study(tmp_path / "there", there), "test")))
    return tmp_path / "here", earlier


def test_an_earlier_report_of_the_same_models_adds_its_entries_paired_as_if_run_here(tmp_path):
    here, earlier = _split_folders(tmp_path)
    alone = build_report(here, "test")
    assert set(alone["methods"]) == {"ref", "a"} and alone["missing"] == {"b": ["1/2", "3/2"]}
    merged = build_report(here, "test", earlier=[earlier])
    (tmp_path / "whole").mkdir()
    whole = build_report(write_study(tmp_path / "whole"), "test")
    assert list(merged["methods"]) == ["ref", "a", "b"] and merged["missing"] == {}
    assert merged["methods"]["b"]["from"] == str(earlier) and "from" not in merged["methods"]["a"]
    assert merged["methods"]["b"]["versus"] == whole["methods"]["b"]["versus"]  # paired with `a` from here
    assert merged["methods"]["b"]["new_old"] == whole["methods"]["b"]["new_old"]
    assert f"From `{earlier}` (same old and reference models, checked pair by pair): b." in markdown(merged)


def test_an_earlier_report_of_other_old_models_is_refused(tmp_path):
    here, earlier = _split_folders(tmp_path, old_old_there=0.61)
    with pytest.raises(CompatError, match=r"seed pair 1/2 has old/old top1 0\.61 there and 0\.6 here"):
        build_report(here, "test", earlier=[earlier])
    with pytest.raises(CompatError, match="no such file"):
        build_report(here, "test", earlier=[tmp_path / "nope.json"])
    other = json.loads(earlier.read_text()) | {"split": "val"}
    earlier.write_text(json.dumps(other))
    with pytest.raises(CompatError, match="its split is 'val', this study's is 'test'"):
        build_report(here, "test", earlier=[earlier])


def test_the_cli_merges_and_refuses_with_one_paragraph(tmp_path):
    from cli_runner import assert_user_error, compat

    here, earlier = _split_folders(tmp_path)
    out = compat("study", "report", here, "--with", earlier, "--markdown", tmp_path / "r.md").stdout
    assert "| b | 2 |" in (tmp_path / "r.md").read_text() and "checked pair by pair" in out
    assert_user_error(compat("study", "report", here, "--with", tmp_path / "x.json", check=False),
                      "--with", "no such file")


def test_the_plot_tells_every_method_apart(tmp_path):
    from compat_core.study.render import marker_style, plot

    styles = {tuple(sorted(marker_style(n).items())) for n in range(70)}
    assert len(styles) == 70  # colour alone repeats after ten methods
    path = plot(build_report(write_study(tmp_path), "test"), tmp_path / "study.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
