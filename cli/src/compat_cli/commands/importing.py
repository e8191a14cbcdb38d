"""``compat import model``: a checkpoint trained elsewhere becomes a compat run directory."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Bring models trained elsewhere into compat.", no_args_is_help=True)


@app.command("model")
def model(
    backbone: Annotated[str, typer.Option("--backbone", help="A registered backbone or timm name whose layers the "
                                                             "checkpoint holds (a torchvision ResNet: resnet18...).")],
    weights: Annotated[str, typer.Option("--weights", help="The checkpoint: .safetensors, or .pth (read with "
                                                           "weights_only=True, never unpickled).")],
    out: Annotated[str, typer.Option("--out", help="Run directory to write.")],
    projection_weights: Annotated[str | None, typer.Option(
        "--projection-weights", help="Checkpoint name of a linear layer after the backbone's pooled features "
                                     "(e.g. `embedding`): its output is the embedding. Without it the "
                                     "embedding is the pooled features.")] = None,
    head: Annotated[str | None, typer.Option("--head", help="Classifier kind to import: linear, normface, "
                                                            "cosface or arcface (with --head-weights).")] = None,
    head_weights: Annotated[str | None, typer.Option("--head-weights", help="Checkpoint name of the "
                                                                            "classifier (torchvision: fc).")] = None,
    classes: Annotated[str | None, typer.Option("--classes", help="Text file with one class name per line, in "
                                                                  "the classifier's order.")] = None,
    input_size: Annotated[int, typer.Option("--input-size", min=8, help="Image side the model expects.")] = 224,
    mean: Annotated[str, typer.Option("--mean", help="Per-channel mean of the input normalisation.")]
        = "0.485,0.456,0.406",
    std: Annotated[str, typer.Option("--std", help="Per-channel std of the input normalisation.")]
        = "0.229,0.224,0.225",
    ignore: Annotated[list[str] | None, typer.Option("--ignore", help="Leave out checkpoint tensors whose names "
                                                                      "start with this (repeatable).")] = None,
) -> None:
    """Import a checkpoint (a timm or torchvision model, a state dict under module./model. prefixes) as a run
    directory that every --old, evaluator, index and export accepts."""
    from pathlib import Path

    from compat_core.errors import CompatError
    from compat_core.io import check_writable_folder
    from compat_core.models.importing import ImportRequest, import_model
    from compat_core.models.run import save_model

    if Path(out).exists() and any(Path(out).iterdir()):
        raise CompatError(f"--out {out} exists and is not empty. Choose a new folder.")
    if bool(head) != bool(head_weights):
        raise CompatError("--head and --head-weights go together: the kind of classifier and its checkpoint name.")
    names = None
    if classes:
        if not Path(classes).is_file():
            raise CompatError(f"--classes {classes}: no such file. Give a text file with one class name per line.")
        names = [line.strip() for line in Path(classes).read_text().splitlines() if line.strip()]
    check_writable_folder(out, "--out")
    request = ImportRequest(backbone, weights, projection_weights, head, head_weights, names, input_size,
                            _floats(mean, "--mean"), _floats(std, "--std"), list(ignore or []))
    imported = import_model(request)
    save_model(imported, out)
    spec = imported.spec
    Console(stderr=True, highlight=False).print(
        f"wrote {out}: {backbone}, {imported.embedding_dim}-d embedding, "
        f"{spec.num_classes or 'no'} classes, input {spec.input['size']}px", markup=False)


def _floats(text: str, flag: str) -> tuple[float, ...]:
    from compat_core.errors import CompatError

    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise CompatError(f"{flag} {text}: give three comma-separated numbers, e.g. 0.5,0.5,0.5.") from None
    if len(values) != 3:
        raise CompatError(f"{flag} {text}: give three comma-separated numbers (one per channel).")
    return values
