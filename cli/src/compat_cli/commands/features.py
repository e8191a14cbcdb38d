"""``compat features extract``: embeddings of a model on a dataset, as an ``.npz`` file."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Extract and inspect feature files.", no_args_is_help=True)


@app.command("extract")
def extract(
    model: Annotated[str, typer.Option("--model", help="Run directory of the model.")],
    data: Annotated[str, typer.Option("--data", help="Dataset path or built-in name.")],
    out: Annotated[str, typer.Option("--out", help="Output .npz file.")],
    split: Annotated[str, typer.Option("--split", help="Split to embed.")] = "test",
    logits: Annotated[bool, typer.Option("--logits", help="Also store the classifier logits.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 256,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "auto",
) -> None:
    """Write features (N x D float32), labels and dataset indices of MODEL on DATA to OUT (.npz)."""
    from compat_core import features
    from compat_core.engine.distributed import resolve_device

    if not out.endswith(".npz"):
        from compat_core.errors import CompatError

        raise CompatError(f"--out {out} must end in .npz.")
    feats = features.features_of(model, data=data, split=split, batch_size=batch_size,
                                 device=str(resolve_device(device)), with_logits=logits)
    features.save(out, feats)
    Console(stderr=True).print(f"[green]wrote[/] {out}: {feats.features.shape[0]} x {feats.features.shape[1]}")
