"""Finding, summarising and comparing run directories (``compat runs list|show|diff``). Reads only.

A run directory is what ``compat train`` writes: ``config.yaml`` (the resolved options), ``history.jsonl``
(one line per finished epoch), ``checkpoint/state.pt`` (after each epoch) and, once training ends,
``model.json`` + ``model.safetensors``. Any other ``*.json`` in it (``compat eval ... --json`` written next
to the run) is listed as an evaluation result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from compat_core.errors import CompatError

MAX_DEPTH = 4


@dataclass
class RunSummary:
    path: Path
    status: str  # done | partial (a checkpoint to resume) | started (no epoch finished)
    method: str = "?"
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    spec: dict[str, Any] = field(default_factory=dict)
    results: list[Path] = field(default_factory=list)

    @property
    def epochs(self) -> str:
        return f"{len(self.history)}/{self.config.get('epochs', '?')}"

    @property
    def final_loss(self) -> float | None:
        return self.history[-1]["loss"].get("total") if self.history else None


def is_run_folder(path: Path) -> bool:
    return (path / "config.yaml").is_file() or (path / "model.json").is_file()


def find_runs(root: str | Path) -> list[Path]:
    """Run directories at or below ``root`` (at most four levels), sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise CompatError(f"{root} is not a folder. Pass the folder that holds your runs (default: runs).")
    found, frontier = [], [root]
    for _ in range(MAX_DEPTH + 1):
        following = []
        for folder in frontier:
            if is_run_folder(folder):
                found.append(folder)
                continue  # a run's own sub-folders (checkpoint/) are not runs
            following += sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        frontier = following
    return sorted(found)


def summarize_run(path: str | Path) -> RunSummary:
    """Everything ``compat runs show`` prints about one run directory."""
    from compat_core.engine.checkpoint import checkpoint_path

    path = Path(path)
    if not path.is_dir() or not is_run_folder(path):
        raise CompatError(f"{path} is not a run directory (no config.yaml or model.json). Pass a folder written by "
                          f"`compat train --out`; `compat runs list` finds them.")
    config = _read_yaml(path / "config.yaml")
    spec = _read_json(path / "model.json")
    history = read_history(path / "history.jsonl")
    status = "done" if (path / "model.safetensors").is_file() and spec else (
        "partial" if checkpoint_path(path).is_file() else "started")
    method = str(spec.get("method") or config.get("method") or "?")
    results = sorted(p for p in path.glob("*.json") if p.name != "model.json")
    return RunSummary(path, status, method, config, history, spec, results)


def diff_configs(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, value in a, value in b)`` for every option that differs, sorted by key.

    Example:
        >>> diff_configs({"lr": 0.1, "seed": 1}, {"lr": 0.1, "seed": 2, "amp": True})
        [('amp', None, True), ('seed', 1, 2)]
    """
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise CompatError(f"{path} cannot be read ({exc}). Restore it from the run's config, or retrain.") from None
    return data if isinstance(data, dict) else {}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise CompatError(f"{path} is not valid JSON ({exc}). Restore it, or retrain the run.") from None
    return data if isinstance(data, dict) else {}


def read_history(path: Path, strict: bool = True) -> list[dict[str, Any]]:
    """The per-epoch records of ``history.jsonl`` ([] without the file). A line that is not a JSON object
    (the file was cut or edited) is an error, or with ``strict=False`` skipped with a warning.

    Example:
        >>> [r["epoch"] for r in read_history(Path("runs/old/history.jsonl"))]  # doctest: +SKIP
        [1, 2, 3]
    """
    if not path.is_file():
        return []
    try:
        lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise CompatError(f"{path} cannot be read ({exc.strerror}). Check its permissions.") from None
    records, bad = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("loss"), dict):
            records.append(record)
        elif strict:
            raise CompatError(f"{path}:{number} is not a history record (a JSON line per epoch). The file was cut "
                              f"or edited; `compat train ... --resume` keeps its readable lines.")
        else:
            bad.append(number)
    if bad:
        from compat_core.config import warn

        warn(f"{path}: skipped {len(bad)} unreadable line(s) ({', '.join(map(str, bad[:5]))}); the history of "
             f"those epochs is lost, the weights are not")
    return records
