"""1:1 verification: a score per template pair, the ROC, TAR@FAR and its area.

A pair's score is the dot product of its two L2-normalised template features, the gallery template
(column 0 of the pair file) from the gallery-side features and the probe template (column 1) from
the probe-side features: both are the same model in the self test; old and new in the cross test.

Scores are not gathered row by row (15.7 million pairs x 2 x 512 floats): the few thousand distinct
gallery templates are multiplied by all distinct probe templates in float32 blocks, and each pair
reads its score from the block that holds its gallery template.
"""

from __future__ import annotations

import numpy as np

from compat_core.errors import CompatError
from compat_core.evaluators.ijbc.roc import area_under, roc_points, tar_at_far

BLOCK_ELEMENTS = 1 << 27  # scores per gallery-block product: 512 MiB of float32


def pair_scores(gallery_side: np.ndarray, probe_side: np.ndarray, first_rows: np.ndarray,
                second_rows: np.ndarray, block_elements: int = BLOCK_ELEMENTS) -> np.ndarray:
    """``score[k] = gallery_side[first_rows[k]] . probe_side[second_rows[k]]`` as float32.

    Example:
        >>> g = np.eye(3, dtype=np.float32); p = 2 * np.eye(3, dtype=np.float32)
        >>> pair_scores(g, p, np.array([0, 0, 2]), np.array([0, 1, 2])).tolist()
        [2.0, 0.0, 2.0]
    """
    used_first, first_slot = _compact(first_rows, len(gallery_side))
    used_second, second_slot = _compact(second_rows, len(probe_side))
    width = len(used_second)
    probes_t = np.ascontiguousarray(probe_side[used_second].T, dtype=np.float32)
    block = max(1, block_elements // max(1, width))  # gallery rows per product; block * width < 2**31
    # flat[k] = slot of the gallery template * width + slot of the probe template: int32 while it fits
    flat = first_slot[first_rows].astype(np.int64 if len(used_first) * width >= 2**31 else np.int32, copy=False)
    flat *= width
    flat += second_slot[second_rows]
    if len(used_first) <= block:  # IJB-C: 3,531 x 19,593 scores, one product
        product = np.asarray(gallery_side[used_first], dtype=np.float32) @ probes_t
        return np.take(product, flat)
    scores = np.empty(len(first_rows), np.float32)
    for begin in range(0, len(used_first), block):
        end = min(begin + block, len(used_first))
        here = np.flatnonzero((flat >= begin * width) & (flat < end * width))
        product = np.asarray(gallery_side[used_first[begin:end]], dtype=np.float32) @ probes_t
        scores[here] = np.take(product, flat[here] - begin * width)
    return scores


def _compact(rows: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows in use (ascending) and, for every row, its slot among them (-1 when unused)."""
    used = np.flatnonzero(np.bincount(rows, minlength=n_rows))
    slot = np.full(n_rows, -1, dtype=np.int32)
    slot[used] = np.arange(len(used))
    return used, slot


def verification_metrics(scores: np.ndarray, genuine: np.ndarray, pair_file: str = "the pair file") -> dict:
    """TAR at FAR 1e-6 ... 1e-1 (closest ROC point), the ROC AUC and the pair counts.

    Example:
        >>> m = verification_metrics(np.array([0.9, 0.1, 0.8, 0.2]), np.array([True, False, True, False]))
        >>> m["tar_at_far"]["1e-01"], m["auc"]
        (1.0, 1.0)
    """
    n_genuine = int(np.count_nonzero(genuine))
    if n_genuine == 0 or n_genuine == len(genuine):
        kind = "genuine (label 1)" if n_genuine == 0 else "impostor (label 0)"
        raise CompatError(f"{pair_file} has no {kind} pairs, so there is no ROC. Use the complete pair file of "
                          f"the IJB release.")
    fpr, tpr = roc_points(genuine, scores)
    return {"tar_at_far": tar_at_far(fpr, tpr), "auc": area_under(fpr, tpr), "n_pairs": int(len(scores)),
            "n_genuine": n_genuine, "n_impostor": int(len(scores) - n_genuine)}
