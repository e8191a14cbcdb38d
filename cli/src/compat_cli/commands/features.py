"""``compat features extract``: embeddings of a model on a dataset, as an ``.npz`` file."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Extract and inspect feature files.", no_args_is_help=True)


@app.command("extract")
def extract(
    model: Annotated[str, typer.Option("--model", help="Run directory of the model.")],
    out: Annotated[str, typer.Option("--out", help="Output .npz file.")],
    data: Annotated[str | None, typer.Option("--data", help="Dataset path or built-in name.")] = None,
    ijbc_root: Annotated[str | None, typer.Option(
        "--ijbc-root", help="Instead of --data: an IJB folder (loose_crop/, meta/); writes the image features "
                            "that `compat eval ijbc --features` reads.")] = None,
    target: Annotated[str, typer.Option("--target", help="With --ijbc-root: ijbc or ijbb.")] = "ijbc",
    flip: Annotated[bool, typer.Option("--flip/--no-flip", help="With --ijbc-root: add the mirrored face's "
                                                                "embedding.")] = True,
    workers: Annotated[int, typer.Option("--workers", help="With --ijbc-root: image decoding processes.")] = 0,
    split: Annotated[str, typer.Option("--split", help="Split to embed.")] = "test",
    logits: Annotated[bool, typer.Option("--logits", help="Also store the classifier logits (array logits, N x C), e.g. for "
                                                  "`compat eval regression --old-logits/--new-logits`.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 256,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "auto",
) -> None:
    """Write features (N x D float32), labels and dataset indices of MODEL on DATA to OUT (.npz)."""
    from compat_core import features
    from compat_core.engine.distributed import resolve_device

    if not out.endswith(".npz"):
        from compat_core.errors import CompatError

        raise CompatError(f"--out {out} must end in .npz.")
    if ijbc_root is not None or data is None:
        from compat_core.evaluators.ijbc.embed import extract_ijbc_features

        shape = extract_ijbc_features(model, ijbc_root, target, out, data=data, flip=flip, batch_size=batch_size,
                                      workers=workers, device=str(resolve_device(device)))
        Console(stderr=True).print(f"[green]wrote[/] {out}: {shape[0]} x {shape[1]}")
        return
    feats = features.features_of(model, data=data, split=split, batch_size=batch_size,
                                 device=str(resolve_device(device)), with_logits=logits)
    features.save(out, feats)
    Console(stderr=True).print(f"[green]wrote[/] {out}: {feats.features.shape[0]} x {feats.features.shape[1]}")
