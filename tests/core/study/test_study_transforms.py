"""Study entries that are transformations between the old model and the reference of their new seed
(FCT, adapters): the study passes the reference as --new, scores a `gallery` entry as the reference's
queries against the transformed old gallery and a `queries` entry as its mapped queries against the old
gallery; the report's gain is then the fraction of the reference's gain the transformation recovers."""

import json
from pathlib import Path

import pytest
from cli_runner import assert_user_error, compat
from compat_core.study.plan import Pair, plan_pairs, plan_runs
from compat_core.study.report import build_report
from compat_core.study.spec import StudySpec
from study_files import TINY_DIGITS

SPEC = {
    "name": "tr", "data": "digits",
    "methods": {"ref": {"method": "baseline", "reference": True, "old_model": False},
                "up": {"method": "adapter", "transforms": "gallery"},
                "down": {"method": "adapter", "transforms": "queries", "set": {"direction": "new-to-old"}}},
    "seeds": {"old": [1, 3], "new": [2]}, "evaluation": {"splits": ["test"]},
}


def test_the_reference_of_the_new_seed_is_passed_as_new_and_the_pairs_follow_the_direction():
    spec = StudySpec.model_validate(SPEC)
    runs = {run.name: run for run in plan_runs(spec, "s")}
    assert runs["up-o3-n2"].options["new"] == str(Path("s/runs/ref-n2"))
    assert runs["up-o3-n2"].options["old"] == [str(Path("s/runs/old-s3"))]
    pairs = {(p.query, p.gallery) for p in plan_pairs(spec, list(runs.values()))}
    assert {("ref-n2", "up-o1-n2"), ("ref-n2", "up-o3-n2"), ("down-o1-n2", "old-s1")} <= pairs
    assert ("up-o1-n2", "up-o1-n2") not in pairs and ("up-o1-n2", "old-s1") not in pairs
    assert Pair("ref-n2", "ref-n2", "test") in plan_pairs(spec, list(runs.values()))


def test_the_gain_is_the_share_of_the_reference_gain_recovered(tmp_path):
    spec = StudySpec.model_validate(SPEC)
    (tmp_path / "study.json").write_text(json.dumps({"format": "compat-study/1", "name": "tr",
                                                     "fingerprint": spec.fingerprint(),
                                                     "spec": spec.model_dump(mode="json")}))
    values = {("old-s1", "old-s1"): 0.60, ("old-s3", "old-s3"): 0.70, ("ref-n2", "ref-n2"): 0.90,
              ("ref-n2", "old-s1"): 0.1, ("ref-n2", "old-s3"): 0.1,
              ("ref-n2", "up-o1-n2"): 0.84, ("ref-n2", "up-o3-n2"): 0.85,
              ("down-o1-n2", "old-s1"): 0.63, ("down-o3-n2", "old-s3"): 0.65}
    folder = tmp_path / "results" / "test"
    folder.mkdir(parents=True)
    for (query, gallery), value in values.items():
        (folder / f"{query}--{gallery}.json").write_text(json.dumps(
            {"query": query, "gallery": gallery, "top1": value, "top5": value, "mAP": value}))
    report = build_report(tmp_path, "test")
    up, down = report["methods"]["up"], report["methods"]["down"]
    assert up["new_old"]["top1"]["values"] == [0.84, 0.85] and up["new_new"]["top1"]["values"] == [0.9, 0.9]
    assert up["gain"]["top1"]["values"] == pytest.approx([(0.84 - 0.6) / 0.3, (0.85 - 0.7) / 0.2])
    assert down["new_old"]["top1"]["values"] == [0.63, 0.65] and down["criterion_held"]["top1"] == 1
    assert up["new_new_vs_reference"]["top1"]["diff"]["values"] == [0.0, 0.0]


@pytest.mark.parametrize("entry, fragment", [
    ("{method: adapter, transforms: gallery, old_model: false}", "needs the old model"),
    ("{method: adapter, transforms: gallery, set: {new: x}}", "passes the reference"),
])
def test_bad_transform_entries(tmp_path, entry, fragment):
    path = tmp_path / "s.yaml"
    path.write_text(f"""name: t
data: digits
methods:
  independent: {{method: baseline, reference: true, old_model: false}}
  a: {entry}
seeds: {{old: [1], new: [2]}}
""")
    assert_user_error(compat("study", "run", path, "--out", tmp_path / "out", check=False), fragment)


STUDY = """name: digits-adapters
""" + TINY_DIGITS.replace("epochs: 1", "epochs: 2") + """old: {classes: 0-4}
methods:
  independent: {method: baseline, reference: true, old_model: false}
  affine: {method: adapter, transforms: gallery, set: {kind: affine}}
  to-old: {method: adapter, transforms: queries, set: {direction: new-to-old}}
seeds: {old: [1], new: [2]}
evaluation: {splits: [test], metric: cosine}
"""


@pytest.mark.slow
def test_adapters_in_a_study_end_to_end(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(STUDY)
    out = tmp_path / "out"
    compat("study", "run", path, "--out", out)
    assert (out / "results" / "test" / "independent-n2--affine-o1-n2.json").is_file()
    assert (out / "results" / "test" / "to-old-o1-n2--old-s1.json").is_file()
    report = json.loads(compat("study", "report", out, "--split", "test", "--json", "-").stdout)
    affine = report["methods"]["affine"]
    assert affine["n"] == 1 and affine["new_old"]["top1"]["mean"] > report["methods"]["independent"]["new_old"][
        "top1"]["mean"]


def test_the_tables_say_what_new_old_means_for_a_transformation(tmp_path):
    from compat_core.study.render import tables

    test_the_gain_is_the_share_of_the_reference_gain_recovered(tmp_path)
    title = tables(build_report(tmp_path, "test"))[0][0]
    assert "up: the reference's queries against the transformed old gallery" in title
    assert "down: the reference's queries mapped into the old space" in title


def test_the_reference_token_names_the_reference_of_the_same_new_seed():
    spec = StudySpec.model_validate({**SPEC, "methods": {**SPEC["methods"], "bt2": {
        "method": "bt2", "set": {"new_prime": "{reference}"}}}, "seeds": {"old": [1], "new": [2, 4]}})
    runs = {run.name: run for run in plan_runs(spec, "s")}
    assert runs["bt2-o1-n4"].options["new_prime"] == str(Path("s/runs/ref-n4"))
    assert "new" not in runs["bt2-o1-n4"].options

