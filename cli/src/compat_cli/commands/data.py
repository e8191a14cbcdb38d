"""``compat data split``: reproducible old/new splits saved as manifests."""

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
) -> None:
    """Write a split manifest; use it as --classes @OUT:old and --classes @OUT:new."""
    from compat_core.data import open_dataset
    from compat_core.data.selection import make_split
    from compat_core.io import write_json

    dataset = open_dataset(data, split=data_split, image_size=8)
    manifest = make_split(dataset, old_fraction, by=by.value, seed=seed)
    write_json(out, manifest)
    old, new = manifest["old"], manifest["new"]
    key = "classes" if by is SplitBy.klass else "indices"
    Console(stderr=True).print(f"[green]wrote[/] {out}: old {len(old[key])} {key}, new {len(new[key])} {key}; "
                               f"use --classes @{out}:old")


@app.command("info")
def info(
    data: Annotated[str, typer.Argument(help="Dataset path or built-in name.")],
    data_split: Annotated[str, typer.Option("--split", help="Dataset split.")] = "train",
) -> None:
    """Show a dataset's detected format, size and classes."""
    import numpy as np
    from compat_core.data import open_dataset

    dataset = open_dataset(data, split=data_split, image_size=8)
    counts = np.bincount(dataset.labels, minlength=dataset.num_classes)
    console = Console()
    console.print(f"{dataset.name} [{data_split}]: {len(dataset)} images, {dataset.num_classes} classes")
    for label, (name, count) in enumerate(zip(dataset.classes, counts, strict=True)):
        console.print(f"  {label:>4}  {name}  ({count} images)")
