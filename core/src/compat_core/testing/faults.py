"""Fault injection for ``compat`` commands: the CLI's promise, checked row by row.

A row (:class:`FaultCase`) is a command and a fault made on one of its files or folders before it runs:
a missing, empty, truncated or corrupt file, a feature file holding NaN, weights of another model, a
read-only folder or a full file system, or a SIGINT / SIGKILL sent once a chosen file appears.
:func:`check_fault` runs the command in a fresh interpreter, as a user would, and asserts that it ends
well: exit code 2 (130 after Ctrl-C), no traceback, a message that names the file, and every file that
existed before byte-identical afterwards.

compat's own table is ``tests/cli/test_fault_table.py``. A method plugin joins it by adding rows, for
example every standard row of its training command::

    from compat_core.testing.faults import check_fault, train_fault_cases

    @pytest.mark.parametrize("case", train_fault_cases("mymethod"), ids=lambda case: case.id)
    def test_faults(case, tmp_path, old_run):
        check_fault(case, tmp_path, inputs={"old": old_run})

Read-only folders and full disks need ``mount`` (root, as in compat's CI) or, for read-only, a non-root
user; where neither is available the row is skipped, not passed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: A fault: a context manager made from the target path (the fault holds while the command runs).
Fault = Callable[[Path], contextlib.AbstractContextManager]


@dataclass
class FaultCase:
    """One row of the table.

    Args:
        id: the row's name in test reports.
        args: the command after ``compat``; ``{name}`` is replaced by the path of input ``name`` (copied into
            the work folder) and ``{work}`` by the work folder.
        fault: a name in :data:`FAULTS` (or ``sigint`` / ``sigkill``).
        target: the path the fault is made on (same placeholders).
        names: fragments the message must hold (default: the target's file name).
        trigger: for ``sigint`` / ``sigkill``: the file whose appearance sends the signal.
        code: the expected exit code (2; 130 for ``sigint``; -9 for ``sigkill``).
    """

    id: str
    args: list[str]
    fault: str
    target: str
    names: tuple[str, ...] = ()
    trigger: str = ""
    code: int | None = None


# -- faults on files ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _rewrite(path: Path, data: bytes) -> Iterator[None]:
    path.write_bytes(data)
    yield


def truncated(path: Path):
    return _rewrite(path, path.read_bytes()[: max(1, path.stat().st_size // 2)])


def empty(path: Path):
    return _rewrite(path, b"")


def corrupt(path: Path):
    data = bytearray(path.read_bytes())
    data[:16] = b"\xff" * min(16, len(data))  # the header every reader looks at first
    return _rewrite(path, bytes(data))


def binary(path: Path):
    """A file of bytes that are not UTF-8 text (a config or label file that is not text)."""
    return _rewrite(path, b"\xff\xfe\x00\x81" * 64)


@contextlib.contextmanager
def missing(path: Path) -> Iterator[None]:
    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    yield


@contextlib.contextmanager
def nan_row(path: Path) -> Iterator[None]:
    """A feature file (``features`` array) whose first row holds NaN."""
    with np.load(path, allow_pickle=False) as stored:
        arrays = {k: stored[k] for k in stored.files}
    arrays["features"] = arrays["features"].astype(np.float32)
    arrays["features"][0, 0] = np.nan
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    yield


def weights_of(source: Path) -> Fault:
    """Replace the target's ``model.safetensors`` with the weights of the run ``source`` (another model)."""
    @contextlib.contextmanager
    def fault(path: Path) -> Iterator[None]:
        shutil.copyfile(source / "model.safetensors", path / "model.safetensors")
        yield
    return fault


# -- faults of the file system ------------------------------------------------------------------------
def _mount_tmpfs(path: Path, size: str) -> None:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if done.returncode:
        import pytest

        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or 'not root'})")


@contextlib.contextmanager
def _mounted(path: Path, size: str) -> Iterator[None]:
    """A tmpfs over ``path`` holding a copy of what ``path`` held (the folder underneath is not touched)."""
    path.mkdir(parents=True, exist_ok=True)
    backup = Path(str(path) + ".backup")
    shutil.copytree(path, backup)
    _mount_tmpfs(path, size)
    try:
        shutil.copytree(backup, path, dirs_exist_ok=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        shutil.rmtree(backup, ignore_errors=True)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """``path`` (a folder) cannot be written: chmod for a normal user; a read-only tmpfs for root, whom
    permissions do not stop."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")] if p.is_dir()}
        for folder in modes:
            folder.chmod(0o555)
        try:
            yield
        finally:
            for folder, mode in modes.items():
                folder.chmod(mode)
        return
    with _mounted(path, "16m"):
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield


@contextlib.contextmanager
def full_disk(path: Path) -> Iterator[None]:
    """``path`` (a folder) lies on a file system with no space left (what it held is still there)."""
    with _mounted(path, "4m"):
        with contextlib.suppress(OSError), open(path / ".filler", "wb") as handle:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        yield


FAULTS: dict[str, Fault] = {"truncated": truncated, "empty": empty, "corrupt": corrupt, "binary": binary,
                            "missing": missing, "nan": nan_row, "read-only": read_only, "full-disk": full_disk}
SIGNALS = {"sigint": (signal.SIGINT, 130), "sigkill": (signal.SIGKILL, -signal.SIGKILL)}


# -- the check ------------------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def check_fault(case: FaultCase, work: Path, inputs: dict[str, Path] | None = None,
                faults: dict[str, Fault] | None = None) -> str:
    """Run ``case`` in ``work`` (its inputs copied there first) and assert the CLI's promise; returns the
    command's output. ``faults`` adds faults to :data:`FAULTS` (e.g. ``{"other-model": weights_of(run)}``)."""
    work.mkdir(parents=True, exist_ok=True)
    places = {"work": str(work)}
    for name, source in (inputs or {}).items():
        copy = work / Path(source).name  # the name (and suffix) readers may look at
        (shutil.copytree if Path(source).is_dir() else shutil.copyfile)(source, copy)
        places[name] = str(copy)
    args = [a.format(**places) for a in case.args]
    target = Path(case.target.format(**places))
    names = case.names or (target.name,)
    if case.fault in SIGNALS:
        before = snapshot(work)
        code, output = _run_until(args, Path(case.trigger.format(**places)), SIGNALS[case.fault][0])
        expected = SIGNALS[case.fault][1] if case.code is None else case.code
        _assert_promise(case, code, expected, output, names, before, snapshot(work))
        return output
    fault = {**FAULTS, **(faults or {})}[case.fault]
    with fault(target):
        before = snapshot(work)
        code, output = _run(args)
        after = snapshot(work)
    _assert_promise(case, code, 2 if case.code is None else case.code, output, names, before, after)
    return output


def _assert_promise(case, code, expected, output, names, before, after) -> None:
    where = f"compat {' '.join(case.args)} with {case.fault} {case.target}"
    assert code == expected, f"{where}: exit code {code}, expected {expected}:\n{output[-3000:]}"
    assert "Traceback" not in output, f"{where}: printed a traceback:\n{output[-3000:]}"
    joined = output.replace("\n", "")  # messages wrap at 80 columns, paths included
    for name in names:
        assert name in joined, f"{where}: the message does not name {name!r}:\n{output[-3000:]}"
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not changed, f"{where}: files that existed before were changed or lost: {', '.join(changed)}"


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "compat_cli.main", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "80"}


def _run(args: list[str]) -> tuple[int, str]:
    proc = subprocess.run(_command(args), capture_output=True, text=True, timeout=600, env=_env(),
                          stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout + proc.stderr


def _run_until(args: list[str], trigger: Path, sig: int) -> tuple[int, str]:
    """Start the command, send ``sig`` once ``trigger`` exists, and wait for it to end."""
    proc = subprocess.Popen(_command(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            stdin=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not trigger.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    if proc.poll() is None:
        proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=300)
    return proc.returncode, stdout + stderr


# -- standard rows ----------------------------------------------------------------------------------------
TINY_TRAIN = ["--data", "digits", "--backbone", "test_resnet", "--image-size", "8", "--embedding-dim", "8",
              "--batch-size", "64", "--device", "cpu"]


def train_fault_cases(method: str, extra: tuple[str, ...] = (), needs_old: bool = True) -> list[FaultCase]:
    """The rows every training command must pass, for ``method`` (``extra``: arguments it needs besides
    ``--old {old}``). Inputs: ``old`` (a run directory of an old model trained with ``TINY_TRAIN``)."""
    old = ["--old", "{old}"] if needs_old else []
    base = ["train", method, *TINY_TRAIN, "--epochs", "1", *old, *extra]
    rows = [
        FaultCase(f"{method}-out-read-only", [*base, "--out", "{work}/ro/run"], "read-only", "{work}/ro",
                  names=("ro/run",)),
        FaultCase(f"{method}-out-full-disk", [*base, "--out", "{work}/full/run"], "full-disk", "{work}/full",
                  names=("No space left on device",)),
    ]
    if needs_old:
        rows += [
            FaultCase(f"{method}-old-truncated", [*base, "--out", "{work}/run"], "truncated",
                      "{old}/model.safetensors"),
            FaultCase(f"{method}-old-spec-missing", [*base, "--out", "{work}/run"], "missing", "{old}/model.json"),
        ]
    return rows
