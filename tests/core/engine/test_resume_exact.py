"""Resuming a killed run reproduces the uninterrupted run bit for bit; the NaN guard keeps the last
good checkpoint.

The kill is simulated in-process: the engine's optimizer step raises a ``BaseException`` part-way
through epoch 3, after the checkpoint of epoch 2 was written and after some of epoch 3's steps had
already changed the in-memory weights (exactly what a SIGKILL mid-epoch leaves behind). Augmentation
is ``crop-flip`` so the per-epoch augmentation draws are part of what must be reproduced.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from compat_core.config import TrainConfig
from compat_core.engine import checkpoint as ckpt
from compat_core.engine import loop, train
from compat_core.errors import CompatError
from compat_core.methods.baseline import Baseline
from compat_core.methods.configs import BaselineConfig
from safetensors.torch import load_file

EPOCHS = 3
BATCH = 128  # digits train has 1077 images -> 8 steps per epoch
STEPS_PER_EPOCH = 1077 // BATCH


class _Killed(BaseException):
    """Stands in for SIGKILL; a BaseException so nothing in the engine can swallow it."""


def _config(out: Path, **overrides) -> TrainConfig:
    values = dict(data="digits", out=str(out), backbone="test_resnet", epochs=EPOCHS, batch_size=BATCH,
                  augment="crop-flip", lr=0.05, device="cpu", seed=3)
    values.update(overrides)
    return TrainConfig(**values)


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines() if line.strip()]


def _kill_at_step(monkeypatch, global_step: int) -> None:
    """Make the engine's ``global_step``-th optimizer step (0-based, counted over the whole run) die
    after the preceding steps ran normally."""
    original, calls = loop._Trainer._step, {"n": 0}

    def step(self, batch):
        if calls["n"] == global_step:
            raise _Killed()
        calls["n"] += 1
        return original(self, batch)

    monkeypatch.setattr(loop._Trainer, "_step", step)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: CPU kernels are then run-to-run deterministic whatever the machine, and on a
    shared 2-core box the tiny model trains several times faster than with competing threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def uninterrupted(_one_thread, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("resume") / "full"
    train("baseline", _config(run), BaselineConfig())
    return run


def test_resume_after_kill_is_bit_identical(uninterrupted, tmp_path, monkeypatch):
    run = tmp_path / "killed"
    with monkeypatch.context() as patch:
        _kill_at_step(patch, 2 * STEPS_PER_EPOCH + 4)  # 4 steps into epoch 3
        with pytest.raises(_Killed):
            train("baseline", _config(run), BaselineConfig())
    # What a kill in epoch 3 leaves: two epochs in the history and the checkpoint, no final model.
    assert len(_history(run)) == 2
    assert torch.load(ckpt.checkpoint_path(run), weights_only=True)["epoch"] == 2
    assert not (run / "model.safetensors").exists()
    at_epoch_2 = torch.load(ckpt.checkpoint_path(run), weights_only=True)["method"]

    result = train("baseline", _config(run), BaselineConfig(), resume=True)

    expected, got = load_file(uninterrupted / "model.safetensors"), load_file(run / "model.safetensors")
    assert expected.keys() == got.keys()
    differing = [name for name in expected if not torch.equal(expected[name], got[name])]
    assert not differing, f"resumed weights differ from the uninterrupted run in {differing[:5]}"
    # Not vacuous: the resumed epoch 3 really changed the weights of the epoch-2 checkpoint.
    assert any(not torch.equal(at_epoch_2[f"model.{name}"], got[name]) for name in got)

    full, resumed = _history(uninterrupted), _history(run)
    assert len(resumed) == EPOCHS and [r["epoch"] for r in resumed] == [1, 2, 3]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full]
    assert [r["lr"] for r in resumed] == [r["lr"] for r in full]
    assert [r["loss"] for r in result.history] == [r["loss"] for r in full]
    # The optimizer state (momentum buffers) at the end is the same too.
    state_full = torch.load(ckpt.checkpoint_path(uninterrupted), weights_only=True)
    state_resumed = torch.load(ckpt.checkpoint_path(run), weights_only=True)
    for key, buf in state_full["optimizer"]["state"].items():
        assert torch.equal(buf["momentum_buffer"], state_resumed["optimizer"]["state"][key]["momentum_buffer"])


def _nan_in_epoch(monkeypatch, bad_epoch: int, bad_step: int) -> None:
    """Make the baseline's loss NaN from step ``bad_step`` of epoch ``bad_epoch`` (0-based) on."""
    original_forward, original_start = Baseline.forward, Baseline.on_epoch_start
    state = {"epoch": -1, "step": 0}

    def on_epoch_start(self, epoch):
        state["epoch"], state["step"] = epoch, 0
        original_start(self, epoch)

    def forward(self, batch):
        terms = original_forward(self, batch)
        if state["epoch"] == bad_epoch and state["step"] >= bad_step:
            terms = {k: v * float("nan") for k, v in terms.items()}
        state["step"] += 1
        return terms

    monkeypatch.setattr(Baseline, "on_epoch_start", on_epoch_start)
    monkeypatch.setattr(Baseline, "forward", forward)


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "nan"
    with monkeypatch.context() as patch:
        _nan_in_epoch(patch, bad_epoch=1, bad_step=3)
        with pytest.raises(CompatError) as info:
            train("baseline", _config(run, epochs=2), BaselineConfig())
    message = str(info.value)
    assert "NaN" in message and "epoch 2" in message and "step 4" in message
    assert "checkpoint" in message and str(run / "checkpoint") in message
    assert "--lr" in message  # names a fix

    # The epoch-1 checkpoint is intact: right epoch, finite weights; nothing of epoch 2 was written.
    state = torch.load(ckpt.checkpoint_path(run), weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["method"].values() if t.is_floating_point())
    assert len(_history(run)) == 1 and math.isfinite(_history(run)[0]["loss"]["total"])
    assert not (run / "model.safetensors").exists()

    # ... and usable: resuming without the fault finishes the run.
    train("baseline", _config(run, epochs=2), BaselineConfig(), resume=True)
    assert len(_history(run)) == 2
    assert all(torch.isfinite(t).all() for t in load_file(run / "model.safetensors").values())


def test_nan_guard_in_first_epoch_says_no_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "nan0"
    _nan_in_epoch(monkeypatch, bad_epoch=0, bad_step=0)
    with pytest.raises(CompatError, match="no checkpoint was written yet") as info:
        train("baseline", _config(run, epochs=2), BaselineConfig())
    assert "epoch 1, step 1" in str(info.value)
    assert not ckpt.checkpoint_path(run).exists()
    assert not (run / "history.jsonl").exists() or not _history(run)
