"""PNG plots of backfilling curves. matplotlib is an optional dependency (``compat-fct[plot]``)."""

from __future__ import annotations

from pathlib import Path

from compat_core.errors import CompatError

PANELS = (("top1", "CMC top-1"), ("top5", "CMC top-5"), ("mAP", "mAP"))


def require_matplotlib() -> None:
    """Raise a :class:`CompatError` naming the fix when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CompatError("--plot needs matplotlib, an optional dependency of compat-fct. Install it with "
                          "`pip install 'compat-fct[plot]'` (or `pip install matplotlib`), or drop --plot.") from None


def save_plot(result: dict, path: str | Path) -> Path:
    """Draw the curves of a ``compat eval backfill`` result (one panel per metric) to a PNG file.

    Example:
        >>> save_plot(json.load(open("curve.json")), "curve.png")  # doctest: +SKIP
    """
    require_matplotlib()
    from compat_core.io import write_atomic
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    x = [100 * f for f in result["fractions"]]
    figure = Figure(figsize=(12, 3.8), layout="constrained")
    for axis, (key, label) in zip(figure.subplots(1, len(PANELS)), PANELS, strict=True):
        curve = [100 * v for v in result["curves"][key]]
        axis.plot(x, curve, marker="o", markersize=3,
                  label=f"{result['order']} order (AUC {100 * result['auc']['mean'][key]:.1f})")
        low, high = _limits(curve)
        axis.set_ylim(low, high)
        for (name, point), style in zip(result.get("reference", {}).items(), (":", "--"), strict=False):
            value = 100 * point[key]
            # A reference far off the curve's scale would flatten the curve: name it, do not draw it.
            where = "" if low <= value <= high else (" (below)" if value < low else " (above)")
            axis.axhline(value if not where else float("nan"), linestyle=style, color="grey",
                         label=f"{name} {value:.1f}{where}")
        axis.set_xlabel("gallery backfilled with the new model (%)")
        axis.set_ylabel(f"{label} (%)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.suptitle(f"backfilling: {result['transformed']} -> {result['new']}")
    return write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))


def _limits(curve: list[float]) -> tuple[float, float]:
    """The curve's range with a margin (at least 2 points, or 25% of the span)."""
    span = max(curve) - min(curve)
    margin = max(2.0, 0.25 * span)
    return max(0.0, min(curve) - margin), min(100.0, max(curve) + margin)
