"""Checkpoints for ``--resume``: written atomically after every epoch, read without unpickling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from compat_core.io import write_atomic

STATE_FILE = "state.pt"


def checkpoint_path(run_dir: Path) -> Path:
    return run_dir / "checkpoint" / STATE_FILE


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    write_atomic(checkpoint_path(run_dir), lambda tmp: torch.save(state, tmp))


def load_checkpoint(run_dir: Path, device: torch.device) -> dict[str, Any]:
    # weights_only: our own checkpoints hold only tensors, numbers, strings and containers.
    path = checkpoint_path(run_dir)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # cut, corrupt, or not ours: torch raises many kinds
        from compat_core.errors import CompatError

        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CompatError(f"--resume: the checkpoint {path} cannot be read ({reason}); it was cut or corrupted. "
                          f"The run cannot continue from it: start it again with --overwrite (its model files are "
                          f"kept until the new run's first epoch is saved).") from None
    if not isinstance(state, dict) or not {"epoch", "method", "optimizer"} <= set(state):
        from compat_core.errors import CompatError

        raise CompatError(f"--resume: {path} is not a compat checkpoint. Start the run again with --overwrite.")
    return state


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
