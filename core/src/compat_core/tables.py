"""Table columns that never cut a cell: compat's output is read in 80-column logs and pipes.

rich's default ends a cell that does not fit with an ellipsis (a run name, a path, a number). Every table
of compat adds its columns here instead: a cell too wide for its column folds onto more lines, and a
column is never narrower than its header, so headers stay whole.

Example:
    >>> from rich.table import Table
    >>> table = Table()
    >>> add_column(table, "run")
    >>> add_column(table, "top-1", right=True, min_width=6)
    >>> [(c.header, c.overflow, c.min_width, c.justify) for c in table.columns]
    [('run', 'fold', 3, 'left'), ('top-1', 'fold', 6, 'right')]
"""

from __future__ import annotations

from typing import Any


def add_column(table: Any, header: str, *, right: bool = False, min_width: int = 0) -> None:
    """Add a column to a rich ``Table`` whose cells fold rather than end in an ellipsis.

    Args:
        table: the ``rich.table.Table``.
        header: the column's header (never split: it sets the least width).
        right: right-justify the cells (numbers).
        min_width: a least width beyond the header's.
    """
    table.add_column(header, justify="right" if right else "left", overflow="fold",
                     min_width=max(len(header), min_width))
