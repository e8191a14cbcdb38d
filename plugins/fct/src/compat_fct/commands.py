"""``compat fct transform``: transform precomputed old gallery features with a trained FCT run.

In production the old images may be gone: only their old-model features (and side-information
features) remain. This command maps them into the new space without touching an image. Imported only
by the CLI (typer here; torch inside the command).
"""

from __future__ import annotations

from typing import Annotated

import typer


def build_app() -> typer.Typer:
    app = typer.Typer(help="Forward-compatible updates (compat-fct): transform old gallery features.",
                      no_args_is_help=True)
    app.command("transform")(transform)
    return app


def transform(
    model: Annotated[str, typer.Option("--model", help="FCT or FastFill run directory (its transformation is used).")],
    old_features: Annotated[str, typer.Option("--old-features", help="Old-model features of the gallery (.npz).")],
    out: Annotated[str, typer.Option("--out", help="Output .npz: transformed features (+ uncertainty for FastFill).")],
    side_info_features: Annotated[str | None, typer.Option(
        "--side-info-features", help="Side-information features of the same images (.npz), when the run used "
        "side information.")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "auto",
) -> None:
    """Write h(old features, side-info features) to OUT, usable as --gallery / --transformed by the evaluators."""
    from compat_core.engine.distributed import resolve_device
    from compat_core.errors import CompatError
    from compat_core.features import features_of
    from rich.console import Console

    from compat_fct.gallery import save_with_uncertainty, transform_features

    if not out.endswith(".npz"):
        raise CompatError(f"--out {out} must end in .npz.")
    for flag, path in (("--old-features", old_features), ("--side-info-features", side_info_features)):
        if path is not None and not path.endswith(".npz"):
            raise CompatError(f"{flag} {path} must be a .npz feature file (from `compat features extract`).")
    old = features_of(old_features, data=None, split="")
    side = None if side_info_features is None else features_of(side_info_features, data=None, split="")
    feats, sigma = transform_features(model, old, side, old_path=old_features, side_path=side_info_features or "",
                                      device=str(resolve_device(device)))
    save_with_uncertainty(out, feats, sigma)
    extra = " + uncertainty" if sigma is not None else ""
    Console(stderr=True).print(f"[green]wrote[/] {out}: {feats.features.shape[0]} x {feats.features.shape[1]}{extra}")
