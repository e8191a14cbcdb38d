"""Preparing the ``--out`` run directory: refuse to clobber a different run, check resumes."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from compat_core.engine.checkpoint import checkpoint_path
from compat_core.errors import CompatError

RUN_FILES = ("model.safetensors", "model.json", "config.yaml", "history.jsonl")
# Options that may change on --resume without changing what is computed (`out`: a moved or copied run).
RESUMABLE_CHANGES = {"workers", "device", "out"}


def prepare_run_dir(out: str, resolved_yaml: str, *, resume: bool, overwrite: bool,
                    inputs: tuple[str, ...] = ()) -> tuple[Path, bool]:
    """Return (run_dir, resuming). Writes nothing but the folder itself. ``inputs`` (old runs, data) must
    not be the output: ``--old X --out X --overwrite`` would delete the old model it trains against."""
    run_dir = Path(out)
    for source in inputs:
        if Path(source).exists() and run_dir.exists() and Path(source).resolve() == run_dir.resolve():
            raise CompatError(f"--out {out} is also an input of this run ({source}); writing there would replace "
                              f"what the run reads. Choose another --out.")
    if run_dir.exists() and not run_dir.is_dir():
        raise CompatError(f"--out {out} is a file. Choose a folder path for the run.")
    existing = run_dir.is_dir() and any(run_dir.iterdir())
    if resume and not unstarted(run_dir):
        if not checkpoint_path(run_dir).is_file():
            raise CompatError(f"--resume: {out} has no checkpoint to resume (expected {checkpoint_path(run_dir)}). "
                              f"Drop --resume to start a new run.")
        _check_same_config(run_dir, resolved_yaml)
        return run_dir, True
    if existing:
        is_run = any((run_dir / name).exists() for name in RUN_FILES) or (run_dir / "checkpoint").exists()
        if not is_run:
            raise CompatError(f"--out {out} already exists and holds other files. Choose a new or empty folder.")
        if not overwrite and not unstarted(run_dir):
            raise CompatError(f"--out {out} already holds a run. Use --resume to continue it, --overwrite to "
                              f"replace it, or choose another --out.")
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, False


def unstarted(run_dir: Path) -> bool:
    """A run stopped before its first checkpoint (only config.yaml, perhaps a partial history): nothing in it
    is worth keeping, so training again (with or without --resume) simply starts it from the beginning."""
    return (run_dir / "config.yaml").is_file() and not checkpoint_path(run_dir).is_file() and not (
        run_dir / "model.safetensors").is_file()


def _check_same_config(run_dir: Path, resolved_yaml: str) -> None:
    saved_file = run_dir / "config.yaml"
    if not saved_file.is_file():
        return
    saved, wanted = yaml.safe_load(saved_file.read_text()) or {}, yaml.safe_load(resolved_yaml)
    differing = sorted(k for k in set(saved) | set(wanted)
                       if k not in RESUMABLE_CHANGES and saved.get(k) != wanted.get(k))
    if differing:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in differing[:4])
        raise CompatError(f"--resume: the options differ from the run in {run_dir} ({details}). Resume with the "
                          f"same options (they are in {saved_file}), or start a new run with --overwrite.")
