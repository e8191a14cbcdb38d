"""compat-unibct end to end: the conformance kit (the prototypes survive --resume), the CLI on digits with a
warm-up and two refinements, bad input, and two gloo processes training against the same prototypes."""

import json
from pathlib import Path

import compat_unibct.plugin
import pytest
import torch
from cli_runner import assert_user_error, compat
from compat_core.testing import run_conformance, train_old_model

pytestmark = pytest.mark.slow

TRAIN = ["--data", "digits", "--backbone", "test_resnet", "--image-size", "16", "--embedding-dim", "16",
         "--device", "cpu"]


@pytest.fixture(scope="module")
def old(tmp_path_factory):
    return Path(train_old_model(tmp_path_factory.mktemp("unibct-old")))


@pytest.mark.parametrize("options", [{"refine_epochs": [0]},
                                     {"refine_epochs": [1], "epochs": 2, "affinity": "column", "embedding_dim": 24,
                                      "dim_policy": "truncate", "memory_mb": 16}])
def test_conformance(options, tmp_path, old):
    run_conformance(compat_unibct.plugin, "unibct", tmp_path, needs_old=True, options=options,
                    distribution="compat-unibct", old_run=old)


def test_cli_warms_up_refines_twice_and_evaluates(old, tmp_path):
    proc = compat("train", "unibct", *TRAIN, "--epochs", "3", "--refine-epochs", "1,2", "--old", old, "--out",
                  tmp_path / "new")
    assert "warm-up (CE only) for 1 epoch(s)" in proc.stderr
    history = [json.loads(line) for line in (tmp_path / "new" / "history.jsonl").read_text().splitlines()]
    assert set(history[0]["loss"]) == {"total", "ce"} and set(history[2]["loss"]) == {"total", "ce", "prototype"}
    state = torch.load(tmp_path / "new" / "checkpoint" / "state.pt", weights_only=True)["method"]
    assert int(state["refinements"]) == 2 and state["prototypes"].shape == (10, 16)
    assert torch.count_nonzero(state["prototypes"]).item() > 0
    compat("eval", "matrix", old, tmp_path / "new", "--data", "digits")


def test_bad_input(old, tmp_path):
    beyond = compat("train", "unibct", *TRAIN, "--epochs", "2", "--old", old, "--out", tmp_path / "a", check=False)
    assert_user_error(beyond, "--refine-epochs 10, 20", "outside this 2-epoch run", "--refine-epochs 1")
    twice = compat("train", "unibct", *TRAIN, "--epochs", "3", "--refine-epochs", "1,1", "--old", old, "--out",
                   tmp_path / "b", check=False)
    assert_user_error(twice, "names an epoch twice")
    lam = compat("train", "unibct", *TRAIN, "--epochs", "2", "--lam", "1", "--old", old, "--out", tmp_path / "c",
                 check=False)
    assert_user_error(lam, "lam")
    assert not any((tmp_path / name).exists() for name in "abc")


def test_two_processes_train_against_the_same_prototypes(old, tmp_path):
    """Process 0 refines, the engine broadcasts: both processes' checkpoints hold process 0's prototypes, and
    the run ends like one process on the global batch (test_vit: no BatchNorm)."""
    from tiny_models import train_ddp_and_single

    args = ["train", "unibct", "--data", "digits", "--backbone", "test_vit", "--epochs", "2", "--batch-size", "64",
            "--augment", "none", "--lr", "0.05", "--device", "cpu", "--old", str(old), "--embedding-dim", "16",
            "--refine-epochs", "1", "--tau", "0.5"]
    train_ddp_and_single(args, tmp_path)
    states = [torch.load(tmp_path / name / "checkpoint" / "state.pt", weights_only=True)["method"]
              for name in ("ddp", "one")]
    assert torch.allclose(states[0]["prototypes"], states[1]["prototypes"], atol=1e-4)
