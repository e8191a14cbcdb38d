"""Top-k metrics through faiss over a blocked, memory-mapped gallery, against a brute-force reference."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_runner import compat
from compat_core.features import FeatureSet, load, save
from compat_core.metrics import topk

pytest.importorskip("faiss")


def reference(query, query_labels, gallery, gallery_labels, k, metric, exclude_self):
    q, g = query.astype(np.float64), gallery.astype(np.float64)
    if metric == "cosine":
        q, g = q / np.linalg.norm(q, axis=1, keepdims=True), g / np.linalg.norm(g, axis=1, keepdims=True)
        score = q @ g.T
    else:
        score = -((q[:, None] - g[None]) ** 2).sum(-1)
    if exclude_self:
        np.fill_diagonal(score, -np.inf)
    rows = np.argsort(-score, axis=1, kind="stable")[:, :k]
    hits = gallery_labels[rows] == query_labels[:, None]
    n_pos = (gallery_labels[None, :] == query_labels[:, None]).sum(1) - (1 if exclude_self else 0)
    answered = n_pos > 0
    ap = np.array([sum(hits[i, :j + 1].sum() / (j + 1) for j in range(k) if hits[i, j]) / min(n_pos[i], k)
                   if n_pos[i] else np.nan for i in range(len(hits))])
    return {"top1": hits[answered, 0].mean(), f"top{k}": hits[answered].any(1).mean(),
            f"mAP@{k}": np.nanmean(ap[answered]), "n_query_with_positive": int(answered.sum())}


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_blocked_search_equals_brute_force(metric, exclude_self, monkeypatch):
    monkeypatch.setattr(topk, "BLOCK_ROWS", 37)  # several blocks, the last one short
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(300, 16)).astype(np.float32)
    labels = rng.integers(0, 7, 300)
    query, query_labels = (gallery, labels) if exclude_self else (rng.normal(size=(40, 16)).astype(np.float32),
                                                                  rng.integers(0, 8, 40))
    result = topk.topk_retrieval(query, query_labels, gallery, labels, k=10, metric=metric,
                                 exclude_self=exclude_self)
    expected = reference(query, query_labels, gallery, labels, 10, metric, exclude_self)
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-9), key


def test_memory_mapped_float16_gallery_from_a_feature_file(tmp_path):
    rng = np.random.default_rng(1)
    feats = FeatureSet(rng.normal(size=(500, 8)).astype(np.float32), rng.integers(0, 5, 500), np.arange(500),
                       data="toy", split="test", classes=list("abcde"))
    save(tmp_path / "g.npz", feats, fp16=True)
    mapped = load(tmp_path / "g.npz", mmap=True)
    assert isinstance(mapped.features, np.memmap) and mapped.features.dtype == np.float16
    in_memory = load(tmp_path / "g.npz")
    a = topk.topk_retrieval(in_memory.features, feats.labels, mapped.features, feats.labels, k=5, exclude_self=True)
    b = topk.topk_retrieval(in_memory.features, feats.labels, in_memory.features, feats.labels, k=5,
                            exclude_self=True)
    assert a == b


def test_a_nan_in_a_mapped_gallery_is_refused(tmp_path):
    from compat_core.errors import CompatError

    values = np.ones((10, 4), np.float32)
    values[7, 2] = np.nan
    save(tmp_path / "bad.npz", FeatureSet(values, np.zeros(10, np.int64), np.arange(10)))
    with pytest.raises(CompatError, match="NaN or infinite values in 1 of 10 rows"):
        load(tmp_path / "bad.npz", mmap=True)


def test_cli_topk_only_agrees_with_the_exact_ranking_on_top1(tmp_path):
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(6, 12))
    labels = rng.integers(0, 6, 400)
    feats = FeatureSet((centres[labels] + rng.normal(size=(400, 12))).astype(np.float32), labels, np.arange(400),
                       data="toy", split="test", classes=[str(c) for c in range(6)])
    save(tmp_path / "f.npz", feats)
    compat("eval", "retrieval", "--query", tmp_path / "f.npz", "--gallery", tmp_path / "f.npz", "--topk-only", "20",
           "--json", tmp_path / "topk.json")
    compat("eval", "retrieval", "--query", tmp_path / "f.npz", "--gallery", tmp_path / "f.npz", "--json",
           tmp_path / "full.json")
    fast, full = json.loads((tmp_path / "topk.json").read_text()), json.loads((tmp_path / "full.json").read_text())
    assert fast["leave_one_out"] and fast["k"] == 20 and set(fast) >= {"top1", "top5", "top20", "mAP@20"}
    assert fast["top1"] == pytest.approx(full["top1"]) and fast["top5"] == pytest.approx(full["top5"])
