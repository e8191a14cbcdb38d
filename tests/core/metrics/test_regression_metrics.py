"""Regression metrics of a classifier update, pinned against hand counts and loop implementations."""

import json

import numpy as np
import pytest
from compat_core.data.label_map import read_label_map
from compat_core.errors import CompatError
from compat_core.metrics.regression import (
    class_columns,
    flip_metrics,
    regression_report,
    topk_correct,
)

NAMES = ["a", "b", "c"]


def one_hot_logits(predictions, num_classes=3):
    logits = np.zeros((len(predictions), num_classes), np.float32)
    logits[np.arange(len(predictions)), predictions] = 5.0
    return logits


def test_flip_metrics_hand_counted():
    # sample:        0  1  2  3  4  5  6  7   (old right: 0-4; new right: 0,1,5,6)
    old_correct = np.array([1, 1, 1, 1, 1, 0, 0, 0], bool)
    new_correct = np.array([1, 1, 0, 0, 0, 1, 1, 0], bool)
    m = flip_metrics(old_correct, new_correct)
    # negative flips: 2, 3, 4 -> 3; positive flips: 5, 6 -> 2; new errors: 2, 3, 4, 7 -> 4; new right: 4
    assert m["negative_flips"] == 3 and m["positive_flips"] == 2 and m["n"] == 8
    assert m["nfr"] == pytest.approx(3 / 8) and m["pfr"] == pytest.approx(2 / 8)
    assert m["nfi"] == pytest.approx(3 / 4)  # negative flips / new errors
    assert m["pfi"] == pytest.approx(2 / 4)  # positive flips / new right
    assert m["btc"] == pytest.approx(2 / 5)  # both right (0, 1) / old right
    assert m["bec"] == pytest.approx(1 / 4)  # both wrong (7) / new errors
    assert m["old_accuracy"] == pytest.approx(5 / 8) and m["new_accuracy"] == pytest.approx(4 / 8)


def loop_reference(old_correct, new_correct):
    """The definitions written out sample by sample (Yan et al. 2021; Srivastava et al. 2020)."""
    n = len(old_correct)
    nf = sum(1 for o, w in zip(old_correct, new_correct, strict=True) if o and not w)
    pf = sum(1 for o, w in zip(old_correct, new_correct, strict=True) if w and not o)
    both_right = sum(1 for o, w in zip(old_correct, new_correct, strict=True) if o and w)
    both_wrong = sum(1 for o, w in zip(old_correct, new_correct, strict=True) if not o and not w)
    new_wrong = sum(1 for w in new_correct if not w)
    return {"nfr": nf / n, "pfr": pf / n, "nfi": nf / new_wrong, "pfi": pf / (n - new_wrong),
            "btc": both_right / sum(old_correct), "bec": both_wrong / new_wrong}


def test_flip_metrics_match_loop_definitions_on_random_predictions():
    rng = np.random.default_rng(0)
    for _ in range(5):
        old_correct, new_correct = rng.random(200) < 0.7, rng.random(200) < 0.8
        m = flip_metrics(old_correct, new_correct)
        for key, value in loop_reference(list(old_correct), list(new_correct)).items():
            assert m[key] == pytest.approx(value), key


def test_bec_is_not_backward_compatibility_mls_old_error_variant():
    # old wrong on 4 samples, new wrong on 1 of them: paper BEC = 1/1; dividing by old errors would give 1/4
    m = flip_metrics(np.array([0, 0, 0, 0, 1], bool), np.array([0, 1, 1, 1, 1], bool))
    assert m["bec"] == 1.0


def test_empty_denominators_give_zero():
    perfect = flip_metrics(np.ones(4, bool), np.ones(4, bool))
    assert perfect["nfi"] == 0.0 and perfect["bec"] == 0.0 and perfect["btc"] == 1.0
    hopeless = flip_metrics(np.zeros(3, bool), np.zeros(3, bool))
    assert hopeless["btc"] == 0.0 and hopeless["pfi"] == 0.0 and hopeless["nfi"] == 0.0
    empty = flip_metrics(np.zeros(0, bool), np.zeros(0, bool))
    assert empty["nfr"] == 0.0 and empty["n"] == 0


def test_class_columns_by_name_and_by_label_map():
    assert class_columns(["c", "x", "a"], NAMES).tolist() == [2, -1, 0]
    # with a map only the mapped classes match ({new/label class: old class})
    assert class_columns(["0", "1", "a"], NAMES, {"b": "0", "c": "1"}).tolist() == [1, 2, -1]


def test_topk_correct_matches_a_sort_and_handles_missing_classes():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(50, 6)).astype(np.float32)
    columns = np.array([0, 1, 2, 3, 4, -1])  # the last column is a class the labels lack
    labels = rng.integers(0, 7, size=50)  # label 5 and 6: the model has no column for them
    for k in (1, 2, 5):
        expected = []
        for row, label in zip(logits, labels, strict=True):
            ranked = columns[np.argsort(-row)][:k]
            expected.append(label in ranked.tolist())
        assert topk_correct(logits, columns, labels, k).tolist() == expected


def test_report_with_fewer_old_classes_adds_the_old_class_subset():
    labels = np.array([0, 0, 1, 1, 2, 2])
    old = np.array([[3, 0], [0, 3], [0, 3], [0, 3], [3, 0], [0, 3]], np.float32)  # old knows a, b only
    new = one_hot_logits([0, 0, 2, 1, 2, 0])
    r = regression_report(old, new, labels, ["a", "b"], NAMES, NAMES)
    # old right: 0, 2, 3; new right: 0, 1, 3, 4 -> negative flip 2; positive flips 1, 4
    assert r["old_accuracy"] == pytest.approx(3 / 6) and r["new_accuracy"] == pytest.approx(4 / 6)
    assert r["negative_flips"] == 1 and r["nfr"] == pytest.approx(1 / 6)
    assert r["positive_flips"] == 2
    sub = r["old_classes"]  # samples 0-3 (classes a, b)
    assert sub["n"] == 4 and sub["nfr"] == pytest.approx(1 / 4) and sub["positive_flips"] == 1
    assert sub["old_accuracy"] == pytest.approx(3 / 4) and sub["new_accuracy"] == pytest.approx(3 / 4)
    per_class = {row["class"]: row for row in r["per_class"]}
    assert per_class["b"]["negative_flips"] == 1 and per_class["c"]["old_accuracy"] == 0.0
    # top-5 with only 2 old columns: the old model can never rank class c
    assert r["old_top5"] == pytest.approx(4 / 6) and r["new_top5"] == 1.0


def test_report_same_classes_has_no_subset_and_ensemble_logits_are_plain_arrays():
    labels = np.array([0, 1, 2])
    r = regression_report(one_hot_logits([0, 1, 1]), one_hot_logits([0, 2, 2]), labels, NAMES, NAMES, NAMES)
    assert r["old_classes"] is None
    assert r["nfr"] == pytest.approx(1 / 3) and r["pfr"] == pytest.approx(1 / 3)


def test_report_errors_are_user_errors():
    with pytest.raises(CompatError, match="rows"):
        regression_report(np.zeros((3, 3)), np.zeros((4, 3)), np.zeros(3, int), NAMES, NAMES, NAMES)
    with pytest.raises(CompatError, match="share no name"):
        regression_report(np.zeros((2, 2)), np.zeros((2, 3)), np.zeros(2, int), ["x", "y"], NAMES, NAMES)


def test_report_with_label_map_matches_old_names(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"a": "x", "b": "y"}))
    mapping = read_label_map(path, NAMES, ["x", "y"], one_to_one=True)
    r = regression_report(one_hot_logits([0, 1], 2), one_hot_logits([0, 0]), np.array([0, 1]), ["x", "y"], NAMES,
                          NAMES, label_map=mapping)
    assert r["old_accuracy"] == 1.0 and r["negative_flips"] == 1


@pytest.mark.parametrize("content, fragment", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"zebra": "x"}', "new class 'zebra'"),
    ('{"a": "nope"}', "old class 'nope'"),
    ('{"a": "x", "b": "x"}', "several new classes"),
])
def test_bad_label_maps(tmp_path, content, fragment):
    path = tmp_path / "map.json"
    path.write_text(content)
    with pytest.raises(CompatError, match=fragment):
        read_label_map(path, NAMES, ["x", "y"], one_to_one=True)
    with pytest.raises(CompatError, match="no such file"):
        read_label_map(tmp_path / "missing.json", NAMES, ["x"])


def test_regression_report_refuses_a_new_model_that_shares_no_class_with_the_labels():
    import numpy as np
    import pytest
    from compat_core.errors import CompatError
    from compat_core.metrics.regression import regression_report

    logits = np.eye(2, dtype=np.float32)
    with pytest.raises(CompatError, match="new model's classes"):
        regression_report(logits, logits, np.array([0, 1]), ["a", "b"], ["x", "y"], ["a", "b"])
