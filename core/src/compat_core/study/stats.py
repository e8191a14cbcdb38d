"""Summaries over seed pairs: mean, sample standard deviation, min, max, and paired differences."""

from __future__ import annotations

import math
from collections.abc import Sequence


def summarize(values: Sequence[float]) -> dict:
    """``{"mean", "std", "min", "max", "values"}`` of ``values``.

    ``std`` is the sample standard deviation (divisor n - 1), the spread to expect between seed pairs;
    it is 0.0 for a single value (no spread measured) and every field is None for no value.

    Example:
        >>> summarize([0.5, 0.7, 0.9])["std"]
        0.2
        >>> summarize([0.5, 0.7, 0.9])["mean"]
        0.7
    """
    values = [float(v) for v in values]
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None, "values": []}
    mean = math.fsum(values) / len(values)
    variance = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return {"mean": round(mean, 12), "std": round(math.sqrt(variance), 12), "min": min(values),
            "max": max(values), "values": values}


def paired(method: Sequence[float], comparison: Sequence[float], tolerance: float = 1e-12) -> dict:
    """Per-pair differences ``method - comparison`` and how many pairs favour each side.

    Example:
        >>> p = paired([0.8, 0.6, 0.7], [0.7, 0.7, 0.7])
        >>> p["favour_method"], p["favour_comparison"], p["ties"], p["diff"]["mean"]
        (1, 1, 1, 0.0)
    """
    if len(method) != len(comparison):
        raise ValueError("paired values need the same seed pairs on both sides")
    diffs = [float(a) - float(b) for a, b in zip(method, comparison, strict=True)]
    return {"diff": summarize(diffs), "favour_method": sum(d > tolerance for d in diffs),
            "favour_comparison": sum(d < -tolerance for d in diffs),
            "ties": sum(abs(d) <= tolerance for d in diffs)}


def pm(summary: dict, scale: float = 100.0, digits: int = 2) -> str:
    """``"mean ± std"`` in percent (``-`` when nothing was measured).

    Example:
        >>> pm({"mean": 0.7512, "std": 0.0231})
        '75.12 ± 2.31'
    """
    if summary.get("mean") is None:
        return "-"
    return f"{scale * summary['mean']:.{digits}f} ± {scale * summary['std']:.{digits}f}"
