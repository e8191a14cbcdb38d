"""Data-parallel training under torchrun equals single-process training on the global batch.

Two processes (gloo on CPU) each take half of every global batch of 64 and DDP averages their
gradients; one process takes the whole batch. The batch order depends only on (seed, epoch), so the
two runs compute the same SGD steps and differ only in float summation order (per-rank means then an
all-reduce, instead of one mean over 64). The model must have no BatchNorm (its statistics are
per-process under DDP) and no active dropout: timm's ``test_vit`` (LayerNorm, all dropout rates 0)
and ``--augment none``.

Tolerance: float32 has eps ~1.2e-7; reordering a sum changes it by a few ulps, and 21 SGD steps carry
that forward without noticeable amplification (measured: max |difference| ~1e-7, i.e. < 1e-6 of each
tensor's scale). We allow 1e-4 of each tensor's scale, ~100x the observed error, while the training
update itself is >= 10x larger than that tolerance in every trained tensor (checked below against
the rebuilt initial weights) and a run with another seed is far outside it. So the test fails if
the ranks trained on the wrong slices, if gradients were summed instead of averaged or not
all-reduced at all, or if the per-rank batch order drifted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from compat_core.config import TrainConfig
from compat_core.engine import train
from compat_core.methods.configs import BaselineConfig
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

TIMEOUT_S = 300
RTOL = 1e-4  # of each tensor's max |value|; see the module docstring
ARGS = ["train", "baseline", "--data", "digits", "--backbone", "test_vit", "--epochs", "1", "--batch-size", "64",
        "--augment", "none", "--lr", "0.05", "--device", "cpu"]
CONFIG = dict(data="digits", backbone="test_vit", epochs=1, batch_size=64, augment="none", lr=0.05, device="cpu")
TORCHRUN_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR",
                 "MASTER_PORT", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _run(cmd: list[str], cwd: Path) -> None:
    """Run ``cmd`` in its own process group; kill the whole group (torchrun and its workers) on timeout."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"{' '.join(cmd[:6])} ... timed out after {TIMEOUT_S} s:\n{output[-4000:]}")
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-4000:]}"


def _compat_cli() -> list[str]:
    script = Path(sys.executable).with_name("compat")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "compat_cli.main"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ddp")
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          "-m", "compat_cli.main", *ARGS, "--out", "RUN_DDP"], root)
    _run([*_compat_cli(), *ARGS, "--out", "RUN_ONE"], root)
    # Negative control, in-process: the same run with another seed.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train("baseline", TrainConfig(out=str(root / "RUN_SEED1"), seed=1, **CONFIG), BaselineConfig())
    finally:
        torch.set_num_threads(threads)
    return {"ddp": root / "RUN_DDP", "one": root / "RUN_ONE", "seed1": root / "RUN_SEED1"}


def _initial_weights() -> dict[str, torch.Tensor]:
    """The weights the engine starts from (it seeds with --seed right before building the method)."""
    from compat_core.data import open_dataset
    from compat_core.methods.base import MethodContext

    cfg = TrainConfig(out="unused", seed=0, **CONFIG)
    data = open_dataset("digits", split="train", image_size=32)
    torch.manual_seed(cfg.seed)
    return {k: v.detach().clone() for k, v in MethodContext(config=cfg, data=data).build_model().state_dict().items()}


def _tolerance(reference: torch.Tensor) -> float:
    return RTOL * max(float(reference.abs().max()), 1e-3)


def test_model_has_no_batchnorm_and_no_active_dropout():
    import timm

    net = timm.create_model("test_vit", pretrained=False, num_classes=0)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert all(m.p == 0 for m in net.modules() if isinstance(m, torch.nn.Dropout))
    assert all(getattr(m, "drop_prob", 0) in (0, None) for m in net.modules())  # DropPath


def test_ddp_weights_match_single_process(runs):
    one, ddp, other = (load_file(runs[k] / "model.safetensors") for k in ("one", "ddp", "seed1"))
    assert one.keys() == ddp.keys() == other.keys()
    too_far = {k: float((ddp[k] - one[k]).abs().max()) / _tolerance(one[k]) for k in one}
    too_far = {k: round(v, 2) for k, v in too_far.items() if v > 1}
    assert not too_far, f"DDP weights differ from single-process beyond float tolerance (diff/tol): {too_far}"

    # The comparison is not vacuous: training moved every trained tensor far beyond the tolerance ...
    init = _initial_weights()
    assert init.keys() == one.keys()
    update = {k: float((one[k] - init[k]).abs().max()) / _tolerance(one[k]) for k in one}
    assert min(update.values()) > 10, f"tensors that barely moved: {sorted(update, key=update.get)[:3]}"
    update_norm = sum(float((one[k] - init[k]).pow(2).sum()) for k in one) ** 0.5
    weight_norm = sum(float(one[k].pow(2).sum()) for k in one) ** 0.5
    assert update_norm < 0.5 * weight_norm  # the rebuilt init is the engine's (an unrelated init gives ~1.4)
    diff_norm = sum(float((ddp[k] - one[k]).pow(2).sum()) for k in one) ** 0.5
    assert diff_norm < 1e-4 * update_norm
    # ... and a different run is outside it.
    outside = [k for k in one if float((other[k] - one[k]).abs().max()) > _tolerance(one[k])]
    assert len(outside) == len(one), f"seed-1 run within tolerance for {set(one) - set(outside)}"


def test_ddp_run_directory_and_history(runs):
    ddp, one = runs["ddp"], runs["one"]
    for name in ("model.safetensors", "model.json", "config.yaml", "history.jsonl", "checkpoint/state.pt"):
        assert (ddp / name).is_file(), f"DDP run lacks {name}"
    assert json.loads((ddp / "model.json").read_text()) == json.loads((one / "model.json").read_text())
    config_ddp, config_one = ((run / "config.yaml").read_text().splitlines() for run in (ddp, one))
    assert [line for line in config_ddp if not line.startswith("out:")] == \
        [line for line in config_one if not line.startswith("out:")]
    assert torch.load(ddp / "checkpoint" / "state.pt", weights_only=True)["epoch"] == 1

    hist_ddp, hist_one = ([json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
                          for run in (ddp, one))
    assert len(hist_ddp) == len(hist_one) == 1
    for a, b in zip(hist_ddp, hist_one, strict=True):
        assert a.keys() == b.keys() and a["loss"].keys() == b["loss"].keys()
        assert a["epoch"] == b["epoch"] and a["epochs"] == b["epochs"]
        assert a["lr"] == pytest.approx(b["lr"], abs=1e-12)
        # The logged loss is the mean over the global batch on every process, as in one process.
        for term in a["loss"]:
            assert a["loss"][term] == pytest.approx(b["loss"][term], rel=1e-5)
