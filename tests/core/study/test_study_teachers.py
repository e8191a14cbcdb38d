"""Study entries that train against an ensemble of teachers (ELODI): the plan trains each teacher once,
like the reference, and passes them as --old runs; a tiny classification study does it end to end."""

import json
from pathlib import Path

import pytest
import yaml
from cli_runner import compat
from compat_core.study.plan import plan_pairs, plan_runs
from compat_core.study.spec import StudySpec
from study_files import TINY_DIGITS

SPEC = {
    "name": "t", "data": "digits", "new": {"set": {"backbone": "test_resnet"}},
    "methods": {"ref": {"method": "baseline", "reference": True, "old_model": False, "set": {"lr": 0.2}},
                "ens": {"method": "elodi", "old_model": False, "teachers": [21, 22]},
                "both": {"method": "elodi", "teachers": [22, 23]},
                "plain": {"method": "pct"}},
    "seeds": {"old": [1, 3], "new": [2]}, "evaluation": {"task": "classification", "splits": ["test"]},
}


def names(runs):
    return [run.name for run in runs]


def test_each_teacher_trains_once_like_the_reference_before_the_methods():
    runs = plan_runs(StudySpec.model_validate(SPEC), "s")
    assert names(runs)[:6] == ["old-s1", "old-s3", "teacher-s21", "teacher-s22", "teacher-s23", "ref-n2"]
    teacher = runs[3]
    assert teacher.method == "baseline" and teacher.seed == 22 and teacher.options["lr"] == 0.2
    assert teacher.options["backbone"] == "test_resnet" and "old" not in teacher.options
    by_name = {run.name: run for run in runs}
    assert by_name["ens-n2"].options["old"] == [str(Path("s/runs/teacher-s21")), str(Path("s/runs/teacher-s22"))]
    assert by_name["ens-n2"].against == "2 teachers"
    both = by_name["both-o3-n2"]
    assert [Path(p).name for p in both.options["old"]] == ["old-s3", "teacher-s22", "teacher-s23"]
    assert both.against == "old-s3 + 2 teachers" and by_name["plain-o1-n2"].against == "old-s1"


def test_only_plans_the_teachers_of_the_chosen_entries_and_never_evaluates_them():
    spec = StudySpec.model_validate(SPEC)
    runs = plan_runs(spec, "s", only=["plain"])
    assert not [name for name in names(runs) if name.startswith("teacher")]
    runs = plan_runs(spec, "s", only=["ens"])
    assert names(runs) == ["old-s1", "old-s3", "teacher-s21", "teacher-s22", "ref-n2", "ens-n2"]
    pairs = plan_pairs(spec, runs)
    assert {(p.query, p.gallery) for p in pairs} == {("ref-n2", "old-s1"), ("ref-n2", "old-s3"),
                                                    ("ens-n2", "old-s1"), ("ens-n2", "old-s3")}


STUDY = """name: digits-elodi
""" + TINY_DIGITS + """methods:
  independent: {method: baseline, reference: true, old_model: false}
  elodi: {method: elodi, old_model: false, teachers: [21, 22], set: {min_teachers: 2}}
seeds: {old: [1, 3], new: [2]}
evaluation: {task: classification, splits: [test]}
"""


@pytest.mark.slow
def test_an_ensemble_entry_trains_against_its_teachers_and_is_scored_against_every_old_model(tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text(STUDY)
    out = tmp_path / "out"
    proc = compat("study", "run", study, "--out", out)
    assert "train elodi-n2 (elodi, seed 2, against 2 teachers)" in proc.stderr
    runs = out / "runs"
    config = yaml.safe_load((runs / "elodi-n2" / "config.yaml").read_text())
    assert [Path(p).name for p in config["old"]] == ["teacher-s21", "teacher-s22"]
    assert yaml.safe_load((runs / "teacher-s22" / "config.yaml").read_text())["seed"] == 22
    assert sorted(p.name for p in (out / "results" / "test").iterdir()) == [
        "elodi-n2--old-s1.json", "elodi-n2--old-s3.json", "independent-n2--old-s1.json",
        "independent-n2--old-s3.json"]
    report = json.loads(compat("study", "report", out, "--split", "test", "--json", "-").stdout)
    assert report["methods"]["elodi"]["n"] == 2
    again = compat("study", "run", study, "--out", out, "--resume")
    assert "6 runs (6 done)" in again.stderr and "] train " not in again.stderr
