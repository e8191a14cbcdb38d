"""retrieval_metrics against brute-force references: sklearn AP per query and CMC from a sorted row.

The references live here, not in the library. They score in float64 numpy; the test features are
chosen so that every score is exact in float32 too (small integers for "l2"; for "cosine", integer
vectors padded to norm exactly 8 and scaled by powers of two), so ties are the same on both sides
and the comparisons can demand equality.
"""

from __future__ import annotations

import doctest
import itertools
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from compat_core.metrics import retrieval
from compat_core.metrics.retrieval import retrieval_metrics
from sklearn.metrics import average_precision_score

# ------------------------------------------------------------------------------------ references


def reference_scores(query, gallery, metric):
    q, g = np.asarray(query, np.float64), np.asarray(gallery, np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
        return q @ g.T
    return -((q * q).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2 * q @ g.T)


def first_positive_rank(is_pos, score, pessimistic=True):
    """1-based rank of the first positive after a stable sort by descending score; pessimistic
    puts negatives first among equal scores."""
    order = np.lexsort((is_pos, -score)) if pessimistic else np.argsort(-score, kind="stable")
    return int(np.flatnonzero(is_pos[order])[0]) + 1


def reference_metrics(query, query_labels, gallery, gallery_labels, metric="cosine",
                      exclude_self=False, topk=(1, 5), pessimistic=True, scores=None):
    scores = reference_scores(query, gallery, metric) if scores is None else scores
    query_labels, gallery_labels = np.asarray(query_labels), np.asarray(gallery_labels)
    aps, ranks = [], []
    for i, row in enumerate(scores):
        keep = np.ones(len(row), bool)
        if exclude_self:
            keep[i] = False
        is_pos = (gallery_labels == query_labels[i])[keep]
        if not is_pos.any():
            continue
        aps.append(average_precision_score(is_pos, row[keep]))
        ranks.append(first_positive_rank(is_pos, row[keep], pessimistic))
    ranks = np.array(ranks)
    out = {f"top{k}": float(np.mean(ranks <= k)) for k in topk}
    out.update(mAP=float(np.mean(aps)), n_query_with_positive=len(aps))
    return out


# ----------------------------------------------------------------------------------------- data

# For each n <= 64: four non-negative integers whose squares sum to n (Lagrange).
_FOUR_SQUARES = {}
for _a, _b, _c, _d in itertools.product(range(9), repeat=4):
    _FOUR_SQUARES.setdefault(_a * _a + _b * _b + _c * _c + _d * _d, (_a, _b, _c, _d))


def exact_unit_features(rng, n, d):
    """Integer vectors in [-3, 3]^d padded with 4 columns to norm exactly 8, times 2**k: their
    normalised dot products are multiples of 1/64, exact in float32 whatever the summation order."""
    x = rng.integers(-3, 4, (n, d))
    while ((x * x).sum(1) > 64).any():
        x = rng.integers(-3, 4, (n, d))
    pad = np.array([_FOUR_SQUARES[64 - s] for s in (x * x).sum(1)])
    return torch.tensor(np.concatenate([x, pad], 1) * 2.0 ** rng.integers(-3, 4, (n, 1)), dtype=torch.float32)


def integer_features(rng, n, d, span=3):
    return torch.tensor(rng.integers(-span, span + 1, (n, d)), dtype=torch.float32)


def features(rng, n, metric, d=3):
    return exact_unit_features(rng, n, d) if metric == "cosine" else integer_features(rng, n, d)


def assert_matches(result, expected, topk=(1, 5)):
    assert result["n_query_with_positive"] == expected["n_query_with_positive"]
    assert result["mAP"] == pytest.approx(expected["mAP"], abs=1e-12)
    for k in topk:
        assert result[f"top{k}"] == pytest.approx(expected[f"top{k}"], abs=1e-12), k


# -------------------------------------------------------------------------- hand-computed cases


def test_single_query_with_known_ranks():
    # l2 on 1-D features: query 0 sees gallery 1, 2, 3, 4 at ranks 1..4; positives at ranks 2 and 4.
    query, gallery = torch.tensor([[0.0]]), torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    result = retrieval_metrics(query, [7], gallery, [0, 7, 0, 7], metric="l2", topk=(1, 2, 5))
    assert result["mAP"] == pytest.approx((1 / 2 + 2 / 4) / 2)  # precision at each positive
    assert (result["top1"], result["top2"], result["top5"]) == (0.0, 1.0, 1.0)
    assert (result["n_query"], result["n_gallery"], result["n_query_with_positive"]) == (1, 4, 1)
    assert result["metric"] == "l2"


def test_single_query_ranks_one_and_three_cosine():
    query = torch.tensor([[1.0, 0.0]])
    gallery = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])  # cos 1, .6, 0, -1
    result = retrieval_metrics(query, [1], gallery, [1, 0, 1, 0])
    assert result["mAP"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert (result["top1"], result["top5"]) == (1.0, 1.0)


def test_ties_follow_sklearn_for_ap_and_are_pessimistic_for_cmc():
    # l2 scores -1, -4, -4, -9 for labels neg, pos, neg, pos: the positive ties with a negative.
    query, gallery = torch.tensor([[0.0]]), torch.tensor([[1.0], [2.0], [-2.0], [3.0]])
    result = retrieval_metrics(query, [1], gallery, [0, 1, 0, 1], metric="l2", topk=(1, 2, 3))
    # sklearn: threshold -4 holds 1 of 2 positives at precision 1/3; threshold -9 the other at 2/4.
    assert result["mAP"] == pytest.approx(0.5 * 1 / 3 + 0.5 * 2 / 4)
    assert result["mAP"] == pytest.approx(average_precision_score([0, 1, 0, 1], [-1, -4, -4, -9]))
    # The tied negative is ranked before the positive: first positive at rank 3, not 2.
    assert (result["top1"], result["top2"], result["top3"]) == (0.0, 0.0, 1.0)


def test_all_scores_equal_gives_zero_top1_and_ap_equal_to_positive_rate():
    query, gallery = torch.ones(3, 4), torch.ones(10, 4)
    gallery_labels = [0, 0, 1, 1, 2, 2, 2, 2, 2, 2]
    result = retrieval_metrics(query, [0, 1, 2], gallery, gallery_labels, topk=(1, 5, 10))
    # One threshold holding everything: AP = P / G. Every negative ties with the first positive,
    # which therefore has rank 1 + #negatives: 9, 9 and 5.
    assert result["mAP"] == pytest.approx((2 / 10 + 2 / 10 + 6 / 10) / 3)
    assert (result["top1"], result["top5"], result["top10"]) == (0.0, 1 / 3, 1.0)


def test_queries_without_positives_are_left_out():
    query = torch.tensor([[0.0], [0.0], [0.0]])
    gallery = torch.tensor([[1.0], [2.0], [3.0]])
    result = retrieval_metrics(query, [5, 9, 6], gallery, [5, 6, 6], metric="l2", topk=(1,))
    # Query 1 (label 9) has no positive; queries 0 and 2 have APs 1 and (1/2 + 2/3) / 2.
    assert result["n_query_with_positive"] == 2
    assert result["n_query"] == 3
    assert result["mAP"] == pytest.approx((1 + (1 / 2 + 2 / 3) / 2) / 2)
    assert result["top1"] == 0.5


def test_exclude_self_removes_the_query_itself():
    feats = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
    labels = [0, 0, 1, 1]
    with_self = retrieval_metrics(feats, labels, feats, labels, metric="l2", topk=(1,))
    # Every query finds itself first; query 3.0 then finds 1, 0 (negatives) and 10: AP (1 + 2/4) / 2.
    assert with_self["top1"] == 1.0
    assert with_self["mAP"] == pytest.approx((1 + 1 + 0.75 + 1) / 4)
    without = retrieval_metrics(feats, labels, feats, labels, metric="l2", exclude_self=True, topk=(1,))
    # Nearest first: query 0 -> 1 (pos); query 1 -> 0 (pos); query 3 -> 1, 0 (neg), 10 (pos): AP 1/3;
    # query 10 -> 3 (pos).
    assert without["mAP"] == pytest.approx((1 + 1 + 1 / 3 + 1) / 4)
    assert without["top1"] == 0.75


def test_exclude_self_skips_queries_whose_only_positive_is_themselves():
    feats = torch.tensor([[0.0], [1.0], [5.0]])
    result = retrieval_metrics(feats, [0, 0, 1], feats, [0, 0, 1], metric="l2", exclude_self=True)
    assert result["n_query_with_positive"] == 2
    assert result["mAP"] == 1.0


# ---------------------------------------------------------------------- against the references


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("n_classes", [1, 2, 7, 60])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_matches_references_on_random_data_with_ties(metric, n_classes, exclude_self):
    rng = np.random.default_rng([n_classes, exclude_self, metric == "l2"])
    n_query, n_gallery = 53, 53 if exclude_self else 211
    query = features(rng, n_query, metric)
    gallery = query.clone() if exclude_self else features(rng, n_gallery, metric)
    query_labels = rng.integers(0, n_classes, n_query)
    gallery_labels = query_labels.copy() if exclude_self else rng.integers(0, n_classes, n_gallery)
    expected = reference_metrics(query, query_labels, gallery, gallery_labels, metric, exclude_self, (1, 3, 5))
    for chunk_size in (None, 7):  # 7 does not divide 53
        result = retrieval_metrics(query, query_labels, gallery, gallery_labels, metric=metric,
                                   exclude_self=exclude_self, topk=(1, 3, 5), chunk_size=chunk_size)
        assert_matches(result, expected, (1, 3, 5))


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exclude_self_on_distinct_query_and_gallery_features(metric):
    # Item i of the gallery is "the same item" as query i even when the features differ (two models).
    rng = np.random.default_rng(3)
    query, gallery = features(rng, 40, metric), features(rng, 40, metric)
    labels = rng.integers(0, 4, 40)
    expected = reference_metrics(query, labels, gallery, labels, metric, exclude_self=True)
    result = retrieval_metrics(query, labels, gallery, labels, metric=metric, exclude_self=True)
    assert_matches(result, expected)


def test_queries_lacking_positives_on_random_data():
    rng = np.random.default_rng(4)
    query, gallery = features(rng, 60, "l2"), features(rng, 150, "l2")
    query_labels, gallery_labels = rng.integers(0, 12, 60), rng.integers(0, 8, 150)  # labels 8-11: none
    expected = reference_metrics(query, query_labels, gallery, gallery_labels, "l2")
    assert expected["n_query_with_positive"] < 60
    assert_matches(retrieval_metrics(query, query_labels, gallery, gallery_labels, metric="l2"), expected)


def test_distinct_scores_match_a_plain_stable_argsort():
    for seed in itertools.count():  # the first data set whose rows have no tied scores
        rng = np.random.default_rng(seed)
        query, gallery = integer_features(rng, 20, 3, span=600), integer_features(rng, 150, 3, span=600)
        if all(len(np.unique(row)) == len(row) for row in reference_scores(query, gallery, "l2")):
            break
    query_labels, gallery_labels = rng.integers(0, 5, 20), rng.integers(0, 5, 150)
    expected = reference_metrics(query, query_labels, gallery, gallery_labels, "l2", topk=(1, 5, 20),
                                 pessimistic=False)
    result = retrieval_metrics(query, query_labels, gallery, gallery_labels, metric="l2", topk=(1, 5, 20))
    assert_matches(result, expected, (1, 5, 20))
    assert expected == reference_metrics(query, query_labels, gallery, gallery_labels, "l2", topk=(1, 5, 20))


def test_l2_ranks_like_the_euclidean_distance():
    rng = np.random.default_rng(6)
    query, gallery = integer_features(rng, 25, 3), integer_features(rng, 120, 3)
    query_labels, gallery_labels = rng.integers(0, 3, 25), rng.integers(0, 3, 120)
    q, g = query.double().numpy(), gallery.double().numpy()
    distances = np.sqrt(((q[:, None, :] - g[None, :, :]) ** 2).sum(-1))
    expected = reference_metrics(query, query_labels, gallery, gallery_labels, scores=-distances)
    assert_matches(retrieval_metrics(query, query_labels, gallery, gallery_labels, metric="l2"), expected)


def test_cosine_ignores_feature_scale_and_l2_does_not():
    rng = np.random.default_rng(7)
    query, gallery = exact_unit_features(rng, 20, 3), exact_unit_features(rng, 90, 3)
    query_labels, gallery_labels = rng.integers(0, 3, 20), rng.integers(0, 3, 90)
    scale = torch.tensor(2.0 ** rng.integers(-4, 5, (90, 1)), dtype=torch.float32)
    plain = retrieval_metrics(query, query_labels, gallery, gallery_labels)
    scaled = retrieval_metrics(query, query_labels, gallery * scale, gallery_labels)
    assert scaled == plain
    l2_plain = retrieval_metrics(query, query_labels, gallery, gallery_labels, metric="l2")
    l2_scaled = retrieval_metrics(query, query_labels, gallery * scale, gallery_labels, metric="l2")
    assert l2_scaled["mAP"] != l2_plain["mAP"]


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64, 1000])
def test_chunk_size_does_not_change_the_result(chunk_size):
    rng = np.random.default_rng(8)
    query, gallery = features(rng, 50, "cosine"), features(rng, 300, "cosine")
    query_labels, gallery_labels = rng.integers(0, 6, 50), rng.integers(0, 6, 300)
    expected = reference_metrics(query, query_labels, gallery, gallery_labels)
    result = retrieval_metrics(query, query_labels, gallery, gallery_labels, chunk_size=chunk_size)
    assert_matches(result, expected)


@pytest.mark.parametrize("cells_per_positive", [0.0, 0.3, 4.0, 64.0])
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_coarse_and_fine_cell_tables_give_the_reference(monkeypatch, cells_per_positive, metric):
    # With few cells most negatives share a cell with three or more positives and take the kernel's loop
    # (0.0: one cell for the whole row); with many, nearly all take the branch-free comparisons. Both must
    # give the reference numbers.
    monkeypatch.setattr(retrieval, "CELLS_PER_POSITIVE", cells_per_positive)
    rng = np.random.default_rng(int(cells_per_positive * 10))
    query = features(rng, 70, metric, d=5) if metric == "cosine" else integer_features(rng, 70, 5, span=40)
    gallery = features(rng, 900, metric, d=5) if metric == "cosine" else integer_features(rng, 900, 5, span=40)
    query_labels, gallery_labels = rng.integers(0, 4, 70), rng.integers(0, 4, 900)
    expected = reference_metrics(query, query_labels, gallery, gallery_labels, metric, topk=(1, 5, 50))
    result = retrieval_metrics(query, query_labels, gallery, gallery_labels, metric=metric,
                               topk=(1, 5, 50), chunk_size=16)
    assert_matches(result, expected, (1, 5, 50))


def test_the_query_itself_outside_its_label_block_is_skipped():
    # exclude_self with a gallery item i whose label differs from query i's: the skipped column is a
    # negative's, not a positive's.
    rng = np.random.default_rng(12)
    query, gallery = features(rng, 60, "cosine"), features(rng, 60, "cosine")
    query_labels, gallery_labels = rng.integers(0, 3, 60), rng.integers(0, 3, 60)
    expected = reference_metrics(query, query_labels, gallery, gallery_labels, exclude_self=True)
    assert_matches(retrieval_metrics(query, query_labels, gallery, gallery_labels, exclude_self=True), expected)


def test_medium_gallery_with_many_cells():
    # Enough items per row for the cell count to grow past its floor (1024) with dense positives.
    rng = np.random.default_rng(9)
    query, gallery = integer_features(rng, 40, 6, span=60), integer_features(rng, 3000, 6, span=60)
    query_labels, gallery_labels = rng.integers(0, 2, 40), rng.integers(0, 2, 3000)
    expected = reference_metrics(query, query_labels, gallery, gallery_labels, "l2", topk=(1, 10, 100))
    result = retrieval_metrics(query, query_labels, gallery, gallery_labels, metric="l2", topk=(1, 10, 100))
    assert_matches(result, expected, (1, 10, 100))


# ------------------------------------------------------------------------------------- interface


def test_result_types_and_topk_keys():
    rng = np.random.default_rng(10)
    query, gallery = features(rng, 12, "cosine"), features(rng, 30, "cosine")
    labels_q, labels_g = rng.integers(0, 3, 12), rng.integers(0, 3, 30)
    result = retrieval_metrics(query.numpy(), labels_q.tolist(), gallery.numpy(), labels_g, topk=(3, 1, 10))
    assert set(result) == {"top1", "top3", "top10", "mAP", "n_query", "n_gallery", "n_query_with_positive",
                           "metric"}
    assert all(type(result[k]) is float for k in ("top1", "top3", "top10", "mAP"))
    assert all(type(result[k]) is int for k in ("n_query", "n_gallery", "n_query_with_positive"))
    assert 0 <= result["top1"] <= result["top3"] <= result["top10"] <= 1
    assert 0 < result["mAP"] <= 1
    assert result == retrieval_metrics(query, torch.tensor(labels_q), gallery, torch.tensor(labels_g),
                                       topk=(3, 1, 10))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(metric="dot"), "metric must be one of"),
        (dict(query=torch.zeros(3)), "non-empty"),
        (dict(gallery=torch.zeros(5, 3)), "dimensions differ"),
        (dict(query_labels=[0, 1]), "query_labels must have shape"),
        (dict(gallery_labels=np.zeros(5)), "gallery_labels must be integers"),
        (dict(query=torch.tensor([[0.0, float("nan")]] * 3)), "NaN or infinite"),
        (dict(query=torch.tensor([[0.0, 1e300]] * 3, dtype=torch.float64)), "beyond float32's range"),
        (dict(query=torch.full((3, 2), 3e19), metric="l2"), "could overflow float32"),
        (dict(topk=(0,)), "topk must be positive"),
        (dict(chunk_size=0), "chunk_size must be"),
        (dict(exclude_self=True), "exclude_self needs as many"),
        (dict(query_labels=[7, 8, 9]), "no query has a positive"),
    ],
)
def test_bad_input_raises(kwargs, message):
    args = dict(query=torch.zeros(3, 2), query_labels=[0, 1, 2], gallery=torch.zeros(5, 2),
                gallery_labels=[0, 1, 2, 0, 1])
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(args.pop("query"), args.pop("query_labels"), args.pop("gallery"),
                          args.pop("gallery_labels"), **args)


def test_docstring_examples():
    assert doctest.testmod(retrieval).failed == 0


def test_peak_memory_follows_the_chunk_budget():
    # With a 128 MiB budget the extra peak stays within twice that (plus feature copies), while the
    # full 4000 x 50000 score matrix alone would take 800 MB.
    script = textwrap.dedent("""
        import resource, torch
        from compat_core.metrics import retrieval
        retrieval.MEMORY_BUDGET_BYTES = 128 * 2**20
        torch.manual_seed(0)
        q, g = torch.randn(4000, 64), torch.randn(50000, 64)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        retrieval.retrieval_metrics(q, torch.randint(0, 100, (4000,)), g, torch.randint(0, 100, (50000,)))
        print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before_kib, after_kib = map(int, out.stdout.split())
    assert (after_kib - before_kib) * 1024 < 2 * 128 * 2**20 + 50 * 2**20


def test_importing_the_package_does_not_import_torch():
    script = "import sys, compat_core.metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_rows_with_more_positives_than_an_int16_table_holds():
    # 36,000 positives per row: the kernel's cell table switches from int16 to int32 entries.
    rng = np.random.default_rng(13)
    query, gallery = features(rng, 3, "cosine", d=6), features(rng, 40000, "cosine", d=6)
    query_labels, gallery_labels = np.array([0, 1, 0]), (rng.random(40000) < 0.1).astype(np.int64)
    expected = reference_metrics(query, query_labels, gallery, gallery_labels)
    assert_matches(retrieval_metrics(query, query_labels, gallery, gallery_labels), expected)
