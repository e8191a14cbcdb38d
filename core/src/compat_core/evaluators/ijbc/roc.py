"""The ROC of the 1:1 protocol and the TAR@FAR read off it, as insightface reports them.

insightface calls ``sklearn.metrics.roc_curve(labels, scores)`` (``drop_intermediate=True``: points
collinear with their neighbours are dropped, which changes which point is "closest") and, for each
target FAR ``x``, takes the TPR of the ROC point whose FPR is closest to ``x`` (the largest TPR
among equally close points). :func:`roc_points` returns exactly scikit-learn's ``(fpr, tpr)``
(pinned by ``tests/core/evaluators/test_ijbc_roc.py``) but sorts the float scores with one
``np.sort`` instead of a stable ``argsort``: 15.7 million scores take about a second, not six.
"""

from __future__ import annotations

import numpy as np

FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` equal to ``sklearn.metrics.roc_curve(labels, scores)[:2]`` (default options).

    ``labels`` are booleans (True = genuine); both classes must be present.

    Example:
        >>> fpr, tpr = roc_points(np.array([True, False, True, False]), np.array([0.9, 0.8, 0.7, 0.1]))
        >>> fpr.tolist(), tpr.tolist()
        ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    labels = np.asarray(labels, dtype=bool)
    ordered = np.sort(scores)  # ascending; one SIMD sort, no index array
    n = len(ordered)
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # first position of each distinct value
    runs = np.diff(starts, append=n)  # how many scores share each distinct value
    genuine_sorted = np.sort(scores[labels])
    genuine = np.zeros(len(starts), np.int32)  # genuine scores per distinct value
    np.add.at(genuine, np.searchsorted(starts, np.searchsorted(ordered, genuine_sorted), side="right") - 1, 1)
    # scikit-learn walks the distinct values downwards and keeps the ends and every corner: a value
    # whose (genuine, impostor) counts differ from those of the next lower value.
    corner = np.ones(len(starts), bool)
    corner[1:-1] = (runs[1:-1] != runs[:-2]) | (genuine[1:-1] != genuine[:-2])
    kept = np.flatnonzero(corner)[::-1]
    tps = len(genuine_sorted) - np.searchsorted(genuine_sorted, ordered[starts[kept]])  # genuine >= value
    fps = (n - starts[kept]) - tps
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    return fps / fps[-1], tps / tps[-1]


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, fars=FARS) -> dict[str, float]:
    """TPR of the ROC point closest to each FAR (ties: the larger TPR), keyed ``"1e-06"`` ... ``"1e-01"``.

    Example:
        >>> tar_at_far(np.array([0.0, 0.001, 0.1, 1.0]), np.array([0.0, 0.5, 0.9, 1.0]), (1e-3, 1e-1))
        {'1e-03': 0.5, '1e-01': 0.9}
    """
    reversed_fpr, reversed_tpr = fpr[::-1], tpr[::-1]  # argmin's first hit is then the largest TPR
    return {far_key(far): float(reversed_tpr[np.argmin(np.abs(reversed_fpr - far))]) for far in fars}


def area_under(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Trapezoidal area under the ROC points (``sklearn.metrics.auc``).

    Example:
        >>> area_under(np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0]))
        1.0
    """
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def far_key(rate: float) -> str:
    """The JSON key of a rate: ``1e-06``, ``1e-01``, ``1e+00``.

    Example:
        >>> far_key(1e-4), far_key(1.0)
        ('1e-04', '1e+00')
    """
    return f"{rate:.0e}"
