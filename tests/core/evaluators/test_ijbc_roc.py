"""The 1:1 ROC and TAR@FAR: scikit-learn's curve reproduced exactly, and insightface's closest-point rule."""

import numpy as np
import pytest
from compat_core.evaluators.ijbc.roc import FARS, area_under, far_key, roc_points, tar_at_far
from compat_core.evaluators.ijbc.verification import verification_metrics
from sklearn.metrics import auc, roc_curve


def insightface_tar(labels, scores):
    """The reference's own steps on scikit-learn's output (eval_ijbc.py)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    return [tpr[np.argmin(np.abs(fpr - x))] for x in [10 ** -6, 10 ** -5, 10 ** -4, 10 ** -3, 10 ** -2, 10 ** -1]]


def random_case(rng, n, decimals, dtype):
    labels = rng.random(n) < rng.uniform(0.02, 0.5)
    labels[:2] = [True, False]
    scores = np.round(rng.standard_normal(n) + labels * rng.uniform(0, 3), decimals).astype(dtype)
    return labels, scores


@pytest.mark.parametrize("decimals", [0, 1, 2, 6])  # few decimals: many ties, which change the pruning
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_roc_points_equal_scikit_learn(decimals, dtype):
    rng = np.random.default_rng(decimals)
    for _ in range(40):
        labels, scores = random_case(rng, int(rng.integers(2, 4000)), decimals, dtype)
        fpr, tpr, _ = roc_curve(labels, scores)
        ours_fpr, ours_tpr = roc_points(labels, scores)
        np.testing.assert_array_equal(ours_fpr, fpr)
        np.testing.assert_array_equal(ours_tpr, tpr)
        assert area_under(ours_fpr, ours_tpr) == auc(fpr, tpr)


def test_tar_at_far_is_the_references_rule():
    rng = np.random.default_rng(7)
    for _ in range(40):
        labels, scores = random_case(rng, int(rng.integers(100, 20000)), 3, np.float32)
        ours = tar_at_far(*roc_points(labels, scores))
        assert list(ours) == ["1e-06", "1e-05", "1e-04", "1e-03", "1e-02", "1e-01"]
        assert list(ours.values()) == insightface_tar(labels, scores)


def test_closest_point_may_lie_above_the_target_far():
    # impostors 0.9 > genuine 0.8 > 9 impostors: ROC points (0,0), (0.1,0), (0.1,1), (1,1)
    labels = np.array([False, True] + [False] * 9)
    scores = np.array([0.9, 0.8] + [0.05 * i for i in range(9)])
    fpr, tpr = roc_points(labels, scores)
    assert fpr.tolist() == [0.0, 0.1, 0.1, 1.0] and tpr.tolist() == [0.0, 0.0, 1.0, 1.0]
    # FAR 0.1 sits on two points: the larger TPR wins; FAR 1e-2 is closer to fpr 0 (TPR 0) than to 0.1
    assert tar_at_far(fpr, tpr, (0.1, 1e-2, 0.06)) == {"1e-01": 1.0, "1e-02": 0.0, "6e-02": 1.0}


def test_verification_metrics_by_hand():
    scores = np.array([0.9, 0.7, 0.6, 0.4, 0.3], np.float32)
    genuine = np.array([True, False, True, False, False])
    result = verification_metrics(scores, genuine)
    # points: (0,0) (0,.5) (1/3,.5) (1/3,1) (1,1): area = 0.5*1/3 + 1*2/3
    assert result["auc"] == pytest.approx(1 / 6 + 2 / 3)
    assert result["tar_at_far"]["1e-01"] == 0.5 and result["n_genuine"] == 2 and result["n_impostor"] == 3


def test_one_class_only_is_a_user_error():
    from compat_core.errors import CompatError

    with pytest.raises(CompatError, match="no genuine"):
        verification_metrics(np.array([0.1, 0.2]), np.array([False, False]), "pairs.txt")


def test_far_keys():
    assert [far_key(x) for x in FARS] == ["1e-06", "1e-05", "1e-04", "1e-03", "1e-02", "1e-01"]
