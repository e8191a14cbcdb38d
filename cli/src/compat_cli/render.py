"""Tables for metric dicts: fractions are shown as percentages, JSON keeps fractions."""

from __future__ import annotations

from typing import Any

from compat_core.tables import add_column
from rich.console import Console
from rich.table import Table

PERCENT_KEYS = {"top1", "top5", "top10", "mAP", "nfr", "nfi", "pfr", "pfi", "btc", "bec", "auc"}


def fmt(key: str, value: Any) -> str:
    if isinstance(value, float) and (key in PERCENT_KEYS or key.startswith(("top", "tar", "tpir", "mAP@"))):
        return f"{100 * value:.2f}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif not isinstance(value, list):
            flat[name] = value
    return flat


def render_metrics(console: Console, title: str, result: dict[str, Any]) -> None:
    table = Table(title=f"{title} (percent)")
    # Keys stay whole; long values (paths) fold onto more lines instead of ending in an ellipsis.
    add_column(table, "metric")
    add_column(table, "value", right=True)
    for key, value in flatten(result).items():
        table.add_row(key, fmt(key.rsplit(".", 1)[-1], value))
    console.print(table)
