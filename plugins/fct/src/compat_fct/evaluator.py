"""``compat eval backfill``: the backfilling curve of a forward-compatible update.

Options are a pydantic model (no torch at import time: the CLI builds ``--flags`` from it); the work
happens in :func:`run_backfill`; :func:`render_backfill` prints the tables.

Example:
    compat eval backfill --data fashion-mnist --query runs/new --transformed runs/fastfill \\
        --new runs/new --old runs/old --order uncertainty --json curve.json --plot curve.png
"""

from __future__ import annotations

from typing import Literal

from compat_core.evaluators.retrieval import SourceOptions
from compat_core.tables import add_column
from pydantic import Field


class BackfillOptions(SourceOptions):
    query: str = Field(..., description="Query side: the new model's run directory or .npz features.")
    transformed: str = Field(..., description="The gallery before backfilling: an FCT / FastFill run directory "
                             "(old + side-info + transformation) or .npz from `compat fct transform`.")
    new: str = Field(..., description="The gallery after backfilling: the new model's run directory or .npz "
                     "features of the same images.")
    old: str | None = Field(None, description="Optional old model (run or .npz): adds the old/old and new/old "
                            "reference points.")
    order: Literal["random", "uncertainty", "distance"] = Field(
        "random", description="Backfill order: random (seeded), uncertainty (largest FastFill sigma first), "
        "distance (largest transformed-to-new distance first; an oracle).")
    steps: int = Field(20, ge=1, description="Backfill steps; the curve has steps + 1 points from 0% to 100%.")
    seed: int = Field(0, description="Seed of the random order.")
    plot: str | None = Field(None, description="Also draw the curves to this PNG file (needs matplotlib, the "
                             "optional extra `plot` of compat-fct).")


def run_backfill(options: BackfillOptions) -> dict:
    """Measure the curve; see :mod:`compat_core.backfill.curve` for the conventions."""
    import numpy as np
    from compat_core.backfill.curve import area_under_curves, backfill_curve, backfill_order

    from compat_fct.plot import require_matplotlib, save_plot

    if options.plot:
        require_matplotlib()  # before any work: a missing extra must not cost the whole evaluation
    transformed, sigma, new, query, old = _load_features(options)
    order = backfill_order(options.order, len(new.labels), seed=options.seed, uncertainty=sigma,
                           transformed=transformed.features, new=new.features, metric=options.metric)
    leave_one_out = query.same_images_as(new)
    curve = backfill_curve(query.features, query.labels, transformed.features, new.features, new.labels, order,
                           steps=options.steps, metric=options.metric, exclude_self=leave_one_out)
    result = {**curve, "auc": area_under_curves(curve["fractions"], curve["curves"]), "order": options.order,
              "seed": options.seed if options.order == "random" else None, "steps": options.steps,
              "metric": options.metric, "leave_one_out": leave_one_out, "n_query": int(len(query.labels)),
              "n_gallery": int(len(new.labels)), "query": options.query, "transformed": options.transformed,
              "new": options.new}
    if sigma is not None:
        result["mean_uncertainty"] = float(np.mean(sigma))
    if old is not None:
        result["reference"] = _reference_points(query, old, options)
    if options.plot:
        save_plot(result, options.plot)
    return result


def _load_features(options: BackfillOptions):
    """(transformed, sigma, new, query, old) features, every input checked before the curve is measured."""
    from compat_core.engine.distributed import resolve_device
    from compat_core.errors import CompatError
    from compat_core.features import features_of

    from compat_fct.gallery import embed_gallery

    kwargs = dict(data=options.data, split=options.split, batch_size=options.batch_size,
                  device=str(resolve_device(options.device)))
    transformed, sigma = embed_gallery(options.transformed, **kwargs)
    if options.order == "uncertainty" and sigma is None:
        raise CompatError(f"--order uncertainty needs per-item uncertainties, but {options.transformed} has none. "
                          f"Pass a `compat train fastfill` run (or its `compat fct transform` features), or use "
                          f"--order random or distance.")
    new = features_of(options.new, **kwargs)
    query = new if options.query == options.new else features_of(options.query, **kwargs)
    _check_gallery(transformed, new, query, options)
    old = None
    if options.old:
        old = features_of(options.old, **kwargs)
        _check_old(old, options)
    return transformed, sigma, new, query, old


def _check_gallery(transformed, new, query, options: BackfillOptions) -> None:
    """Both galleries must embed the same images in the same order, in one space shared with the queries."""
    import numpy as np
    from compat_core.errors import CompatError

    if len(transformed.labels) != len(new.labels) or not np.array_equal(transformed.index, new.index):
        raise CompatError(f"--transformed {options.transformed} has {len(transformed.labels)} items and --new "
                          f"{options.new} {len(new.labels)}, or their sample indices differ: both must embed the "
                          f"same gallery images in the same order. Extract both on the same --data and --split.")
    t_dim, n_dim, q_dim = (f.features.shape[1] for f in (transformed, new, query))
    if t_dim != n_dim:
        raise CompatError(f"--transformed {options.transformed} outputs {t_dim}-dim embeddings but --new "
                          f"{options.new} embeds in {n_dim} dims: the transformation was trained for another new "
                          f"model. Pass the new model it was trained for (`--new` of its `compat train`).")
    if q_dim != n_dim:
        raise CompatError(f"--query {options.query} embeds in {q_dim} dims but the gallery is {n_dim}-dim. Pass the "
                          f"new model as --query.")


def _check_old(old, options: BackfillOptions) -> None:
    """An FCT run's transformation must take the --old model's embeddings."""
    from pathlib import Path

    from compat_core.errors import CompatError

    from compat_fct.transformed import fct_section

    if options.transformed.endswith(".npz"):
        return
    try:
        expected = fct_section(Path(options.transformed))["transformation"]["old_dim"]
    except CompatError:  # another kind of run: nothing to compare
        return
    if old.features.shape[1] != expected:
        raise CompatError(f"--old {options.old} embeds in {old.features.shape[1]} dims but the transformation of "
                          f"--transformed {options.transformed} takes {expected}-dim old embeddings. Pass the old "
                          f"model it was trained on (`--old` of its `compat train`).")


def _reference_points(query, old, options: BackfillOptions) -> dict:
    from compat_core.evaluators.retrieval import retrieval_between

    keys = ("top1", "top5", "mAP")
    old_old = retrieval_between(old, old, options.metric, options.align)
    new_old = retrieval_between(query, old, options.metric, options.align)
    return {"old/old": {k: old_old[k] for k in keys}, "new/old": {k: new_old[k] for k in keys}}


def render_backfill(console, result: dict) -> None:
    from rich.table import Table

    title = f"backfilling curve, {result['order']} order ({result['metric']}, {result['n_gallery']} items; percent)"
    table = Table(title=title)
    for column in ("backfilled", "top-1", "top-5", "mAP"):
        add_column(table, column, right=True)
    curves = result["curves"]
    for i, fraction in enumerate(result["fractions"]):
        table.add_row(f"{100 * fraction:.1f}%", *(f"{100 * curves[k][i]:.2f}" for k in ("top1", "top5", "mAP")))
    console.print(table)
    summary = Table(title="area under the curve (percent)")
    for column in ("", "top-1", "top-5", "mAP"):
        add_column(summary, column, right=bool(column))
    for name, label in (("mean", "AUC, mean of points (papers)"), ("trapezoid", "AUC, trapezoid")):
        summary.add_row(label, *(f"{100 * result['auc'][name][k]:.2f}" for k in ("top1", "top5", "mAP")))
    for name, point in result.get("reference", {}).items():
        summary.add_row(f"reference {name}", *(f"{100 * point[k]:.2f}" for k in ("top1", "top5", "mAP")))
    console.print(summary)
