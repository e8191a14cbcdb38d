"""Top-k retrieval metrics for galleries too large to rank in full: exact k-nearest-neighbour search with
faiss over blocks of a (memory-mapped) gallery, then CMC top-1 / top-k and mAP@k from the k results.

Conventions:

* ``topK`` is CMC top-K: the fraction of queries with a positive among their first K results. It is the
  number metric-learning papers call Recall@K.
* ``mAP@K`` follows the Google Landmarks v2 convention: AP@K = sum over the first K results of
  P(i) rel(i), divided by min(number of positives, K).
* Queries without a positive in the gallery are left out, as in :func:`compat_core.metrics.retrieval_metrics`.
* Ties are broken by faiss (not pessimistically, unlike the exact full ranking).

Example:
    >>> import numpy as np
    >>> g = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], np.float32)
    >>> r = topk_retrieval(g, np.array([0, 0, 1]), g, np.array([0, 0, 1]), k=2, exclude_self=True)
    >>> r["top1"], r["n_query_with_positive"]  # query 2 has no other item of its class
    (1.0, 2)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: Gallery rows converted (float32, normalised) and searched at a time: 128 MiB at d = 128.
BLOCK_ROWS = 2**18


def gallery_blocks(gallery: np.ndarray, metric: str, rows: int = BLOCK_ROWS) -> Iterator[np.ndarray]:
    """The gallery as float32 blocks ready for faiss (L2-normalised for ``cosine``); a memory map is read one
    block at a time."""
    for start in range(0, len(gallery), rows):
        yield prepare(gallery[start:start + rows], metric)


def prepare(vectors: np.ndarray, metric: str) -> np.ndarray:
    """float32, contiguous, and L2-normalised for the cosine metric (searched by inner product)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    return vectors


def exact_knn(query: np.ndarray, gallery: np.ndarray, k: int, metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """Scores and gallery rows of every query's ``k`` nearest items, exact, the gallery read block by block.

    Rows are -1 (and scores -inf or inf) where the gallery has fewer than ``k`` items.
    """
    import faiss
    from faiss.contrib.exhaustive_search import knn_ground_truth

    kind = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    return knn_ground_truth(prepare(query, metric), gallery_blocks(gallery, metric), k, metric_type=kind)


def scores_from_hits(hits: np.ndarray, n_pos: np.ndarray, k: int) -> dict:
    """CMC top-1 / top-k and mAP@k from ``hits`` (Q, k: result i is a positive) and each query's positives.

    Example:
        >>> scores_from_hits(np.array([[False, True], [True, False]]), np.array([1, 3]), 2)["mAP@2"]
        0.5
    """
    ranks = np.arange(1, hits.shape[1] + 1)
    precision = np.cumsum(hits, axis=1) / ranks
    answered = n_pos > 0
    ap = (precision * hits).sum(1) / np.maximum(np.minimum(n_pos, k), 1)
    if not answered.any():
        return {**{f"top{r}": None for r in sorted({1, 5, k}) if r <= k}, f"mAP@{k}": None,
                "n_query_with_positive": 0}
    cmc = {f"top{r}": float(hits[answered, :r].any(1).mean()) for r in sorted({1, 5, k}) if r <= k}
    return {**cmc, f"mAP@{k}": float(ap[answered].mean()), "n_query_with_positive": int(answered.sum())}


def topk_retrieval(query: np.ndarray, query_labels: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray,
                   *, k: int = 100, metric: str = "cosine", exclude_self: bool = False) -> dict:
    """Top-``k`` metrics of ``query`` against ``gallery`` (see the module docstring).

    Args:
        query: (Q, D) query features.
        query_labels: (Q,) integer labels.
        gallery: (G, D) gallery features; a ``np.memmap`` is read one block at a time.
        gallery_labels: (G,) integer labels.
        k: results per query.
        metric: ``cosine`` or ``l2``.
        exclude_self: query i is gallery item i, left out of its own results.
    """
    query_labels, gallery_labels = np.asarray(query_labels, np.int64), np.asarray(gallery_labels, np.int64)
    _, rows = exact_knn(query, gallery, k + 1 if exclude_self else k, metric)
    if exclude_self:  # drop each query's own row, keep k
        keep = rows != np.arange(len(rows))[:, None]
        rows = np.stack([row[mask][:k] for row, mask in zip(rows, keep, strict=True)])
    hits = (rows >= 0) & (gallery_labels[np.maximum(rows, 0)] == query_labels[:, None])
    classes = int(max(query_labels.max(initial=0), gallery_labels.max(initial=0))) + 1
    n_pos = np.bincount(gallery_labels, minlength=classes)[query_labels] - (1 if exclude_self else 0)
    if exclude_self:
        n_pos = n_pos + (gallery_labels[: len(query_labels)] != query_labels)  # the query was no positive
    return {**scores_from_hits(hits, n_pos, k), "k": k, "n_query": len(query_labels), "n_gallery": len(gallery_labels),
            "metric": metric}
