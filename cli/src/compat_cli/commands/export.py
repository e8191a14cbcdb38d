"""``compat export``: a run's embedding model as an ONNX or TorchScript file, checked before it is written."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console


def export(
    run: Annotated[str, typer.Argument(help="Run directory to export.")],
    out: Annotated[str, typer.Option("--out", help="File to write (.onnx or .pt).")],
    fmt: Annotated[str, typer.Option("--format", help="onnx (checked with onnxruntime) or torchscript.")] = "onnx",
    opset: Annotated[int, typer.Option("--opset", min=13, help="ONNX opset.")] = 18,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch/--static-batch", help="Any batch size, or only "
                                                "the checked one.")] = True,
    data: Annotated[str | None, typer.Option("--data", help="Check on real images of this dataset (default: "
                                                            "seeded random images).")] = None,
    split: Annotated[str, typer.Option("--split", help="Split of --data.")] = "test",
    tolerance: Annotated[float, typer.Option("--tolerance", help="Largest difference from compat's own "
                                                                 "embeddings (float32).")] = 1e-4,
    with_transformation: Annotated[bool, typer.Option(
        "--with-transformation", help="Adapter, FCT and FastFill runs: also write their transformation of stored "
        "vectors as a graph of its own, to OUT's name with .transformation before the suffix.")] = False,
) -> None:
    """Export the embedding model (uint8 images in, embedding out; preprocessing in the graph, recorded with
    the fingerprint in the file's metadata) and check it against compat's own embeddings."""
    from compat_core.export import export_model
    from compat_core.io import check_writable
    from compat_core.models.run import is_run_dir

    if not is_run_dir(run):
        from compat_core.errors import CompatError

        raise CompatError(f"{run} is not a compat run directory. Pass the --out folder of `compat train` or "
                          f"`compat import model`.")
    check_writable(out, "--out")
    console = Console(stderr=True, highlight=False)
    if with_transformation:
        from pathlib import Path

        from compat_core.export import export_transformation

        second = Path(out).with_name(f"{Path(out).stem}.transformation{Path(out).suffix}")
        check_writable(str(second), "--out")
        report = export_transformation(run, second, fmt=fmt, opset=opset, dynamic_batch=dynamic_batch,
                                       tolerance=tolerance)
        console.print(f"wrote {second} ({fmt}, the transformation: {report['metadata']['input']} in): largest "
                      f"difference from compat's {report['max_abs_difference']:.2g} on {report['checked_on']}",
                      markup=False)
    report = export_model(run, out, fmt=fmt, opset=opset, dynamic_batch=dynamic_batch, data=data, split=split,
                          tolerance=tolerance)
    console.print(f"wrote {out} ({fmt}): largest difference from compat's embeddings {report['max_abs_difference']:.2g} "
                  f"on {report['checked_on']} (tolerance {tolerance:g})", markup=False)
