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

Algorithm: scores are computed one chunk of query rows at a time (one matrix product), and no row
is sorted. Each score is mapped to one of ``M`` equal-width *cells* of its row's score range by a
monotone float formula, so a higher cell always means a strictly higher score. A cell that holds
positives of a single score ``v`` gets the threshold ``v``, and every item is counted in a per-row
histogram under (cell, score >= threshold of its cell). Cumulative sums of that histogram give, for
each positive, the exact number of items and of positives scoring at least as much, which is all AP
and CMC need. Cells holding two or more *different* positive scores (rare unless a query has
thousands of positives) are resolved exactly by sorting just their items. The cost is a few passes
over each chunk of scores, linear in its size, on top of the matrix product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from compat_core.progress import track

METRICS = ("cosine", "l2")

#: Working memory for one chunk of query rows when ``chunk_size`` is None.
MEMORY_BUDGET_BYTES = 2**30

#: Most cells per query row: a row's histogram (2 int32 per cell, 512 KiB) stays in a 1 MiB L2 cache.
MAX_CELLS = 2**16

#: Columns sampled to estimate each row's score range (scores outside go to the end cells).
_RANGE_SAMPLE = 2048


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
        ValueError: bad shapes, labels, metric, ``topk`` or ``chunk_size``, non-finite features,
            ``exclude_self`` with Q != G, or no query with a positive in the gallery.

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
    query, gallery = torch.as_tensor(query), torch.as_tensor(gallery)
    for name, x in (("query", query), ("gallery", gallery)):
        if x.dim() != 2 or len(x) == 0:
            raise ValueError(f"{name} must be a non-empty (N, D) matrix, got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} has NaN or infinite features")
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query and gallery dimensions differ: {query.shape[1]} != {gallery.shape[1]}")
    if query.device != gallery.device:
        raise ValueError(f"query and gallery are on different devices: {query.device}, {gallery.device}")
    # float32 on purpose: the matrix product dominates the cost and float32 is what models emit.
    return query.float(), gallery.float()


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
    max_block = int(positives.count.max())
    rows = chunk_size or _auto_chunk_size(n_gallery, max_block)
    workspace = _Workspace(device)
    ap = torch.full((n_query,), float("nan"), dtype=torch.float64)
    negatives_before = torch.zeros(n_query, dtype=torch.int64)
    starts = range(0, n_query, rows)
    for lo in track(starts, n_query, "rank queries", unit="queries",
                    weights=[min(rows, n_query - lo) for lo in starts]):
        hi = min(lo + rows, n_query)
        scores = workspace.get("scores", (hi - lo, n_gallery), torch.float32)
        _score_chunk(query[lo:hi], gallery, None if query_sq is None else query_sq[lo:hi], gallery_sq, scores)
        block = _Positives(positives.start[lo:hi].to(device), positives.count[lo:hi].to(device),
                           None if positives.skip is None else positives.skip[lo:hi].to(device),
                           positives.n_pos[lo:hi].to(device))
        if block.skip is not None:
            # The query itself scores -inf: below every real item, so it counts for nothing.
            scores[torch.arange(hi - lo, device=device), block.skip] = float("-inf")
        precision_sum, before = _chunk_statistics(scores, block, workspace)
        n_pos = positives.n_pos[lo:hi]
        has_pos = n_pos > 0
        ap[lo:hi][has_pos] = precision_sum.cpu()[has_pos] / n_pos[has_pos]
        negatives_before[lo:hi] = before.cpu()
    return ap, negatives_before


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


def _auto_chunk_size(n_gallery: int, max_block: int) -> int:
    cells = _cells_per_row(n_gallery, max_block)
    # Per query row: float32 scores and thresholds, int64 cell ids and flags per gallery item; seven
    # 4-byte table entries per cell; a few arrays per positive; plus slack for the exact fallback.
    per_row = 25 * n_gallery + 28 * cells + 80 * max_block
    return int(max(1, MEMORY_BUDGET_BYTES // per_row))


def _cells_per_row(n_gallery: int, positives_per_row: float) -> int:
    """A power of two near positives**2, between 1024 and the gallery size (at most :data:`MAX_CELLS`).

    Fewer cells make the histogram cheaper (it is cleared, filled and summed per row), but two
    positives share a cell about (positives per row)**2 / cells times per row, and a row with such a
    cell pays an exact fallback; measured on random features, cells ~ positives**2 balances the two.
    """
    most = max(2, min(MAX_CELLS, 1 << max(0, n_gallery - 1).bit_length()))  # >= 2: scale > 0
    wanted = 1 << max(0, int(positives_per_row**2) - 1).bit_length()
    return int(max(min(1024, most), min(most, wanted)))


def _score_chunk(query, gallery, query_sq, gallery_sq, out) -> None:
    """Write the ``(len(query), G)`` scores into ``out``: dot products, or -squared distances."""
    if query_sq is None:
        torch.mm(query, gallery.T, out=out)
        return
    torch.addmm(gallery_sq.neg()[None, :], query, gallery.T, alpha=2.0, out=out)
    out.sub_(query_sq[:, None])


class _Workspace:
    """Reusable buffers: a fresh multi-megabyte tensor per chunk would cost page faults each time."""

    def __init__(self, device: torch.device):
        self.device = device
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        numel = int(np.prod(shape))
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < numel or buffer.dtype != dtype:
            buffer = torch.empty(numel, dtype=dtype, device=self.device)
            self._buffers[name] = buffer
        return buffer[:numel].view(shape)


# ------------------------------------------------------------------------------- one query chunk


def _chunk_statistics(scores: torch.Tensor, positives: _Positives, workspace: _Workspace):
    """Rank the positives of every row of ``scores`` without sorting the rows.

    Args:
        scores: ``(C, G)`` scores of C queries against the label-sorted gallery.
        positives: the C rows' positive blocks.
        workspace: buffers reused across chunks.

    Returns:
        ``(precision_sum, negatives_before)``: per row, the float64 sum over positives of
        #(positives >= s_p) / #(items >= s_p), and the int64 number of negatives scoring at least as
        much as the best positive (G for rows without positives).
    """
    n_rows, n_cols = scores.shape
    precision_sum = torch.zeros(n_rows, dtype=torch.float64, device=scores.device)
    negatives_before = torch.full((n_rows,), n_cols, dtype=torch.int64, device=scores.device)
    pos_row, pos_flat = _positive_items(positives, n_cols)
    if len(pos_flat) == 0:
        return precision_sum, negatives_before
    pos_scores = scores.view(-1).index_select(0, pos_flat)
    n_cells = _cells_per_row(n_cols, len(pos_flat) / n_rows)

    cells = _cell_index(scores, pos_row, pos_scores, n_cells, workspace)
    # Tables are (C, cells) and read flat: a positive's cell is row * n_cells + its cell.
    pos_cells = pos_row * n_cells + cells.view(-1).index_select(0, pos_flat)
    thresholds = _cell_thresholds(pos_cells, pos_scores, (n_rows, n_cells), workspace)
    item_thresholds = workspace.get("item_thresholds", scores.shape, torch.float32)
    torch.gather(thresholds, 1, cells, out=item_thresholds)
    # Histogram key 2 * cell + (score >= the cell's threshold), written over the cell ids. Each op
    # keeps one dtype: mixed bool/int64 operands (or an int64 comparison output) make torch
    # allocate and convert a whole temporary chunk.
    above_flag = workspace.get("above_flag", scores.shape, torch.bool)
    at_or_above = workspace.get("at_or_above", scores.shape, torch.int64)
    at_or_above.copy_(torch.ge(scores, item_thresholds, out=above_flag))
    keys = torch.add(at_or_above, cells, alpha=2, out=cells)
    _, items_cum = _histogram(keys, (n_rows, 2 * n_cells), "items", workspace)
    pos_counts, pos_cum = _histogram(pos_cells, (n_rows, n_cells), "positives", workspace)
    thresholds = thresholds.view(-1)

    # A clean cell's positives all score its threshold t, so #(items >= t) is every item past the
    # cell's "below t" slot, and #(positives >= t) every positive not in a lower cell.
    items_ge = n_cols - items_cum.index_select(0, 2 * pos_cells).long()
    n_pos = positives.n_pos.index_select(0, pos_row)
    pos_ge = n_pos - pos_cum.index_select(0, pos_cells).long() + pos_counts.index_select(0, pos_cells)
    dirty = torch.isnan(thresholds.index_select(0, pos_cells))
    _add_positives(pos_row, items_ge, pos_ge, ~dirty, precision_sum, negatives_before)
    if bool(dirty.any()):
        row, items_ge, pos_ge = _count_in_dirty_cells(scores, keys, item_thresholds, positives,
                                                      pos_row[dirty], n_cells, items_cum, pos_cum)
        _add_positives(row, items_ge, pos_ge, None, precision_sum, negatives_before)
    return precision_sum, negatives_before


def _add_positives(row, items_ge, pos_ge, keep, precision_sum, negatives_before) -> None:
    """Add #(positives >= s_p) / #(items >= s_p) of each kept positive to its row, and lower the
    row's count of negatives before its first positive."""
    precision = pos_ge.double() / items_ge.double()
    negatives = items_ge - pos_ge
    if keep is not None:
        precision = torch.where(keep, precision, 0.0)
        negatives = torch.where(keep, negatives, 2**62)
    precision_sum.index_add_(0, row, precision)
    negatives_before.scatter_reduce_(0, row, negatives, "amin")


def _positive_items(positives: _Positives, n_cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(row, flat)``: every positive's row and flat index ``row * G + col``, in flat order."""
    count = positives.count
    row = torch.repeat_interleave(torch.arange(len(count), device=count.device), count)
    first = torch.cumsum(count, 0) - count
    offset = torch.arange(len(row), device=count.device) - first.index_select(0, row)
    col = positives.start.index_select(0, row) + offset
    if positives.skip is not None:
        keep = col != positives.skip.index_select(0, row)
        row, col = row[keep], col[keep]
    return row, row * n_cols + col


def _cell_index(scores, pos_row, pos_scores, n_cells: int, workspace: _Workspace) -> torch.Tensor:
    """``(C, G)`` int64 cell ids in ``[0, n_cells)``, non-decreasing in the score along a row.

    Each row's range comes from a sample of its scores and all its positives; scores outside the
    range land in the end cells. Only monotonicity matters for exactness: every step below
    (multiply-add, clamp, truncation) is a monotone function of the score under float rounding.
    """
    n_rows, n_cols = scores.shape
    device = scores.device
    sample_cols = torch.linspace(0, n_cols - 1, min(n_cols, _RANGE_SAMPLE), device=device).long()
    sample = scores.index_select(1, sample_cols)
    finite = torch.isfinite(sample)  # the skipped query itself scores -inf
    lo = torch.where(finite, sample, float("inf")).amin(1).scatter_reduce_(0, pos_row, pos_scores, "amin")
    hi = torch.where(finite, sample, -float("inf")).amax(1).scatter_reduce_(0, pos_row, pos_scores, "amax")
    lo, hi = torch.where(lo <= hi, lo, 0.0), torch.where(lo <= hi, hi, 0.0)
    # A floor on the width keeps the scale finite for constant rows; cells narrower than the float
    # spacing of the scores would be useless anyway.
    span = torch.maximum(hi - lo, torch.maximum(lo.abs(), hi.abs()) * 2.0**-20).clamp_min(1e-30)
    scale = (n_cells - 1) / span
    t = workspace.get("item_thresholds", scores.shape, torch.float32)  # reused: free until later
    torch.addcmul((-lo * scale)[:, None], scores, scale[:, None], out=t)
    t.clamp_(0, n_cells - 1)
    # int64 because gather and scatter_add_ (parallel over rows, unlike their flat versions) need it.
    cells = workspace.get("cells", scores.shape, torch.int64)
    cells.copy_(t)  # truncation = floor here, as t >= 0
    return cells


def _cell_thresholds(pos_cells, pos_scores, shape: tuple[int, int], workspace: _Workspace) -> torch.Tensor:
    """``(C, cells)``: +inf without positives, the positives' score if they all tie, NaN ("dirty") else.

    ``pos_cells`` are flat (``row * cells + cell``).
    """
    thresholds = workspace.get("thresholds", shape, torch.float32).fill_(float("inf"))
    flat = thresholds.view(-1)
    flat.scatter_reduce_(0, pos_cells, pos_scores, "amin", include_self=False)
    differs = pos_scores != flat.index_select(0, pos_cells)
    flat.index_fill_(0, pos_cells[differs], float("nan"))  # NaN: no item is ">= threshold"
    return thresholds


def _histogram(keys, shape: tuple[int, int], name: str, workspace: _Workspace):
    """Count ``keys`` into a ``(rows, bins)`` int32 table; return it and its per-row inclusive cumsum.

    ``keys`` is either ``(rows, n)`` int64 bins (a row per table row) or 1-D flat ``row * bins + bin``.
    Both results are returned flat, to be read at ``row * bins + bin``.
    """
    counts = workspace.get(f"{name}_counts", shape, torch.int32).zero_()
    ones = torch.ones((1,) * keys.dim(), dtype=torch.int32, device=keys.device).expand(keys.shape)
    if keys.dim() == 2:
        counts.scatter_add_(1, keys, ones)
    else:
        counts.view(-1).index_add_(0, keys, ones)
    cumulative = workspace.get(f"{name}_cum", shape, torch.int32)
    torch.cumsum(counts, 1, out=cumulative)
    return counts.view(-1), cumulative.view(-1)


def _count_in_dirty_cells(scores, keys, item_thresholds, positives, dirty_rows, n_cells, items_cum,
                          pos_cum):
    """``(row, items_ge, pos_ge)`` of the positives in dirty cells, by sorting those cells' items."""
    n_rows, n_cols = scores.shape
    rows = torch.zeros(n_rows, dtype=torch.bool, device=scores.device).index_fill_(0, dirty_rows, True)
    rows = rows.nonzero().squeeze(1)
    # The items of dirty cells are exactly those whose threshold is NaN.
    if len(rows) == n_rows:
        row, col = torch.isnan(item_thresholds).nonzero(as_tuple=True)
    else:
        local_row, col = torch.isnan(item_thresholds.index_select(0, rows)).nonzero(as_tuple=True)
        row = rows.index_select(0, local_row)
    flat = row * n_cols + col
    cell = row * n_cells + (keys.view(-1).index_select(0, flat) >> 1)  # flat cell id
    start = positives.start.index_select(0, row)
    is_pos = (col >= start) & (col < start + positives.count.index_select(0, row))
    if positives.skip is not None:
        is_pos &= col != positives.skip.index_select(0, row)
    order, items_in_cell, pos_in_cell = _counts_within_cells(cell, scores.view(-1).index_select(0, flat), is_pos)
    keep = is_pos.index_select(0, order)
    row, cell = row.index_select(0, order)[keep], cell.index_select(0, order)[keep]
    items_ge = n_cols - items_cum.index_select(0, 2 * cell + 1).long() + items_in_cell[keep]
    pos_ge = positives.n_pos.index_select(0, row) - pos_cum.index_select(0, cell).long() + pos_in_cell[keep]
    return row, items_ge, pos_ge


def _counts_within_cells(cell, values, is_pos):
    """Sort items by (cell, value); per item, the items / positives of its cell scoring >= it.

    Args:
        cell: ``(n,)`` int64 flat cell id of each item (cells are whole: all their items are here).
        values: ``(n,)`` float32 scores.
        is_pos: ``(n,)`` bool, the item is a positive of its row.

    Returns:
        ``(order, items_at_or_above, pos_at_or_above)``: the sorting permutation and, in sorted
        order, int64 counts over the item's own cell, ties included.

    Example:
        >>> order, n_ge, p_ge = _counts_within_cells(torch.tensor([3, 3, 3]),
        ...     torch.tensor([0.5, 0.2, 0.5]), torch.tensor([True, False, True]))
        >>> n_ge.tolist(), p_ge.tolist()  # sorted: 0.2 (negative), 0.5, 0.5
        ([3, 2, 2], [2, 2, 2])
    """
    # Cell ids are monotone in the score within a row, so (cell, score) sorts like (row, score).
    key = (cell << 32) | (_float_order_key(values).long() + 2**31)
    key, order = torch.sort(key)
    cell = cell.index_select(0, order)
    cum_pos = F.pad(torch.cumsum(is_pos.index_select(0, order), 0), (1, 0))  # #positives before i
    position = torch.arange(len(key), device=key.device)
    new_value = torch.ones_like(key, dtype=torch.bool)
    new_value[1:] = key[1:] != key[:-1]
    tie_start = torch.cummax(torch.where(new_value, position, 0), 0).values
    last_of_cell = torch.ones_like(new_value)
    last_of_cell[:-1] = cell[1:] != cell[:-1]
    cell_ends = last_of_cell.nonzero().squeeze(1) + 1
    cell_number = torch.cumsum(last_of_cell.long(), 0) - last_of_cell.long()
    cell_end = cell_ends.index_select(0, cell_number)
    pos_ge = cum_pos.index_select(0, cell_end) - cum_pos.index_select(0, tie_start)
    return order, cell_end - tie_start, pos_ge


def _float_order_key(values: torch.Tensor) -> torch.Tensor:
    """int32 keys ordered like the float32 ``values`` (equal floats, -0.0 and 0.0 included, tie)."""
    bits = torch.where(values == 0, 0.0, values).view(torch.int32)
    # Negative floats order backwards by their bits: flip all but the sign bit.
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)
