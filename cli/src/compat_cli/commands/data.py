"""``compat data split``: reproducible old/new splits (and validation holdouts) saved as manifests."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Inspect datasets and make old/new splits.", no_args_is_help=True)


class SplitBy(str, Enum):
    klass = "class"
    sample = "sample"


@app.command("split")
def split(
    data: Annotated[str, typer.Argument(help="Dataset path or built-in name.")],
    out: Annotated[str, typer.Option("--out", help="Manifest file to write (JSON).")],
    old_fraction: Annotated[float, typer.Option("--old-fraction", min=0.0, max=1.0,
                                                help="Fraction of classes (or samples) for the old model.")] = 0.5,
    by: Annotated[SplitBy, typer.Option("--by", help="Split classes or samples within every class.")] = SplitBy.klass,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the split.")] = 0,
    data_split: Annotated[str, typer.Option("--split", help="Dataset split to divide.")] = "train",
    validation: Annotated[float | None, typer.Option(
        "--validation", help="Also hold out this fraction (0 < f <= 0.5) of every class for validation: "
                             "--split @OUT:train / @OUT:val.")] = None,
    order: Annotated[str, typer.Option(
        "--order", help="By class: random classes, or first (the lowest labels, as the MixBCT repository's "
                        "class30).")] = "random",
    singletons: Annotated[str, typer.Option(
        "--singletons", help="By sample: a class of one image goes to old only, or to both halves.")] = "old",
    scenario: Annotated[str | None, typer.Option(
        "--scenario", help="One of the MixBCT repository's face scenarios, which sets --by, --order, "
                           "--singletons and the new half: open-class (class30/class70), open-data "
                           "(data30/data70), extended-class (class30/all), extended-data (data30/all). "
                           "--old-fraction defaults to 0.3 with it.")] = None,
) -> None:
    """Write a split manifest; use it as --classes @OUT:old / @OUT:new (and --split @OUT:train / @OUT:val)."""
    from compat_core.data import open_dataset
    from compat_core.data.selection import SCENARIOS, make_scenario_split, make_split
    from compat_core.io import check_writable, write_json

    check_writable(out, "--out")
    dataset = open_dataset(data, split=data_split, image_size=8)
    if scenario:
        fraction = 0.3 if old_fraction == 0.5 else old_fraction  # 0.5 is the option's own default
        manifest = make_scenario_split(dataset, scenario, fraction, seed=seed, validation=validation,
                                       split=data_split)
        by = SplitBy(SCENARIOS[scenario]["by"])
    else:
        manifest = make_split(dataset, old_fraction, by=by.value, seed=seed, validation=validation, split=data_split,
                              order=order, singletons=singletons)
    write_json(out, manifest)
    old, new = manifest["old"], manifest["new"]
    key = "classes" if by is SplitBy.klass else "indices"
    message = f"[green]wrote[/] {out}: old {len(old[key])} {key}, new {len(new[key])} {key}; use --classes @{out}:old"
    if "holdout" in manifest:
        holdout = manifest["holdout"]
        message += (f"; holdout of {data_split}: train {len(holdout['train'])}, val {len(holdout['val'])} images, "
                    f"use --split @{out}:train and --split @{out}:val")
    Console(stderr=True).print(message)


@app.command("info")
def info(
    data: Annotated[str, typer.Argument(help="Dataset path or built-in name.")],
    data_split: Annotated[str, typer.Option("--split", help="Dataset split.")] = "train",
) -> None:
    """Show a dataset's detected format, size and classes."""
    import numpy as np
    from compat_core.data import open_dataset
    from rich.markup import escape

    dataset = open_dataset(data, split=data_split, image_size=8)
    counts = np.bincount(dataset.labels, minlength=dataset.num_classes)
    console = Console()
    # escape: "[val]" or "[@split.json:val]" would otherwise be read as rich markup and vanish
    console.print(escape(f"{dataset.name} [{data_split}]: {len(dataset)} images, {dataset.num_classes} classes"))
    for label, (name, count) in enumerate(zip(dataset.classes, counts, strict=True)):
        console.print(f"  {label:>4}  {name}  ({count} images)")
