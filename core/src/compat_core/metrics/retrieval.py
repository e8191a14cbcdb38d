"""Exact retrieval metrics (CMC top-k and mAP) of a query set against a gallery, in bounded memory.

Protocol (as in OpenBCT and ml-fct): every query is ranked against the whole gallery by a score, and a
gallery item is a *positive* of a query when it carries the query's label.

* ``metric="cosine"``: features are L2-normalised and the score is their dot product.
* ``metric="l2"``: the score is minus the squared euclidean distance, ``-(|q|^2 + |g|^2 - 2 q.g)``
  (the same ranking as the euclidean distance).
* ``exclude_self=True``: query ``i`` and gallery item ``i`` are the same item, which is removed from
  query ``i``'s gallery.
* Queries with no positive in their gallery are left out: CMC and mAP average over the other
  ``n_query_with_positive`` queries.
* mAP: the per-query AP is exactly ``sklearn.metrics.average_precision_score(is_positive, score)``,
  ties included: ``AP = 1/P * sum over positives p of #(positives >= s_p) / #(items >= s_p)``.
* CMC top-k: a query is a hit at ``k`` when its first positive has rank ``<= k``, where that rank is
  ``1 + #(negatives scoring >= the best positive)``. Ties are pessimistic: a negative that scores
  exactly as much as the best positive is ranked before it, so degenerate features (all scores
  equal) give top-1 = 0, not 1. With distinct scores this is the rank a plain descending sort gives.

Algorithm: scores are computed one chunk of query rows at a time (one matrix product, with torch),
and no row is sorted: a compiled kernel (:mod:`compat_core.metrics.ranking_kernel`) sorts each row's
positives only and counts, in one pass over the row, how many negatives score at least each of them:
all that AP and CMC need. The cost on top of the matrix product is linear in its size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from compat_core.errors import CompatError
from compat_core.progress import track

METRICS = ("cosine", "l2")

#: Working memory for one chunk of query rows when ``chunk_size`` is None.
MEMORY_BUDGET_BYTES = 2**30

#: Cells of the kernel's lookup table per positive of a row: more cells, fewer positives to compare
#: a negative with (a cell holding more than two takes a loop), but a bigger table. 6 was the fastest
#: of 3, 4, 6 and 8 at 100,000 columns with 10, 100 and 1,000 classes (bench/retrieval.py's data).
CELLS_PER_POSITIVE = 6.0


class FeatureRangeError(CompatError, ValueError):
    """Finite features whose float32 scores would not be: a ValueError for library callers, and bad input
    that the CLI reports in one paragraph (exit code 2) when it comes from a user's feature file."""


def retrieval_metrics(
    query: torch.Tensor,
    query_labels: torch.Tensor | np.ndarray | Sequence[int],
    gallery: torch.Tensor,
    gallery_labels: torch.Tensor | np.ndarray | Sequence[int],
    *,
    metric: str = "cosine",
    exclude_self: bool = False,
    topk: Sequence[int] = (1, 5),
    chunk_size: int | None = None,
) -> dict:
    """CMC top-k and mAP of ``query`` retrieving from ``gallery`` (see the module docstring).

    Args:
        query: ``(Q, D)`` query features.
        query_labels: ``(Q,)`` integer labels of the queries.
        gallery: ``(G, D)`` gallery features, from the same or another model (cross-model retrieval).
        gallery_labels: ``(G,)`` integer labels of the gallery items.
        metric: ``"cosine"`` or ``"l2"``.
        exclude_self: query ``i`` is gallery item ``i`` and is not retrieved by itself (needs Q == G).
        topk: the ranks ``k`` to report as ``"top{k}"``.
        chunk_size: query rows scored at a time; None picks it from :data:`MEMORY_BUDGET_BYTES`.

    Returns:
        ``{"top1": float, "top5": float, "mAP": float, "n_query": int, "n_gallery": int,
        "n_query_with_positive": int, "metric": str}``, rates as fractions in [0, 1] averaged over
        the queries that have at least one positive; one ``"top{k}"`` key per entry of ``topk``.

    Raises:
        ValueError: bad shapes, labels, metric, ``topk`` or ``chunk_size``, ``exclude_self`` with Q != G,
            or no query with a positive in the gallery; :class:`FeatureRangeError` (a ValueError and a
            CompatError) for non-finite features and l2 scores that could overflow float32.

    Example:
        >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> g = torch.tensor([[1.0, 0.1], [0.1, 1.0], [1.0, -0.2]])
        >>> r = retrieval_metrics(q, [0, 1], g, [0, 1, 1], topk=(1,))
        >>> r["top1"], round(r["mAP"], 4)  # query 1 finds its positives at ranks 1 and 3
        (1.0, 0.9167)
    """
    ks = _check_topk(topk)
    ap, negatives_before = per_query_ranks(query, query_labels, gallery, gallery_labels, metric=metric,
                                           exclude_self=exclude_self, chunk_size=chunk_size)
    answered = ~torch.isnan(ap)
    n_answered = int(answered.sum())
    if n_answered == 0:
        raise ValueError("no query has a positive (a gallery item with its label) in the gallery")
    result = {f"top{k}": float((negatives_before[answered] < k).double().mean()) for k in ks}
    result.update({"mAP": float(ap[answered].mean()), "n_query": len(query), "n_gallery": len(gallery),
                   "n_query_with_positive": n_answered, "metric": metric})
    return result


def per_query_ranks(
    query: torch.Tensor,
    query_labels: torch.Tensor | np.ndarray | Sequence[int],
    gallery: torch.Tensor,
    gallery_labels: torch.Tensor | np.ndarray | Sequence[int],
    *,
    metric: str = "cosine",
    exclude_self: bool = False,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query: its average precision (NaN without a positive) and the number of negatives ranked
    before its first positive (a top-k hit when < k): the values :func:`retrieval_metrics` averages.

    Averages over any subset of queries (the classes an old model saw, say) come from one search.
    Arguments and errors are those of :func:`retrieval_metrics`.

    Example:
        >>> f = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
        >>> ap, before = per_query_ranks(f, [0, 0, 1], f, [0, 0, 1], exclude_self=True)
        >>> before.tolist(), ap.isnan().tolist()  # query 2 has no other item of its class
        ([0, 0, 3], [False, False, True])
    """
    query, gallery = _check_features(query, gallery, metric)
    query_labels = _check_labels(query_labels, len(query), "query_labels")
    gallery_labels = _check_labels(gallery_labels, len(gallery), "gallery_labels")
    if exclude_self and len(query) != len(gallery):
        raise ValueError(f"exclude_self needs as many queries as gallery items, got {len(query)} and "
                         f"{len(gallery)}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    with torch.inference_mode():
        return _rank_all_queries(query, query_labels, gallery, gallery_labels, metric, exclude_self, chunk_size)


# ----------------------------------------------------------------------------------------- inputs


def _check_features(query, gallery, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    checked = []
    for name, x in (("query", query), ("gallery", gallery)):
        x = torch.as_tensor(x)
        if x.dim() != 2 or len(x) == 0:
            raise ValueError(f"{name} must be a non-empty (N, D) matrix, got shape {tuple(x.shape)}")
        # float32 on purpose: the matrix product dominates the cost and float32 is what models emit.
        x = x.float()
        if not torch.isfinite(x).all():
            raise FeatureRangeError(f"{name} has NaN or infinite features (or values beyond float32's range); "
                                    "check the model that made them, or rescale them")
        checked.append(x)
    query, gallery = checked
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query and gallery dimensions differ: {query.shape[1]} != {gallery.shape[1]}")
    if query.device != gallery.device:
        raise ValueError(f"query and gallery are on different devices: {query.device}, {gallery.device}")
    if metric == "l2":
        # |score| <= (max |q| + max |g|)^2 <= D (max |q_i| + max |g_i|)^2: beyond float32's range the scores
        # would be inf or NaN, which no ranking survives (aminmax: no copy of a large gallery).
        q_max, g_max = (float(max(-low, high)) for low, high in (torch.aminmax(query), torch.aminmax(gallery)))
        if not query.shape[1] * (q_max + g_max) ** 2 < float(torch.finfo(torch.float32).max):
            raise FeatureRangeError(f"l2 scores of features this large (coordinates up to {q_max:.3g} in the "
                                    f"query and {g_max:.3g} in the gallery) could overflow float32; rescale "
                                    "the features, or use the cosine metric")
    return query, gallery


def _check_labels(labels, n: int, name: str) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        array = np.asarray(labels)
        if array.dtype.kind not in "iu":
            raise ValueError(f"{name} must be integers, got {array.dtype}")
        labels = torch.as_tensor(array)
    if labels.dim() != 1 or len(labels) != n:
        raise ValueError(f"{name} must have shape ({n},), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be integers, got {labels.dtype}")
    return labels.to(torch.int64).cpu()


def _check_topk(topk: Sequence[int]) -> list[int]:
    ks = list(topk)
    if not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1 for k in ks):
        raise ValueError(f"topk must be positive ints, got {topk!r}")
    return [int(k) for k in ks]


# ------------------------------------------------------------------------------------ the driver


@dataclass
class _Positives:
    """Where each query's positives are, with the gallery sorted by label (a contiguous block).

    Attributes:
        start: ``(Q,)`` first column of the query's label block in the sorted gallery.
        count: ``(Q,)`` block length (0 when the label is not in the gallery).
        skip: ``(Q,)`` column of the query itself (``exclude_self``), or None.
        n_pos: ``(Q,)`` positives per query once the query itself is skipped.
    """

    start: torch.Tensor
    count: torch.Tensor
    skip: torch.Tensor | None
    n_pos: torch.Tensor


def _rank_all_queries(query, query_labels, gallery, gallery_labels, metric, exclude_self, chunk_size):
    """Per query: AP (NaN without positives) and #negatives ranked before its first positive."""
    from compat_core.metrics import ranking_kernel

    # Sorting the gallery by label turns each query's positives into one block of columns, so they
    # are found by arithmetic instead of a (Q, G) label comparison.
    order = torch.argsort(gallery_labels, stable=True)
    positives = _locate_positives(query_labels, gallery_labels[order], order, exclude_self)
    device = query.device
    if metric == "cosine":
        query, gallery = F.normalize(query, dim=1), F.normalize(gallery, dim=1)
    gallery = gallery[order.to(device)].contiguous()
    query_sq = gallery_sq = None
    if metric == "l2":
        query_sq, gallery_sq = (query * query).sum(1), (gallery * gallery).sum(1)

    n_query, n_gallery = len(query), len(gallery)
    rows = chunk_size or _auto_chunk_size(n_gallery)
    ranking_kernel.set_threads(torch.get_num_threads())
    starts = positives.start.numpy()
    counts = positives.count.numpy()
    skips = positives.skip.numpy() if positives.skip is not None else np.full(n_query, -1, np.int64)
    precision_sum = np.zeros(n_query, np.float64)
    before = np.zeros(n_query, np.int64)
    n_pos = np.zeros(n_query, np.int64)
    scores = torch.empty((min(rows, n_query), n_gallery), dtype=torch.float32, device=device)
    chunks = range(0, n_query, rows)
    for lo in track(chunks, n_query, "rank queries", unit="queries",
                    weights=[min(rows, n_query - lo) for lo in chunks]):
        hi = min(lo + rows, n_query)
        chunk = scores[: hi - lo]
        _score_chunk(query[lo:hi], gallery, None if query_sq is None else query_sq[lo:hi], gallery_sq, chunk)
        host = chunk.numpy() if chunk.device.type == "cpu" else chunk.cpu().numpy()
        ranking_kernel.rank_rows(host, starts[lo:hi], counts[lo:hi], skips[lo:hi], CELLS_PER_POSITIVE,
                                 precision_sum[lo:hi], before[lo:hi], n_pos[lo:hi])
    ap = np.where(n_pos > 0, precision_sum / np.maximum(n_pos, 1), np.nan)
    return torch.from_numpy(ap), torch.from_numpy(before)


def _locate_positives(query_labels, sorted_gallery_labels, order, exclude_self) -> _Positives:
    classes, counts = torch.unique_consecutive(sorted_gallery_labels, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    where = torch.searchsorted(classes, query_labels).clamp_max(len(classes) - 1)
    found = classes[where] == query_labels
    start = torch.where(found, starts[where], 0)
    count = torch.where(found, counts[where], 0)
    skip = None
    n_pos = count.clone()
    if exclude_self:
        skip = torch.empty_like(order)
        skip[order] = torch.arange(len(order))  # column of gallery item i in the sorted gallery
        n_pos -= (sorted_gallery_labels[skip] == query_labels).long()
    return _Positives(start, count, skip, n_pos)


def _auto_chunk_size(n_gallery: int) -> int:
    """Query rows per chunk: their float32 scores fill :data:`MEMORY_BUDGET_BYTES`."""
    return int(max(1, MEMORY_BUDGET_BYTES // (4 * n_gallery)))


def _score_chunk(query, gallery, query_sq, gallery_sq, out) -> None:
    """Write the ``(len(query), G)`` scores into ``out``: dot products, or -squared distances."""
    if query_sq is None:
        torch.mm(query, gallery.T, out=out)
        return
    torch.addmm(gallery_sq.neg()[None, :], query, gallery.T, alpha=2.0, out=out)
    out.sub_(query_sq[:, None])
