"""retrieval_between: leave-one-out modes, the old-classes / new-classes split, run labels.

Expected values are worked out by hand in angle_features.py.
"""

import numpy as np
import pytest
import torch
from angle_features import NEW, OLD, angle_set
from compat_core.errors import CompatError
from compat_core.evaluators.retrieval import per_query_retrieval, retrieval_between, run_labels, summarize
from compat_core.features import FeatureSet, load, save
from compat_core.metrics.retrieval import retrieval_metrics


def test_same_object_leaves_each_query_out():
    old = angle_set(OLD)
    result = retrieval_between(old, old)
    assert result["leave_one_out"] is True
    assert result["top1"] == pytest.approx(5 / 8) and result["mAP"] == pytest.approx(37 / 48)
    assert result["top5"] == 1.0 and result["n_query"] == result["n_gallery"] == 8
    assert "by_group" not in result  # no model classes recorded


def test_leave_one_out_off_lets_every_query_find_itself():
    old = angle_set(OLD)
    result = retrieval_between(old, old, leave_one_out="off")
    assert result["leave_one_out"] is False and result["top1"] == 1.0


def test_same_provenance_leaves_out_across_models():
    result = retrieval_between(angle_set(NEW), angle_set(OLD))
    assert result["leave_one_out"] is True
    assert result["top1"] == pytest.approx(7 / 8) and result["mAP"] == pytest.approx(45 / 48)


def test_copies_without_provenance_are_not_left_out_but_warned_about(capsys):
    query, gallery = angle_set(OLD, data=""), angle_set(OLD, data="")
    result = retrieval_between(query, gallery)
    err = capsys.readouterr().err
    assert result["leave_one_out"] is False and result["top1"] == 1.0
    assert len(err.strip().splitlines()) == 1 and "--leave-one-out on" in err
    forced = retrieval_between(query, gallery, leave_one_out="on")
    assert forced["leave_one_out"] is True and forced["top1"] == pytest.approx(5 / 8)


def test_different_images_are_not_warned_about(capsys):
    query = angle_set(OLD, data="")
    gallery = FeatureSet(query.features[:6], query.labels[:6], query.index[:6])
    assert retrieval_between(query, gallery)["leave_one_out"] is False
    assert capsys.readouterr().err == ""


def test_leave_one_out_on_needs_the_same_rows():
    query = angle_set(OLD, data="")
    shorter = FeatureSet(query.features[:6], query.labels[:6], query.index[:6])
    with pytest.raises(CompatError, match=r"--leave-one-out on .* 8 rows and the gallery 6"):
        retrieval_between(query, shorter, leave_one_out="on")
    shuffled = angle_set(OLD, data="")
    shuffled.index = shuffled.index[::-1].copy()
    with pytest.raises(CompatError, match="index differ first at row 0"):
        retrieval_between(query, shuffled, leave_one_out="on")
    with pytest.raises(CompatError, match="leave_one_out must be one of"):
        retrieval_between(query, query, leave_one_out="yes")


def test_by_group_splits_queries_by_the_gallery_model_classes():
    # the old model saw a and b: a1 a2 b1 hit and b2 misses (AP 1/2); c1 c2 miss (AP 1/3), d1 d2 hit
    query, gallery = angle_set(OLD), angle_set(OLD, model_classes=["a", "b"])
    result = retrieval_between(query, gallery)
    assert result["top1"] == pytest.approx(5 / 8)  # all queries: unchanged
    old, new = result["by_group"]["old_classes"], result["by_group"]["new_classes"]
    assert old == {"top1": pytest.approx(3 / 4), "top5": 1.0, "mAP": pytest.approx(3.5 / 4), "n_query": 4,
                   "n_query_with_positive": 4}
    assert new == {"top1": pytest.approx(1 / 2), "top5": 1.0, "mAP": pytest.approx((2 + 2 / 3) / 4),
                   "n_query": 4, "n_query_with_positive": 4}


def test_by_group_of_a_cross_test_follows_the_gallery_model():
    # new queries against the old gallery: a b all hit; c2 misses (AP 1/2), c1 d1 d2 hit
    new, old = angle_set(NEW, model_classes="abcd"), angle_set(OLD, model_classes=["a", "b"])
    groups = retrieval_between(new, old)["by_group"]
    assert groups["old_classes"]["top1"] == 1.0 and groups["old_classes"]["mAP"] == 1.0
    assert groups["new_classes"]["top1"] == pytest.approx(3 / 4)
    assert groups["new_classes"]["mAP"] == pytest.approx(3.5 / 4)
    # the gallery model (new) saw every class: nothing to split
    assert "by_group" not in retrieval_between(old, new)


def test_by_group_matches_class_names_not_label_numbers():
    query = angle_set(OLD)
    query.classes = ["d", "c", "b", "a"]  # label 0 is now class d
    gallery = angle_set(OLD, model_classes=["a", "b"])
    groups = retrieval_between(query, gallery)["by_group"]
    assert groups["old_classes"]["top1"] == pytest.approx(1 / 2)  # labels 2, 3 (c, d above)
    assert groups["new_classes"]["top1"] == pytest.approx(3 / 4)  # labels 0, 1 (a, b above)


def test_group_without_answerable_queries_has_no_metrics():
    ap, rank = np.array([1.0, np.nan]), np.array([0, 2])
    assert summarize(ap, rank, np.array([False, True])) == {
        "top1": None, "top5": None, "mAP": None, "n_query": 1, "n_query_with_positive": 0}


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_per_query_values_average_to_retrieval_metrics(metric, exclude_self):
    rng = np.random.default_rng(3)
    features = rng.integers(-3, 4, size=(60, 5)).astype(np.float32)
    labels = rng.integers(0, 6, size=60)
    ap, rank = per_query_retrieval(features, labels, features, labels, metric=metric, exclude_self=exclude_self)
    ours = summarize(ap, rank)
    theirs = retrieval_metrics(torch.from_numpy(features), labels, torch.from_numpy(features), labels,
                               metric=metric, exclude_self=exclude_self)
    for key in ("top1", "top5", "mAP", "n_query", "n_query_with_positive"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12), key


def test_model_classes_survive_a_feature_file(tmp_path):
    path = save(tmp_path / "f.npz", angle_set(OLD, model_classes=["a", "b"]))
    assert load(path).model_classes == ["a", "b"]
    np.savez(tmp_path / "old.npz", features=angle_set(OLD).features, labels=angle_set(OLD).labels)
    assert load(tmp_path / "old.npz").model_classes == []  # files written before: no split


def test_run_labels_are_basenames_disambiguated_by_parent():
    assert run_labels(["runs/old", "runs/new/", "feats/new-bct.npz"]) == ["old", "new", "new-bct"]
    assert run_labels(["a/old", "b/old.npz", "c"]) == ["a/old", "b/old", "c"]
    assert run_labels(["a/old", "b/old"], {"a/old": "first"}) == ["first", "old"]
    with pytest.raises(CompatError, match="--label"):
        run_labels(["x/a/old", "y/a/old"])
    with pytest.raises(CompatError, match="--label"):
        run_labels(["a/old", "b/new"], {"a/old": "same", "b/new": "same"})
