"""The compatibility criterion and update gain of Shen et al., "Towards Backward-Compatible
Representation Learning", CVPR 2020 (BCT), written once for every evaluator and study.

``M(query model, gallery model)`` is a retrieval metric (top-1, mAP...) of queries embedded by one
model searched against a gallery embedded by another:

* criterion (paper, Sec. 3): a new model is backward compatible with an old one when
  ``M(new, old) > M(old, old)``;
* update gain (paper, Eq. 6): ``(M(new*, old) - M(old, old)) / (M(new_ind, new_ind) - M(old, old))``,
  the share of the improvement an *independently trained* new model (``new_ind``, trained without
  any compatibility constraint) would bring that a compatible model ``new*`` delivers without
  backfilling the gallery.

Example:
    >>> update_gain(new_old=0.75, old_old=0.5, reference_new_new=1.0)
    0.5
    >>> criterion_held(new_old=0.70, old_old=0.60)
    True
"""

from __future__ import annotations

#: Below this spread M(new_ind, new_ind) - M(old, old) the gain is undefined.
MIN_SPREAD = 1e-12


def update_gain(new_old: float, old_old: float, reference_new_new: float) -> float | None:
    """The update gain of Shen et al. (CVPR 2020, Eq. 6).

    ``(M(new*, old) - M(old, old)) / (M(new_ind, new_ind) - M(old, old))``: 0 when the compatible
    model's queries do no better against the old gallery than the old model's own, 1 when they do as
    well as a full backfill with the independently trained model would.

    Args:
        new_old: ``M(new*, old)``: new-model queries against the old-model gallery.
        old_old: ``M(old, old)``: the old model on both sides.
        reference_new_new: ``M(new_ind, new_ind)``: the independently trained new model on both
            sides (the paper's upper bound). Without such a reference run, callers pass the new
            model's own ``M(new*, new*)`` and must say so.

    Returns:
        The gain, or None when ``reference_new_new - old_old <= 1e-12``: the reference does not
        improve on the old model, so there is no improvement to carry over (dividing would give
        a meaningless, possibly huge, number).

    Example:
        >>> round(update_gain(0.70, 0.60, 0.80), 6)
        0.5
        >>> round(update_gain(0.55, 0.60, 0.80), 6)  # worse than the old model: negative
        -0.25
        >>> update_gain(0.70, 0.60, 0.60) is None  # the reference is no better than the old model
        True
    """
    spread = reference_new_new - old_old
    if spread <= MIN_SPREAD:
        return None
    return (new_old - old_old) / spread


def criterion_held(new_old: float, old_old: float) -> bool:
    """The compatibility criterion of Shen et al. (CVPR 2020): ``M(new, old) > M(old, old)``.

    Strict: a new model whose queries merely match the old model's own retrieval is not compatible.

    Args:
        new_old: ``M(new, old)``: new-model queries against the old-model gallery.
        old_old: ``M(old, old)``: the old model on both sides.

    Example:
        >>> criterion_held(0.61, 0.60), criterion_held(0.60, 0.60)
        (True, False)
    """
    return bool(new_old > old_old)


def chain_metrics(runs: list[str], score: dict[tuple[str, str], float]) -> dict[str, float | None]:
    """Average Compatibility and Average Multi-model Accuracy of a chain of T models, oldest first.

    With ``M(i, j)`` the metric of model i's queries against model j's gallery (as in Biondi et al.,
    "CoReS: Compatible Representations via Stationarity", TPAMI 2023, and the IAM-CL2R line):

    * AC = (2 / (T (T - 1))) * sum over later i > earlier j of 1[M(i, j) > M(j, j)], the share of
      (later, earlier) pairs that hold the BCT criterion;
    * AM = (2 / (T (T + 1))) * sum over j <= i of M(i, j), the mean over the lower triangle, diagonal included.

    Args:
        runs: the models, oldest first.
        score: ``M`` by (query run, gallery run).

    Example:
        >>> m = {("a", "a"): 0.5, ("b", "a"): 0.6, ("b", "b"): 0.8, ("c", "a"): 0.4, ("c", "b"): 0.9,
        ...      ("c", "c"): 0.9}
        >>> chain = chain_metrics(["a", "b", "c"], m)
        >>> round(chain["AC"], 4), round(chain["AM"], 4)  # 2 of 3 pairs hold; (0.5+0.6+0.8+0.4+0.9+0.9) / 6
        (0.6667, 0.6833)
    """
    count = len(runs)
    if count < 2:
        return {"AC": None, "AM": None}
    held = sum(criterion_held(score[later, earlier], score[earlier, earlier])
               for i, later in enumerate(runs) for earlier in runs[:i])
    total = sum(score[later, earlier] for i, later in enumerate(runs) for earlier in runs[:i + 1])
    return {"AC": held / (count * (count - 1) / 2), "AM": total / (count * (count + 1) / 2)}
