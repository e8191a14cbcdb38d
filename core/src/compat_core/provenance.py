"""Provenance: a content fingerprint of every run, recorded with every vector made from it.

``fingerprint(run)`` hashes the run's ``model.safetensors`` and ``model.json`` (contents only, never their
path), so it is the same for a copied or moved run and differs for any change of weights or spec. Feature
files record the fingerprint of the model that made them (``model_fingerprint``), indexes record it per
stored id; evaluators and index commands use it to refuse vectors that do not come from what was asked.

Example:
    >>> fingerprint("runs/old")  # doctest: +SKIP
    '3f9c1d0a8b7e6f52'
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from compat_core.errors import CompatError

_CACHE: dict[tuple[str, int, int, int, int], str] = {}
LENGTH = 16  # hex digits kept: 64 bits, ample to tell a project's models apart


def fingerprint(run_dir: str | Path) -> str:
    """The content fingerprint of run directory ``run_dir`` (16 hex digits).

    Raises:
        CompatError: ``run_dir`` holds no model (``model.safetensors`` and ``model.json``).
    """
    from compat_core.models.run import SPEC, WEIGHTS

    run_dir = Path(run_dir)
    weights, spec = run_dir / WEIGHTS, run_dir / SPEC
    if not weights.is_file() or not spec.is_file():
        raise CompatError(f"{run_dir} holds no model ({WEIGHTS} and {SPEC}); its fingerprint cannot be computed. "
                          f"Pass a finished run directory.")
    stats = weights.stat(), spec.stat()
    key = (str(run_dir.resolve()), stats[0].st_size, stats[0].st_mtime_ns, stats[1].st_size, stats[1].st_mtime_ns)
    if key not in _CACHE:
        digest = hashlib.sha256()
        with open(weights, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
        digest.update(spec.read_bytes())
        _CACHE[key] = digest.hexdigest()[:LENGTH]
    return _CACHE[key]


def check_current(recorded: str, run: str, what: str) -> None:
    """Refuse ``what`` (a feature file, an index) whose ``recorded`` fingerprint is not that of ``run`` as it is
    now: its vectors were made by a model that has changed since (retrained, overwritten)."""
    from compat_core.models.run import is_run_dir

    if not recorded or not run or not is_run_dir(run):
        return
    now = fingerprint(run)
    if now != recorded:
        raise CompatError(f"{what} was made by {run} with fingerprint {recorded}, but that run's model now has "
                          f"fingerprint {now}: the vectors are stale (the model was retrained or replaced). "
                          f"Extract them again from the run, or point at the run they came from.")
