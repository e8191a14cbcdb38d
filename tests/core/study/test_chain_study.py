"""Chain studies: generation k trained against generation k - 1 of the same chain, the reference of each
generation independently, BT^2's new' the reference of its generation; every pair of a chain evaluated;
AC and AM as mean ± std over the chains; a chain study killed part-way and resumed."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from cli_runner import assert_user_error, compat
from compat_core.study.chain import chain_members, plan_chain_runs
from compat_core.study.plan import plan_pairs, plan_runs
from compat_core.study.spec import load_study
from study_files import TINY_DIGITS

STUDY = """name: digits-chain
""" + TINY_DIGITS + """chain:
  generations: [{classes: 0-2}, {classes: 0-5}, {classes: 0-9}]
methods:
  independent: {method: baseline, reference: true, old_model: false}
  bct: {method: bct}
  bt2: {method: bt2, set: {new_prime: "{reference}", add_dim: 8}}
seeds: {old: [1], new: [2, 4]}
"""


@pytest.fixture
def study(tmp_path):
    path = tmp_path / "chain.yaml"
    path.write_text(STUDY)
    return path


def test_the_plan_links_each_generation_to_the_previous_one_of_its_chain(study, tmp_path):
    spec = load_study(study)
    runs = {r.name: r for r in plan_runs(spec, tmp_path / "s")}
    assert runs["old-s1"].options["classes"] == "0-2"
    assert runs["bct-g2-o1-n2"].options["old"][0].endswith("old-s1")
    assert runs["bct-g3-o1-n2"].options["old"][0].endswith("bct-g2-o1-n2")
    assert runs["bct-g3-o1-n2"].options["classes"] == "0-9" and runs["bct-g3-o1-n2"].seed == 2
    assert "old" not in runs["independent-g3-n4"].options
    assert runs["bt2-g3-o1-n4"].options["new_prime"].endswith("independent-g3-n4")  # new' of its generation
    names = list(runs)
    assert names.index("bct-g2-o1-n2") < names.index("bct-g3-o1-n2")  # trained in order
    members = chain_members(spec, "bct", 1, 2)
    assert members == ["old-s1", "bct-g2-o1-n2", "bct-g3-o1-n2"]
    pairs = {(p.query, p.gallery) for p in plan_pairs(spec, list(runs.values())) if p.split == "val"}
    assert {(q, g) for q in members for g in members} <= pairs
    assert plan_chain_runs  # the module's entry point exists for plugins that plan chains themselves


def test_old_classes_must_agree_with_generation_one(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(STUDY.replace("seeds:", "old: {classes: 0-4}\nseeds:"))
    with pytest.raises(Exception, match="must agree"):
        load_study(path)


@pytest.mark.slow
def test_a_chain_study_killed_part_way_resumes_and_reports_ac_and_am(study, tmp_path):
    out = tmp_path / "s"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "compat_cli.main", "study", "run", str(study), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    marker = out / "runs" / "bct-g2-o1-n2" / "model.safetensors"
    deadline = time.time() + 600
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and not (out / "runs" / "bt2-g3-o1-n4" / "model.safetensors").exists()
    resumed = compat("study", "run", study, "--out", out, "--resume")
    assert "done)" in resumed.stderr and "(0 done)" not in resumed.stderr
    report = json.loads(compat("study", "report", out, "--split", "val", "--json", "-").stdout)
    assert report["task"] == "chain" and report["generations"] == 3
    for name in ("independent", "bct", "bt2"):
        summary = report["methods"][name]
        assert summary["n"] == 2 and 0 <= summary["AC"]["top1"]["mean"] <= 1
        assert len(summary["AC"]["top1"]["values"]) == 2 and summary["AM"]["mAP"]["std"] is not None
        assert len(summary["matrix"]["top1"]) == 3
    text = compat("study", "report", out, "--split", "test").stdout
    assert "chain of 3 generations" in text.replace("\n", " ")
    wrong = compat("study", "report", out, "--split", "nope", check=False)
    assert_user_error(wrong, "--split nope")


@pytest.mark.parametrize("path", sorted((__import__("pathlib").Path(__file__).parents[3] / "studies").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_committed_study_file_loads_and_plans(path, tmp_path):
    from compat_core.plugins import get_host

    spec = load_study(path, installed_methods=get_host().methods.names())
    runs = plan_runs(spec, tmp_path)
    assert runs and plan_pairs(spec, runs)
