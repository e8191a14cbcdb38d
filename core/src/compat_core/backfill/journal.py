"""A migration's state inside an index folder: ``IDX/backfill/``.

* ``manifest.before.json``: the index's manifest, byte for byte, as it was before the migration. The
  index's own files (``index.faiss``, ``items.npz``) are not touched until ``finalize``, so
  ``rollback`` restores the old index bit for bit by putting this manifest back.
* ``journal.json``: the plan (order, ids checksum), the new model (run, fingerprint), the batch
  boundaries and the state (``running`` or ``finalizing``); ``plan.npy``: the plan's ids.
* ``batches/NNNNNN.npz``: one file per committed batch (ids, the new vectors, the plan positions it
  covers), each written atomically: a batch is committed exactly when its file exists, so a process
  killed at any moment (kill -9 included) leaves whole batches only, and a resume continues after the
  last one. Every reader of the index (``compat index search``, ``info``) applies the committed batches
  to the old vectors: the index is queryable, mixed, at every commit.
* ``curve.jsonl``: the backfill curve's points measured so far; ``lock``: held (``flock``) by the one
  process that may change the migration.

The manifest names the migration (``"backfill"``: the journal and the new model's code) from the moment
it starts; a ``backfill/`` folder that the manifest does not name is a start that never committed.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from compat_core.errors import CompatError
from compat_core.io import read_json, read_npz, write_atomic, write_json

FOLDER, JOURNAL, BEFORE, PLAN_IDS, BATCHES, CURVE, LOCK = (
    "backfill", "journal.json", "manifest.before.json", "plan.npy", "batches", "curve.jsonl", "lock")
FORMAT = "compat-backfill/1"


def folder_of(index_dir: str | Path) -> Path:
    return Path(index_dir) / FOLDER


def in_progress(manifest: dict[str, Any]) -> bool:
    return isinstance(manifest.get("backfill"), dict)


@contextmanager
def locked(index_dir: str | Path, what: str):
    """Hold the migration's lock (released by the kernel when the process dies, even by kill -9)."""
    folder = folder_of(index_dir)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK, "a+")
    holder = _try_lock(handle)
    if holder:
        handle.close()
        raise CompatError(f"{index_dir}: another compat process ({holder}) is changing this index's migration, "
                          f"so `{what}` cannot run now. Wait for it to end (`compat backfill status {index_dir}`), "
                          f"or stop it; its committed batches are kept.") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _try_lock(handle) -> str | None:
    """Take the lock on the open lock file ``handle`` without waiting; else return who holds it."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        return handle.read().strip() or "another process"
    return None


def holder(index_dir: str | Path) -> str | None:
    """The process holding the migration's lock, or None (found by trying to take it)."""
    path = folder_of(index_dir) / LOCK
    if not path.is_file():
        return None
    with open(path, "a+") as handle:
        held_by = _try_lock(handle)
        if held_by is None:
            fcntl.flock(handle, fcntl.LOCK_UN)
    return held_by


def start(index, plan: dict[str, Any], model: dict[str, str], boundaries: list[int],
          settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Begin a migration of ``index`` (read with no migration in progress): keep its manifest, write the
    journal, then name the migration in the manifest (the commit point of the start)."""
    folder = folder_of(index.path)
    clear(index.path)  # what a start that died left
    manifest_file = index.path / "manifest.json"
    before = manifest_file.read_bytes()
    write_atomic(folder / BEFORE, lambda tmp: tmp.write_bytes(before))

    def save_ids(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, np.asarray(plan["ids"], dtype=np.int64))

    write_atomic(folder / PLAN_IDS, save_ids)
    (folder / BATCHES).mkdir(exist_ok=True)
    code = len(index.models)
    journal = {"format": FORMAT, "state": "running", "started": time.time(), "model": model, "model_code": code,
               "plan": {k: plan.get(k) for k in ("order", "seed", "count", "ids_sha256", "old", "new")},
               "boundaries": [int(b) for b in boundaries], **(settings or {})}
    write_json(folder / JOURNAL, journal)
    manifest = {**index.manifest, "models": [*index.models, {**model, "transformation": None}],
                "backfill": {"journal": f"{FOLDER}/{JOURNAL}", "model_code": code}}
    write_json(manifest_file, manifest)
    index.manifest = manifest
    return journal


def read_journal(index_dir: str | Path) -> dict[str, Any]:
    journal = read_json(folder_of(index_dir) / JOURNAL, f"The migration's journal is damaged: roll it back with "
                        f"`compat backfill rollback {index_dir}`.")
    if not isinstance(journal, dict) or journal.get("format") != FORMAT:
        raise CompatError(f"{folder_of(index_dir) / JOURNAL} is not a {FORMAT} journal. Roll the migration back "
                          f"with `compat backfill rollback {index_dir}`.")
    return journal


def committed(index_dir: str | Path) -> list[Path]:
    """The committed batch files, in order (numbered from 0 without gaps; later ones are ignored)."""
    folder = folder_of(index_dir) / BATCHES
    names = {p.name for p in folder.glob("[0-9]*.npz")} if folder.is_dir() else set()
    files = []
    while f"{len(files):06d}.npz" in names:
        files.append(folder / f"{len(files):06d}.npz")
    return files


def done_count(journal: dict[str, Any], batches: int) -> int:
    """Plan positions committed after ``batches`` batches."""
    return int(journal["boundaries"][batches]) if batches else 0


def commit(index_dir: str | Path, number: int, ids: np.ndarray, vectors: np.ndarray, start_at: int, stop: int,
           seconds: float) -> None:
    """Write batch ``number`` atomically: from this moment it is part of the index."""
    path = folder_of(index_dir) / BATCHES / f"{number:06d}.npz"

    def writer(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, ids=ids.astype(np.int64), vectors=vectors.astype(np.float32),
                     span=np.array([start_at, stop], np.int64), time=np.array([time.time(), seconds]))
            handle.flush()
            os.fsync(handle.fileno())
        failpoint(f"backfill-commit:{number}")  # tests: die inside a commit (file written, not yet renamed)

    write_atomic(path, writer)


def failpoint(name: str) -> None:
    """Die by SIGKILL here when ``COMPAT_FAILPOINT`` names this point (how the tests kill a migration at an
    exact moment)."""
    if os.environ.get("COMPAT_FAILPOINT") == name:
        os.kill(os.getpid(), 9)


def read_batch(path: Path) -> dict[str, np.ndarray]:
    fix = "Roll the migration back with `compat backfill rollback IDX`, or delete this file and later ones and resume."
    return read_npz(path, ("ids", "vectors", "span", "time"), what="committed backfill batch", unreadable_fix=fix,
                    missing_fix=fix)


def apply_committed(index) -> int:
    """Replace, in ``index`` (just read from its folder), the vectors of every committed batch; return the count."""
    from compat_core.index.store import replace_vectors

    files = committed(index.path)
    if not files:
        return 0
    batches = [read_batch(f) for f in files]
    ids = np.concatenate([b["ids"].astype(np.int64) for b in batches])
    vectors = np.concatenate([b["vectors"].astype(np.float32) for b in batches])
    if vectors.ndim != 2 or vectors.shape[1] != index.dim or len(np.unique(ids)) != len(ids):
        raise CompatError(f"{folder_of(index.path)}: its committed batches do not fit the index (dimension "
                          f"{vectors.shape[-1]} for {index.dim}, or repeated ids). Roll the migration back with "
                          f"`compat backfill rollback {index.path}`.")
    replace_vectors(index, ids, vectors, int(index.manifest["backfill"]["model_code"]))
    return len(ids)


def rollback(index_dir: str | Path) -> None:
    """Put the manifest from before the migration back, byte for byte, then drop the migration's files."""
    index_dir = Path(index_dir)
    folder = folder_of(index_dir)
    manifest = read_json(index_dir / "manifest.json", "Rebuild the index with `compat index build`.")
    if not in_progress(manifest):
        raise CompatError(f"{index_dir}: no migration in progress, nothing to roll back.")
    if read_journal(index_dir).get("state") == "finalizing":
        raise CompatError(f"{index_dir}: the migration was being finalised (its old vectors are already "
                          f"replaced), so it cannot be rolled back. Run `compat backfill finalize {index_dir}` again "
                          f"to complete it.")
    with locked(index_dir, "compat backfill rollback"):
        before = (folder / BEFORE).read_bytes()
        write_atomic(index_dir / "manifest.json", lambda tmp: tmp.write_bytes(before))
        clear(index_dir)


def clear(index_dir: str | Path) -> None:
    """Remove the migration's files (the lock file last: it is held by the caller)."""
    folder = folder_of(index_dir)
    for path in folder.iterdir():
        if path.name != LOCK:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def mark(index_dir: str | Path, journal: dict[str, Any], state: str) -> None:
    write_json(folder_of(index_dir) / JOURNAL, {**journal, "state": state})


def curve_points(index_dir: str | Path) -> dict[int, dict[str, Any]]:
    """Measured points by number of backfilled items (a line cut by a kill is ignored)."""
    path = folder_of(index_dir) / CURVE
    points = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            point = json.loads(line)
        except json.JSONDecodeError:
            continue
        points[int(point["backfilled"])] = point
    return points
