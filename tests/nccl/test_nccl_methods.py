"""compat-nccl end to end: the conformance kit (one step, export, kill and --resume bit-identical, which
covers the queue), the CLI on digits, the credible filter, bad input, and two gloo processes against one."""

import json
from pathlib import Path

import compat_nccl.plugin
import pytest
import torch
from cli_runner import assert_user_error, compat
from compat_core.testing import run_conformance, train_old_model
from tiny_models import train_ddp_and_single

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def old(tmp_path_factory):
    return Path(train_old_model(tmp_path_factory.mktemp("nccl-old")))


@pytest.mark.parametrize("options", [{"queue_size": 64}, {"queue_size": 40, "beta": 0.0, "embedding_dim": 24,
                                                          "dim_policy": "truncate", "credible_filter": True}])
def test_conformance(options, tmp_path, old):
    run_conformance(compat_nccl.plugin, "nccl", tmp_path, needs_old=True, options=options,
                    distribution="compat-nccl", old_run=old)


TRAIN = ["--data", "digits", "--backbone", "test_resnet", "--epochs", "2", "--image-size", "16", "--embedding-dim",
         "16", "--device", "cpu"]


def test_cli_trains_logs_the_queue_and_evaluates(old, tmp_path):
    compat("train", "nccl", *TRAIN, "--old", old, "--queue-size", "256", "--credible-filter", "--out",
           tmp_path / "new")
    history = [json.loads(line) for line in (tmp_path / "new" / "history.jsonl").read_text().splitlines()]
    assert set(history[0]["loss"]) == {"total", "ce", "feature", "logit"}
    assert 0 < history[0]["scalars"]["queue_fill"] <= 1 and history[1]["scalars"]["queue_fill"] == 1.0
    state = torch.load(tmp_path / "new" / "checkpoint" / "state.pt", weights_only=True)["method"]
    assert state["queue.slot_old"].shape == (256, 16) and int(state["queue.filled"]) == 256
    proc = compat("eval", "matrix", old, tmp_path / "new", "--data", "digits", "--json", tmp_path / "m.json")
    assert "new" in proc.stdout


def test_bad_input(old, tmp_path):
    small = compat("train", "nccl", *TRAIN, "--old", old, "--queue-size", "16", "--out", tmp_path / "a", check=False)
    assert_user_error(small, "--queue-size 16 is smaller than the global batch", "--queue-size 128")
    dims = compat("train", "nccl", *TRAIN[:-4], "--embedding-dim", "24", "--dim-policy", "truncate", "--device", "cpu",
                  "--old", old, "--out", tmp_path / "b", check=False)
    assert_user_error(dims, "logit term", "--beta 0")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_two_processes_train_the_single_process_weights(old, tmp_path):
    """The global batch gathered into one queue on every process: 2 gloo processes equal one process on
    the global batch (test_vit has no BatchNorm; augmentation off; tolerance as in the CNA test)."""
    args = ["train", "nccl", "--data", "digits", "--backbone", "test_vit", "--epochs", "1", "--batch-size", "64",
            "--augment", "none", "--lr", "0.05", "--device", "cpu", "--old", str(old), "--embedding-dim", "16",
            "--queue-size", "128", "--temperature", "0.1", "--beta", "0.5"]
    train_ddp_and_single(args, tmp_path)
    queues = [torch.load(tmp_path / name / "checkpoint" / "state.pt", weights_only=True)["method"]
              for name in ("ddp", "one")]
    assert torch.allclose(queues[0]["queue.slot_old"], queues[1]["queue.slot_old"], atol=1e-5)
    assert torch.equal(queues[0]["queue.slot_label"], queues[1]["queue.slot_label"])


def test_conformance_two_processes_exact(tmp_path, old):
    """The kit's opt-in distributed check: NCCL's gathered queue makes 2 processes equal one."""
    run_conformance(compat_nccl.plugin, "nccl", tmp_path, needs_old=True, options={"queue_size": 64},
                    distribution="compat-nccl", old_run=old, distributed="exact")
