"""The BCT criterion and update gain (Shen et al., CVPR 2020) on fixed numbers."""

import doctest

import pytest
from compat_core.evaluators.matrix import compatibility
from compat_core.metrics import compatibility as module
from compat_core.metrics.compatibility import criterion_held, update_gain


def test_gain_divides_by_the_independently_trained_reference():
    # old/old 60, new*/old 70, independent new/new 80: half of the improvement carries over
    assert update_gain(new_old=0.70, old_old=0.60, reference_new_new=0.80) == pytest.approx(0.5)
    # the same compatible model against a stronger reference (90) carries over a third
    assert update_gain(0.70, 0.60, 0.90) == pytest.approx(1 / 3)
    # queries worse than the old model's own: a negative gain, not clipped
    assert update_gain(0.45, 0.60, 0.90) == pytest.approx(-0.5)
    # beyond the reference: above 1
    assert update_gain(0.95, 0.60, 0.90) == pytest.approx(35 / 30)


def test_gain_is_undefined_when_the_reference_does_not_improve():
    assert update_gain(0.70, 0.60, 0.60) is None
    assert update_gain(0.70, 0.60, 0.60 + 1e-13) is None
    assert update_gain(0.70, 0.60, 0.55) is None  # would be -2, meaningless
    assert update_gain(0.70, 0.60, 0.60 + 1e-9) == pytest.approx(0.1 / 1e-9)


def test_criterion_is_strict():
    assert criterion_held(0.61, 0.60) is True
    assert criterion_held(0.60, 0.60) is False
    assert criterion_held(0.10, 0.60) is False


def rows(values):
    return [{"query": q, "gallery": g, "top1": t, "mAP": m} for (q, g), (t, m) in values.items()]


VALUES = {("old", "old"): (0.60, 0.40), ("old", "new"): (0.0, 0.0),
          ("new", "old"): (0.70, 0.55), ("new", "new"): (0.80, 0.70)}


def test_matrix_gain_without_reference_is_self_referenced_and_says_so():
    (verdict,) = compatibility(["old", "new"], rows(VALUES))
    assert verdict["gain_reference"] == "self"
    assert verdict["top1"]["gain"] == pytest.approx((0.70 - 0.60) / (0.80 - 0.60))  # 0.5
    assert verdict["mAP"]["gain"] == pytest.approx((0.55 - 0.40) / (0.70 - 0.40))  # 0.5


def test_matrix_gain_with_reference_uses_the_reference_self_retrieval():
    reference = {"label": "independent", "top1": 0.85, "mAP": 0.90}
    (verdict,) = compatibility(["old", "new"], rows(VALUES), {"old": "o", "new": "n"}, reference)
    assert verdict["gain_reference"] == "independent"
    assert (verdict["new_label"], verdict["old_label"]) == ("n", "o")
    assert verdict["top1"]["gain"] == pytest.approx(0.10 / 0.25)  # 0.4, not the self-referenced 0.5
    assert verdict["mAP"]["gain"] == pytest.approx(0.15 / 0.50)  # 0.3
    assert verdict["top1"]["new_new"] == 0.80  # the new run's own score is still reported


def test_docstring_examples_hold():
    assert doctest.testmod(module).failed == 0


def test_chain_metrics_of_four_generations_by_hand():
    """T = 4: AC over the 6 (later, earlier) pairs, AM over the 10 lower-triangle entries."""
    from compat_core.metrics.compatibility import chain_metrics

    m = [[0.40, None, None, None],
         [0.45, 0.60, None, None],   # 1 vs 0: 0.45 > 0.40 held
         [0.38, 0.61, 0.70, None],   # 2 vs 0: no; 2 vs 1: 0.61 > 0.60 held
         [0.40, 0.65, 0.72, 0.80]]   # 3 vs 0: 0.40 = 0.40, not held (strict); 3 vs 1 held; 3 vs 2 held
    runs = ["v1", "v2", "v3", "v4"]
    score = {(runs[i], runs[j]): m[i][j] for i in range(4) for j in range(i + 1)}
    chain = chain_metrics(runs, score)
    assert chain["AC"] == pytest.approx(4 / 6)
    assert chain["AM"] == pytest.approx(sum(v for row in m for v in row if v is not None) / 10)
    assert chain_metrics(["only"], {("only", "only"): 0.5}) == {"AC": None, "AM": None}
