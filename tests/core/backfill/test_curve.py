"""Backfilling mechanics on constructed galleries: cut-offs, orders, endpoints, flat and monotone curves, AUC."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from compat_core.backfill.curve import (
    area_under_curves,
    backfill_curve,
    backfill_order,
    cutoffs,
    item_distance,
)
from compat_core.metrics.retrieval import retrieval_metrics


def clustered(n_per_class=6, classes=3, dim=5, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    centres = rng.normal(size=(classes, dim)) * 3
    return (centres[labels] + noise * rng.normal(size=(len(labels), dim))).astype(np.float32), labels


def test_cutoffs_are_floor_of_i_n_over_steps():
    assert cutoffs(10, 4).tolist() == [0, 2, 5, 7, 10]
    assert cutoffs(3, 5).tolist() == [0, 0, 1, 1, 2, 3]
    with pytest.raises(ValueError):
        cutoffs(10, 0)


def test_random_order_is_a_seeded_permutation():
    a, b, c = (backfill_order("random", 50, seed=s) for s in (0, 0, 1))
    assert sorted(a.tolist()) == list(range(50))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_uncertainty_order_is_most_uncertain_first_ties_in_gallery_order():
    sigma = np.array([0.5, 2.0, -1.0, 2.0, 0.7])
    assert backfill_order("uncertainty", 5, uncertainty=sigma).tolist() == [1, 3, 4, 0, 2]
    with pytest.raises(ValueError):
        backfill_order("uncertainty", 5)


def test_distance_order_is_the_oracle_largest_error_first():
    new = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    transformed = np.array([[1.0, 0.5], [0.0, -3.0], [2.0, 2.0]])  # cosine ranks item 0 above item 2, l2 below
    assert item_distance(transformed, new, "l2").tolist() == pytest.approx([0.5, 4.0, np.sqrt(2)])
    assert item_distance(transformed, new, "cosine").tolist() == pytest.approx([1 - 1 / np.sqrt(1.25), 2.0, 0.0])
    assert backfill_order("distance", 3, transformed=transformed, new=new, metric="l2").tolist() == [1, 2, 0]
    assert backfill_order("distance", 3, transformed=transformed, new=new, metric="cosine").tolist() == [1, 0, 2]


def test_unknown_order_is_refused():
    with pytest.raises(ValueError, match="order"):
        backfill_order("alphabetical", 3)


def test_perfect_transformation_gives_a_flat_curve():
    new, labels = clustered()
    order = backfill_order("random", len(labels), seed=3)
    result = backfill_curve(new, labels, new.copy(), new, labels, order, steps=6, exclude_self=True)
    for key, values in result["curves"].items():
        assert max(values) - min(values) < 1e-12, key
    assert result["fractions"] == pytest.approx([i / 6 for i in range(7)])


def test_endpoints_are_new_to_transformed_and_new_to_new():
    new, labels = clustered(seed=1)
    transformed = new + np.random.default_rng(2).normal(size=new.shape).astype(np.float32) * 2.0
    order = backfill_order("random", len(labels), seed=0)
    result = backfill_curve(new, labels, transformed, new, labels, order, steps=4, metric="l2", exclude_self=True)
    first = retrieval_metrics(torch.from_numpy(new), labels, torch.from_numpy(transformed), labels, metric="l2",
                              exclude_self=True)
    last = retrieval_metrics(torch.from_numpy(new), labels, torch.from_numpy(new), labels, metric="l2",
                             exclude_self=True)
    for key in ("top1", "top5", "mAP"):
        assert result["curves"][key][0] == first[key] and result["curves"][key][-1] == last[key]


def test_each_step_measures_the_gallery_with_the_first_items_of_the_order_backfilled():
    new, labels = clustered(seed=4)
    transformed = np.random.default_rng(5).normal(size=new.shape).astype(np.float32)
    order = backfill_order("random", len(labels), seed=7)
    result = backfill_curve(new, labels, transformed, new, labels, order, steps=5, exclude_self=True)
    assert result["backfilled"] == cutoffs(len(labels), 5).tolist()
    for step, cut in enumerate(result["backfilled"]):
        gallery = transformed.copy()
        gallery[order[:cut]] = new[order[:cut]]
        expected = retrieval_metrics(torch.from_numpy(new), labels, torch.from_numpy(gallery), labels,
                                     exclude_self=True)
        assert result["curves"]["mAP"][step] == pytest.approx(expected["mAP"], abs=1e-12)


def test_curve_rises_monotonically_when_each_backfilled_item_helps():
    # Classes on orthogonal axes; the transformation sends every item to the opposite pole of its class,
    # so an unfilled positive scores -1 (below every negative) and a backfilled one +1 (above them).
    labels = np.repeat(np.arange(3), 4)
    new = np.eye(3, dtype=np.float32)[labels]
    transformed = -new
    order = backfill_order("random", len(labels), seed=0)
    curve = backfill_curve(new, labels, transformed, new, labels, order, steps=12, exclude_self=True)["curves"]["mAP"]
    assert all(b >= a for a, b in zip(curve, curve[1:], strict=False))
    assert curve[0] < 0.5 and curve[-1] == 1.0


def test_shape_and_order_checks():
    new, labels = clustered()
    with pytest.raises(ValueError, match="same shape"):
        backfill_curve(new, labels, new[:, :2], new, labels, np.arange(len(labels)))
    with pytest.raises(ValueError, match="permutation"):
        backfill_curve(new, labels, new, new, labels, np.zeros(len(labels), dtype=int))


def test_area_under_the_curve_by_hand():
    auc = area_under_curves([0.0, 0.25, 0.5, 1.0], {"top1": [0.2, 0.4, 0.4, 1.0], "mAP": [1.0, 1.0, 1.0, 1.0]})
    assert auc["mean"]["top1"] == pytest.approx(0.5)  # (0.2 + 0.4 + 0.4 + 1.0) / 4
    # trapezoids: 0.25 (0.2 + 0.4)/2 + 0.25 (0.4 + 0.4)/2 + 0.5 (0.4 + 1.0)/2 = 0.075 + 0.1 + 0.35
    assert auc["trapezoid"]["top1"] == pytest.approx(0.525)
    assert auc["mean"]["mAP"] == auc["trapezoid"]["mAP"] == pytest.approx(1.0)
