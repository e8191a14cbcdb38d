"""Progress of long work that is not training (embedding a dataset, ranking queries), on stderr.

On a terminal a rich progress bar (removed when done); otherwise (logs, pipes) a plain line at most every
10% of the work, and only for work that has run at least ``quiet_seconds``, so short jobs and tests stay
silent. ``COMPAT_PROGRESS=off`` silences it, ``=plain`` forces plain lines.

Example:
    >>> for batch in track(range(3), total=3, label="embed"):  # doctest: +SKIP
    ...     pass
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def track(items: Iterable[T], total: int, label: str, *, unit: str = "steps", weights: Iterable[int] | None = None,
          quiet_seconds: float = 2.0) -> Iterator[T]:
    """Yield ``items`` while reporting ``done / total`` (``weights``: how much each item counts, e.g. its rows)."""
    mode = os.environ.get("COMPAT_PROGRESS", "auto")
    steps = list(weights) if weights is not None else None
    if mode == "off" or total <= 0:
        yield from items
        return
    if mode != "plain" and sys.stderr.isatty():
        yield from _rich(items, total, label, steps)
        return
    start, done, shown = time.perf_counter(), 0, 0.0
    for index, item in enumerate(items):
        yield item
        done += steps[index] if steps is not None else 1
        elapsed = time.perf_counter() - start
        if elapsed >= quiet_seconds and (done / total >= shown + 0.1 or done == total):
            shown = done / total
            rate = done / max(elapsed, 1e-9)
            print(f"  {label}: {done}/{total} {unit} ({100 * shown:.0f}%, {rate:.0f} {unit}/s)", file=sys.stderr,
                  flush=True)


def _rich(items: Iterable[T], total: int, label: str, steps: list[int] | None) -> Iterator[T]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as progress:
        task = progress.add_task(label, total=total)
        for index, item in enumerate(items):
            yield item
            progress.advance(task, steps[index] if steps is not None else 1)
