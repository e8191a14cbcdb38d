"""``compat runs list|show|diff``: find, inspect and compare run directories (read only)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from compat_core.tables import add_column
from rich.console import Console

app = typer.Typer(help="Find, inspect and compare training runs.", no_args_is_help=True)


def _table(title: str, columns: list[str]):
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), title_justify="left")
    for number, column in enumerate(columns):  # fold, never cut: every name and number stays whole
        add_column(table, column, right=number > 0)
    return table


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return str(value)


@app.command("list")
def list_runs(
    root: Annotated[str, typer.Argument(help="Folder to search (four levels deep).")] = "runs",
) -> None:
    """Every run below ROOT: its status (done, partial: resumable, started: no epoch finished), method,
    epochs, data, classes, old model and final loss."""
    from pathlib import Path

    from compat_core.runs import find_runs, summarize_run

    runs = [summarize_run(path) for path in find_runs(root)]
    table = _table(f"{len(runs)} runs in {root}", ["run", "status", "method", "epochs", "data", "classes", "old",
                                                    "loss"])
    for run in runs:
        old = [Path(o).name for o in run.config.get("old") or []]
        table.add_row(str(run.path.relative_to(root)) if run.path != Path(root) else str(run.path), run.status,
                      run.method, run.epochs, _fmt(run.config.get("data")), _fmt(run.config.get("classes")),
                      _fmt(old), _fmt(run.final_loss))
    Console().print(table)


@app.command("show")
def show(run: Annotated[str, typer.Argument(help="Run directory.")]) -> None:
    """One run: method, old model, data, classes, status, the resolved options, the per-epoch history and the
    evaluation results written next to it (*.json)."""
    import yaml
    from compat_core.runs import summarize_run

    summary = summarize_run(run)
    console = Console(highlight=False)
    cfg = summary.config
    console.print(f"run {summary.path}: {summary.method}, {summary.status}, {summary.epochs} epochs", markup=False)
    console.print(f"data {_fmt(cfg.get('data'))} (split {_fmt(cfg.get('split'))}, classes {_fmt(cfg.get('classes'))});"
                  f" old model {_fmt(cfg.get('old'))}", markup=False)
    if summary.spec:
        console.print(f"model: {summary.spec.get('backbone')}, {summary.spec.get('embedding_dim')}-d, "
                      f"{summary.spec.get('num_classes')} classes, head {summary.spec.get('head', {}).get('type')}",
                      markup=False)
    if summary.history:
        names = sorted({k for r in summary.history for k in r["loss"]} | {k for r in summary.history
                                                                          for k in r.get("scalars", {})})
        names.sort(key=lambda k: (k != "total", k))
        scored = [r["val"] for r in summary.history if isinstance(r.get("val"), dict)]
        val_column = [f"val {scored[-1].get('metric')}"] if scored else []
        table = _table("history", ["epoch", *names, *val_column, "lr", "img/s"])
        for record in summary.history:
            values = {**record["loss"], **record.get("scalars", {})}
            val = record.get("val") or {}
            mark = [_fmt(val.get("value")) + (" *" if val.get("best") else "")] if val_column else []
            table.add_row(str(record["epoch"]), *(_fmt(values.get(k)) for k in names), *mark, _fmt(record.get("lr")),
                          f"{record.get('images_per_sec', 0):.0f}")
        console.print(table)
        if scored:
            console.print(f"val: {scored[-1].get('metric')} on {scored[-1].get('split')} after every epoch; * a new "
                          f"best" + (" (the kept weights are the last *)" if cfg.get("keep") == "best" else ""),
                          markup=False)
    console.print("options (config.yaml):", markup=False)
    console.print(yaml.safe_dump(cfg, sort_keys=False).rstrip() or "(none)", markup=False)
    for result in summary.results:
        try:
            data = json.loads(result.read_text())
        except (json.JSONDecodeError, OSError):
            console.print(f"result {result.name}: not readable JSON", markup=False)
            continue
        keys = {k: data[k] for k in ("top1", "top5", "mAP", "nfr", "new_accuracy") if isinstance(data, dict) and k in data}
        console.print(f"result {result.name}: " + (", ".join(f"{k} {_fmt(v)}" for k, v in keys.items()) or
                                                    f"{len(data)} entries"), markup=False)


@app.command("diff")
def diff(
    first: Annotated[str, typer.Argument(help="A run directory.")],
    second: Annotated[str, typer.Argument(help="Another run directory.")],
) -> None:
    """The options that differ between two runs, and their final losses and per-term epoch means."""
    from compat_core.runs import diff_configs, summarize_run

    a, b = summarize_run(first), summarize_run(second)
    console = Console(highlight=False)
    changes = diff_configs({"method": a.method, **a.config}, {"method": b.method, **b.config})
    table = _table(f"options that differ ({len(changes)})", ["option", a.path.name, b.path.name])
    for key, left, right in changes:
        table.add_row(key, _fmt(left), _fmt(right))
    console.print(table)
    last_a = a.history[-1]["loss"] if a.history else {}
    last_b = b.history[-1]["loss"] if b.history else {}
    table = _table("last epoch's losses", ["term", a.path.name, b.path.name])
    for name in sorted(set(last_a) | set(last_b), key=lambda k: (k != "total", k)):
        table.add_row(name, _fmt(last_a.get(name)), _fmt(last_b.get(name)))
    console.print(table)
