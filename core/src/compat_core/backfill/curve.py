"""Backfilling curves: the gallery starts as transformed-old embeddings and is re-embedded by the new
model step by step, in a chosen order; retrieval is measured after every step.

Conventions (FastFill's evaluation, with its unseeded order and endpoint bookkeeping fixed):

* ``steps`` S gives S + 1 points; after step i the first ``floor(i n / S)`` items of the order carry
  new-model features, the rest transformed ones. Point 0 is new/transformed-old, point S is new/new.
  (The original's B = 20 gives 22 points at ``i / 21``: that is ``steps = 21`` here.)
* Orders: ``random`` (a seeded permutation), ``uncertainty`` (largest sigma first: FastFill's policy,
  available without running the new model), ``distance`` (largest distance between the item's
  transformed and new features first: an oracle, as it needs the new features).
* Area under the curve: the mean of the points (the papers' convention, endpoints at full weight)
  and the trapezoid rule over the backfilled fractions.
"""

from __future__ import annotations

import numpy as np

ORDERS = ("random", "uncertainty", "distance")
CURVE_METRICS = ("top1", "top5", "mAP")


def cutoffs(n: int, steps: int) -> np.ndarray:
    """Number of backfilled items after each step 0..steps: ``floor(i n / steps)``.

    Example:
        >>> cutoffs(10, 4).tolist()
        [0, 2, 5, 7, 10]
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return (np.arange(steps + 1, dtype=np.int64) * n) // steps


def item_distance(transformed: np.ndarray, new: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Per gallery item: euclidean distance (``l2``) or 1 - cosine (``cosine``) of its two features.

    Example:
        >>> item_distance(np.array([[3.0, 4.0]]), np.zeros((1, 2)), "l2").tolist()
        [5.0]
    """
    transformed, new = np.asarray(transformed, np.float64), np.asarray(new, np.float64)
    if metric == "l2":
        return np.linalg.norm(transformed - new, axis=1)
    norms = np.linalg.norm(transformed, axis=1) * np.linalg.norm(new, axis=1)
    return 1.0 - (transformed * new).sum(1) / np.maximum(norms, 1e-12)


def backfill_order(order: str, n: int, *, seed: int = 0, uncertainty: np.ndarray | None = None,
                   transformed: np.ndarray | None = None, new: np.ndarray | None = None,
                   metric: str = "cosine") -> np.ndarray:
    """Gallery positions in the order they are backfilled (position 0 first). Ties keep gallery order.

    Example:
        >>> backfill_order("uncertainty", 3, uncertainty=np.array([0.1, 2.0, 0.5])).tolist()
        [1, 2, 0]
    """
    if order == "random":
        return np.random.default_rng(seed).permutation(n)
    if order == "uncertainty":
        if uncertainty is None:
            raise ValueError("the uncertainty order needs per-item uncertainties")
        score = np.asarray(uncertainty, np.float64)
    elif order == "distance":
        if transformed is None or new is None:
            raise ValueError("the distance order needs transformed and new features")
        score = item_distance(transformed, new, metric)
    else:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if score.shape != (n,):
        raise ValueError(f"expected {n} scores, got shape {score.shape}")
    return np.argsort(-score, kind="stable")


def backfill_curve(query: np.ndarray, query_labels: np.ndarray, transformed: np.ndarray, new: np.ndarray,
                   gallery_labels: np.ndarray, order: np.ndarray, *, steps: int = 20, metric: str = "cosine",
                   exclude_self: bool = False) -> dict:
    """Retrieval metrics of ``query`` against the gallery after each backfill step.

    Args:
        query: (Q, D) query features (the new model's).
        query_labels: (Q,) labels.
        transformed: (G, D) the gallery's transformed-old features.
        new: (G, D) the gallery's new-model features, row-aligned with ``transformed``.
        gallery_labels: (G,) labels.
        order: permutation of range(G): backfill order (from :func:`backfill_order`).
        steps: S; the curve has S + 1 points.
        metric: ``cosine`` or ``l2``.
        exclude_self: query i is gallery item i (leave-one-out).

    Returns:
        ``{"fractions": [...], "backfilled": [...], "curves": {"top1": [...], "top5": [...], "mAP": [...]}}``
        with fractions in [0, 1].

    Example:
        >>> g = np.eye(2, dtype=np.float32)
        >>> r = backfill_curve(g, np.array([0, 1]), g, g, np.array([0, 1]), np.array([1, 0]), steps=2)
        >>> r["fractions"], r["curves"]["top1"]
        ([0.0, 0.5, 1.0], [1.0, 1.0, 1.0])
    """
    import torch

    from compat_core.metrics.retrieval import retrieval_metrics

    n = len(transformed)
    if new.shape != transformed.shape:
        raise ValueError(f"transformed {transformed.shape} and new {new.shape} features must have the same shape")
    if sorted(np.asarray(order).tolist()) != list(range(n)):
        raise ValueError("order must be a permutation of the gallery positions")
    gallery = np.array(transformed, dtype=np.float32, copy=True)
    query_t, query_y, gallery_y = torch.from_numpy(np.asarray(query, np.float32)), query_labels, gallery_labels
    cuts = cutoffs(n, steps)
    curves: dict[str, list[float]] = {k: [] for k in CURVE_METRICS}
    done = 0
    for cut in cuts:
        replaced = order[done:cut]
        gallery[replaced] = new[replaced]
        done = int(cut)
        metrics = retrieval_metrics(query_t, query_y, torch.from_numpy(gallery), gallery_y, metric=metric,
                                    exclude_self=exclude_self)
        for key in CURVE_METRICS:
            curves[key].append(metrics[key])
    return {"fractions": (cuts / max(n, 1)).tolist(), "backfilled": cuts.tolist(), "curves": curves}


def area_under_curves(fractions: list[float], curves: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """``{"mean": {metric: mean of the points}, "trapezoid": {metric: trapezoid over fractions}}``.

    Example:
        >>> area_under_curves([0.0, 0.5, 1.0], {"top1": [0.0, 0.0, 1.0]})
        {'mean': {'top1': 0.3333333333333333}, 'trapezoid': {'top1': 0.25}}
    """
    x = np.asarray(fractions, dtype=np.float64)
    return {"mean": {k: float(np.mean(v)) for k, v in curves.items()},
            "trapezoid": {k: float(np.trapezoid(np.asarray(v, np.float64), x)) for k, v in curves.items()}}
