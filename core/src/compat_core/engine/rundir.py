"""Preparing the ``--out`` run directory: refuse to clobber a different run, check resumes, and replace a
run (``--overwrite``) only once its successor has something to show for itself."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from compat_core.config import config_differences
from compat_core.engine.checkpoint import checkpoint_path
from compat_core.errors import CompatError

RUN_FILES = ("model.safetensors", "model.json", "config.yaml", "history.jsonl")
#: Folder of the best epoch's model (``--keep best``).
BEST = "best"
#: Folders a run writes besides RUN_FILES.
RUN_FOLDERS = ("checkpoint", BEST)
#: Where an ``--overwrite`` run writes until its first checkpoint exists (then it replaces the old run).
STAGING = ".overwrite"
_REPLACED = ".replaced"
# Options that may change on --resume without changing what is computed (`out`: a moved or copied run).
RESUMABLE_CHANGES = {"workers", "device", "out"}


@dataclass
class RunDir:
    """The run's folder (``path``) and the folder it writes to now (``write``: ``path``, or a staging folder
    inside it while an ``--overwrite`` run has not yet finished its first epoch)."""

    path: Path
    write: Path
    resuming: bool
    extends_from: int | None = None

    @property
    def staged(self) -> bool:
        return self.write != self.path

    def commit(self) -> list[str]:
        """Replace the previous run by the staged one: the files the new run writes go, the staged ones move
        in; files the previous run did not own (evaluation results, notes) stay. Returns their names."""
        if not self.staged:
            return []
        trash = self.path / _REPLACED
        shutil.rmtree(trash, ignore_errors=True)
        trash.mkdir()
        for name in (*RUN_FILES, *RUN_FOLDERS):
            if (self.path / name).exists():
                (self.path / name).rename(trash / name)
        for item in sorted(self.write.iterdir()):
            item.rename(self.path / item.name)
        self.write.rmdir()
        shutil.rmtree(trash, ignore_errors=True)
        self.write = self.path
        return sorted(p.name for p in self.path.iterdir() if p.name not in (*RUN_FILES, *RUN_FOLDERS))

    def abandon(self) -> None:
        """The staged run failed before its first checkpoint: remove it, the previous run stays as it was."""
        if self.staged:
            shutil.rmtree(self.write, ignore_errors=True)


def prepare_run_dir(out: str, resolved_yaml: str, *, resume: bool, overwrite: bool,
                    inputs: tuple[str, ...] = ()) -> RunDir:
    """Check ``--out`` and make the folder; writes nothing else. ``inputs`` (old runs, data) must not be the
    output: ``--old X --out X --overwrite`` would delete the old model it trains against. With
    ``--overwrite`` of a started run, the new run is staged in ``out/.overwrite`` until its first checkpoint."""
    run_dir = Path(out)
    for source in inputs:
        if Path(source).exists() and run_dir.exists() and Path(source).resolve() == run_dir.resolve():
            raise CompatError(f"--out {out} is also an input of this run ({source}); writing there would replace "
                              f"what the run reads. Choose another --out.")
    if run_dir.exists() and not run_dir.is_dir():
        raise CompatError(f"--out {out} is a file. Choose a folder path for the run.")
    shutil.rmtree(run_dir / STAGING, ignore_errors=True)  # left by an --overwrite run killed early
    shutil.rmtree(run_dir / _REPLACED, ignore_errors=True)
    existing = run_dir.is_dir() and any(run_dir.iterdir())
    if resume and not unstarted(run_dir):
        if not checkpoint_path(run_dir).is_file():
            raise CompatError(f"--resume: {out} has no checkpoint to resume (expected {checkpoint_path(run_dir)}). "
                              f"Drop --resume to start a new run.")
        extends_from = _check_same_config(run_dir, resolved_yaml)
        return RunDir(run_dir, run_dir, True, extends_from)
    if existing:
        is_run = any((run_dir / name).exists() for name in (*RUN_FILES, *RUN_FOLDERS))
        if not is_run:
            raise CompatError(f"--out {out} already exists and holds other files. Choose a new or empty folder.")
        if unstarted(run_dir):  # nothing worth keeping: clear it
            for name in RUN_FILES:
                (run_dir / name).unlink(missing_ok=True)
        elif not overwrite:
            raise CompatError(f"--out {out} already holds a run. Use --resume to continue it, --overwrite to "
                              f"replace it, or choose another --out.")
        else:
            (run_dir / STAGING).mkdir()
            return RunDir(run_dir, run_dir / STAGING, False)
    run_dir.mkdir(parents=True, exist_ok=True)
    return RunDir(run_dir, run_dir, False)


def unstarted(run_dir: Path) -> bool:
    """A run stopped before its first checkpoint (only config.yaml, perhaps a partial history): nothing in it
    is worth keeping, so training again (with or without --resume) simply starts it from the beginning."""
    return (run_dir / "config.yaml").is_file() and not checkpoint_path(run_dir).is_file() and not (
        run_dir / "model.safetensors").is_file()


def _check_same_config(run_dir: Path, resolved_yaml: str) -> int | None:
    """Refuse a resume with other options; ``epochs`` may grow (the run is extended). Returns the saved
    number of epochs when it grows, else None."""
    saved_file = run_dir / "config.yaml"
    if not saved_file.is_file():
        return None
    saved, wanted = yaml.safe_load(saved_file.read_text()) or {}, yaml.safe_load(resolved_yaml)
    differing = config_differences(saved, wanted, RESUMABLE_CHANGES | {"epochs"})
    if differing:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in differing[:4])
        raise CompatError(f"--resume: the options differ from the run in {run_dir} ({details}). Resume with the "
                          f"same options (they are in {saved_file}), or start a new run with --overwrite.")
    before, after = saved.get("epochs"), wanted.get("epochs")
    if before is None or after == before:
        return None
    if after < before:
        raise CompatError(f"--resume --epochs {after}: the run in {run_dir} was set up for {before} epochs; a run "
                          f"cannot be shortened. Resume with --epochs {before} (or more, to extend it), or use the "
                          f"weights of an earlier epoch by training again with --epochs {after} --overwrite.")
    return int(before)
