"""``compat backfill plan|run|status|rollback|finalize``: migrate an index to the new model, resumably."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Migrate an index's vectors to a new model: plan the order, re-embed in committed batches "
                       "(kill-safe, resumable), measure the real backfill curve, then finalise or roll back.",
                  no_args_is_help=True)

Index = Annotated[str, typer.Argument(help="Index folder (from `compat index build`).")]


def _err() -> Console:
    return Console(stderr=True, highlight=False)


@app.command("plan")
def plan(
    index: Annotated[str, typer.Option("--index", help="Index folder to migrate.")],
    out: Annotated[str, typer.Option("--out", help="Plan file to write (JSON).")],
    order: Annotated[str, typer.Option("--order", help="A registered backfill order (`compat plugins list`): "
                                                       "random, distance, uncertainty, ...")] = "random",
    old: Annotated[str | None, typer.Option("--old", help="A run the order needs (uncertainty: the FastFill "
                                                          "run that made the index's vectors).")] = None,
    new: Annotated[str | None, typer.Option("--new", help="The new model, for orders that compare with it "
                                                          "(distance).")] = None,
    data: Annotated[str | None, typer.Option("--data", help="The index's images (default: the data its "
                                                            "manifest names).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random order.")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "auto",
) -> None:
    """Write the order in which the index's items are re-embedded (every id exactly once)."""
    import numpy as np
    from compat_core.backfill.orders import OrderRequest, make_plan
    from compat_core.engine.distributed import resolve_device
    from compat_core.index import store
    from compat_core.io import check_writable, write_json

    check_writable(out, "--out")
    held = store.read(index)
    request = OrderRequest(held, np.sort(held.ids), data or held.manifest.get("data"),
                           held.manifest.get("split") or "test", old=old, new=new, seed=seed,
                           device=str(resolve_device(device)))
    result = make_plan(order, request, index)
    write_json(out, result)
    _err().print(f"wrote {out}: {result['count']} ids, {order} order", markup=False)


@app.command("run")
def run(
    index: Annotated[str, typer.Option("--index", help="Index folder to migrate.")],
    model: Annotated[str, typer.Option("--model", help="The new model's run directory.")],
    plan: Annotated[str, typer.Option("--plan", help="Plan file from `compat backfill plan`.")],
    data: Annotated[str | None, typer.Option("--data", help="The index's images (default: the data its "
                                                            "manifest names).")] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Items re-embedded per committed batch.")] = 2000,
    eval_every: Annotated[float | None, typer.Option("--eval-every", help="Measure the live index every this "
                                                     "fraction of the plan (e.g. 0.1): the real backfill "
                                                     "curve.")] = None,
    queries: Annotated[str | None, typer.Option("--queries", help="Queries of the curve: a split of the data "
                                                "(embedded by --model) or a feature file; default: the index's "
                                                "own items, each left out of its own result.")] = None,
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="Depth of the curve's search (mAP@k).")] = 10,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the migration in progress.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Migrate even when --model was not trained to be "
                                                        "compatible with the index's model.")] = False,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "auto",
    json_out: Annotated[str | None, typer.Option("--json", help="Write the curve as JSON.")] = None,
) -> None:
    """Re-embed the index's items with --model in plan order, one atomically committed batch at a time; a
    killed run continues with --resume. With --eval-every, measure the real backfill curve."""
    from compat_core.backfill.migrate import BackfillRun
    from compat_core.backfill.migrate import run as run_migration
    from compat_core.engine.distributed import resolve_device
    from compat_core.io import check_writable, write_json

    if json_out:
        check_writable(json_out, "--json")
    console = _err()
    options = BackfillRun(index, model, plan, data, batch, eval_every, queries, k, resume, force,
                          str(resolve_device(device)))
    curve = run_migration(options, say=lambda line: console.print(line, markup=False))
    console.print(f"{index}: every item re-embedded by {model}; `compat backfill finalize {index}` makes it "
                  f"final, `compat backfill rollback {index}` restores the old index", markup=False)
    if curve:
        _print_curve(Console(highlight=False), curve)
        if json_out:
            write_json(json_out, curve)


def _print_curve(console: Console, curve: dict) -> None:
    keys = list(curve["curves"])
    console.print(f"real backfill curve ({curve['n_gallery']} items; percent)", markup=False)
    console.print("  ".join(["backfilled".rjust(10), *(key.rjust(8) for key in keys)]), markup=False)
    for i, fraction in enumerate(curve["fractions"]):
        console.print("  ".join([f"{100 * fraction:9.1f}%", *(f"{100 * curve['curves'][key][i]:8.2f}"
                                                              for key in keys)]), markup=False)
    auc = curve["auc"]["mean"]
    console.print("AUC (mean of points): " + "  ".join(f"{key} {100 * auc[key]:.2f}" for key in keys), markup=False)


@app.command("status")
def status(index: Index, json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Fraction done, rate, time left, and whether a process is migrating the index now."""
    import json

    from compat_core.backfill.migrate import status as read_status

    result = read_status(index)
    console = Console(highlight=False)
    if json_out:
        print(json.dumps(result))
        return
    if result["state"] == "none":
        console.print(f"{index}: no migration in progress", markup=False)
        return
    rate = f"{result['rate']:.1f} items/s" if result["rate"] else "rate unknown"
    left = f", about {_duration(result['seconds_left'])} left" if result["seconds_left"] else ""
    console.print(f"{index}: {result['state']}, {result['done']} of {result['total']} items re-embedded "
                  f"({100 * result['fraction']:.1f}%, {result['batches']} batches), {rate}{left}", markup=False)
    console.print(f"order {result['order']}, model {result['model']['run']} ({result['model']['fingerprint']})",
                  markup=False)
    console.print(f"running now: {result['held_by']}" if result["held_by"] else "no process is running it",
                  markup=False)


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 \
        else f"{seconds:.0f} s"


@app.command("rollback")
def rollback(index: Index) -> None:
    """Undo the migration in progress: the old index comes back bit for bit, the new vectors are dropped."""
    from compat_core.backfill import journal

    journal.rollback(index)
    _err().print(f"{index}: rolled back to the old index", markup=False)


@app.command("finalize")
def finalize(index: Index) -> None:
    """Make a complete migration final: the index holds the new model's vectors only; the old ones are dropped."""
    from compat_core.backfill.migrate import finalize as finish

    manifest = finish(index)
    _err().print(f"{index}: finalised, {manifest['count']} vectors by {manifest['models'][0]['run']}",
                 markup=False)
