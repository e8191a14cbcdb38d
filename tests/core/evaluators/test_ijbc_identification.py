"""1:N metrics on hand-made score matrices: rank-1 strictness, top-k with ties, TPIR thresholds,
the mean over galleries and the merged closed-set search."""

import numpy as np
import pytest
from compat_core.evaluators.ijbc.identification import (
    closed_set_metrics,
    mean_metrics,
    open_set_metrics,
    search_stats,
)


def unit_rows(scores):
    """Probe/gallery features whose dot products are exactly ``scores`` (gallery = identity basis)."""
    scores = np.asarray(scores, np.float32)
    return scores, np.eye(scores.shape[1], dtype=np.float32)


def test_tie_with_an_impostor_is_not_rank_one():
    probes, gallery = unit_rows([[0.5, 0.5, 0.1],   # mate (col 0) tied with col 1: not rank-1, but top-5
                                 [0.6, 0.2, 0.7],   # mate col 1 is third: rank 3
                                 [0.9, 0.1, 0.2]])  # mate col 2 beaten by col 0
    mated, mate, others, best = search_stats(probes, np.array([10, 11, 12]), gallery, np.array([10, 11, 12]))
    assert mated.all() and others.tolist() == [1, 2, 1]
    metrics = open_set_metrics(mated, mate, others, best)
    assert metrics["top1"] == 0.0 and metrics["top5"] == 1.0 and metrics["hits"]["top1"] == 0


def test_tpir_uses_the_non_mated_best_scores_and_strict_threshold():
    # gallery subjects 1, 2; probes of subjects 1, 2 (mated) and 7, 8, 9, 6 (non-mated)
    probes, gallery = unit_rows([[0.9, 0.1], [0.3, 0.6], [0.8, 0.2], [0.1, 0.6], [0.4, 0.3], [0.2, 0.2]])
    stats = search_stats(probes, np.array([1, 2, 7, 8, 9, 6]), gallery, np.array([1, 2]))
    mated, mate, others, best = stats
    assert mated.tolist() == [True, True, False, False, False, False]
    assert mate[:2].tolist() == pytest.approx([0.9, 0.6]) and best[2:].tolist() == pytest.approx([0.8, 0.6, 0.4, 0.2])
    metrics = open_set_metrics(*stats)
    # non-mated best scores sorted: 0.8, 0.6, 0.4, 0.2; index max(int(4 f) - 1, 0)
    assert metrics["thresholds"] == pytest.approx({"1e-04": 0.8, "1e-03": 0.8, "1e-02": 0.8, "1e-01": 0.8,
                                                   "1e+00": 0.2})
    # threshold 0.8: only the 0.9 mate is above it; threshold 0.2 (FPIR 1.0): both mates are
    assert metrics["tpir_at_fpir"] == {"1e-04": 0.5, "1e-03": 0.5, "1e-02": 0.5, "1e-01": 0.5, "1e+00": 1.0}
    assert metrics["n_mated"] == 2 and metrics["n_nonmated"] == 4


def test_tpir_needs_rank_one_and_a_score_strictly_above():
    probes, gallery = unit_rows([[0.7, 0.9], [0.5, 0.1], [0.5, 0.0]])
    stats = search_stats(probes, np.array([1, 1, 5]), gallery, np.array([1, 2]))
    metrics = open_set_metrics(*stats)
    # probe 0 is not rank-1 (0.9 > 0.7): never counts; probe 1 ties the threshold 0.5: not above
    assert metrics["thresholds"]["1e+00"] == pytest.approx(0.5)
    assert metrics["tpir_at_fpir"]["1e+00"] == 0.0 and metrics["top1"] == 0.5


def test_mean_and_merged():
    g1 = {"hits": {"top1": 3, "top5": 5, "top10": 5}, "tpir_at_fpir": {"1e-01": 0.2, "1e+00": None}}
    g2 = {"hits": {"top1": 4, "top5": 4, "top10": 5}, "tpir_at_fpir": {"1e-01": 0.6, "1e+00": 1.0}}
    mean = mean_metrics(g1, g2, 10)
    assert mean["top1"] == 0.7 and mean["top5"] == 0.9 and mean["top10"] == 1.0
    assert mean["tpir_at_fpir"] == {"1e-01": pytest.approx(0.4), "1e+00": None}
    merged = closed_set_metrics(np.array([True, True, True, False]), np.array([0, 4, 9, -1]))
    assert (merged["top1"], merged["top5"], merged["top10"]) == (0.25, 0.5, 0.75) and merged["n_unmated"] == 1


def test_search_stats_match_a_per_probe_loop():
    rng = np.random.default_rng(2)
    gallery = rng.normal(size=(40, 6)).astype(np.float32)
    probes = rng.normal(size=(300, 6)).astype(np.float32)
    gallery_subjects = rng.permutation(1000)[:40]
    probe_subjects = np.where(rng.random(300) < 0.5, rng.choice(gallery_subjects, 300), 5000 + np.arange(300))
    mated, mate, others, best = search_stats(probes, probe_subjects, gallery, gallery_subjects)
    for i in range(300):
        scores = gallery @ probes[i]
        assert best[i] == pytest.approx(scores.max(), abs=1e-5)
        hit = np.flatnonzero(gallery_subjects == probe_subjects[i])
        assert mated[i] == bool(len(hit))
        if len(hit):
            rest = np.delete(scores, hit[0])
            assert others[i] == np.count_nonzero(rest >= mate[i])
