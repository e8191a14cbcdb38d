"""The per-row counting kernel of :mod:`compat_core.metrics.retrieval`, compiled by numba.

What average precision needs from a row is, for each positive p, the number of negatives scoring at
least s_p; CMC needs the same number for the best positive. So the kernel never sorts a row: it sorts
the row's P positives, and gives every negative ``k`` = the number of positives scoring strictly more
(a negative counts for positive i, in descending order, exactly when k <= i, ties included). ``k`` comes
from a table over ``cells_per_positive * P`` equal-width cells between the lowest and the highest
positive: the positives of a higher cell all score more, those of a lower cell all score less, so only
the positives inside the negative's own cell are compared with it: two branch-free comparisons when the
cell holds at most two positives, a short loop otherwise (rare, except with many tied positives). The
cell formula is the same for positives and negatives and monotone in the score under float rounding,
which is all exactness needs. One pass over the row, a histogram of ``k``, and a prefix sum give AP and
the rank of the first positive exactly (sklearn's ``average_precision_score``, ties included).

Rows are independent and run in parallel (numba ``prange``, its own ``workqueue`` thread pool, so it
never nests inside torch's OpenMP); compiled code is cached next to this file.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

if numba.config.THREADING_LAYER == "default":
    # workqueue: numba's own pool, which cannot deadlock against torch's and MKL's OpenMP runtimes.
    numba.config.THREADING_LAYER = "workqueue"


@njit(cache=True, nogil=True, inline="always")
def _cell(s, lo, scale, m):
    """Cell of score ``s`` in [-1, m]: -1 below the lowest positive, a monotone function of ``s``."""
    x = (s - lo) * scale
    x = min(max(x, np.float32(-1.0)), np.float32(m))
    return np.int32(x)


@njit(cache=True, nogil=True)
def _positives_and_table(row, a, b, own, cells_per_positive):
    """The row's positives sorted in descending order (two -inf after the last), their count, the cell
    grid (lo, scale, m) and the lookup table: per cell c in [-1, m] (at c + 1) the number of positives in
    higher cells, encoded as ``-(that + 1)`` when the cell holds more than two positives.

    The positives are bucket-sorted by cell with the same counts (linear time); only a cell holding
    several positives is sorted within itself."""
    raw = np.empty(b - a, np.float32)
    p = 0
    for j in range(a, b):
        if j != own:
            raw[p] = row[j]
            p += 1
    pos = np.empty(p + 2, np.float32)
    pos[p] = pos[p + 1] = -np.inf  # read by the branch-free comparisons past the last positive
    if p == 0:
        return pos, 0, np.float32(0.0), np.float32(0.0), 1, np.zeros(3, np.int32)
    lo, hi = raw[0], raw[0]
    for i in range(1, p):
        lo, hi = min(lo, raw[i]), max(hi, raw[i])
    m = max(1, int(cells_per_positive * p))
    scale = np.float32(0.0)
    if hi > lo:
        wide = m / (np.float64(hi) - np.float64(lo))
        scale = np.float32(wide) if wide < 3e38 else np.float32(0.0)  # 0: one cell, the loop path
    counts = np.zeros(m + 2, np.int32)
    for i in range(p):
        counts[_cell(raw[i], lo, scale, m) + 1] += 1
    table = np.empty(m + 2, np.int32)
    above = 0
    for c in range(m + 1, -1, -1):
        table[c] = above if counts[c] <= 2 else -above - 1
        counts[c], above = above, above + counts[c]  # counts now: where the cell's positives start
    for i in range(p):
        c = _cell(raw[i], lo, scale, m) + 1
        pos[counts[c]] = raw[i]
        counts[c] += 1
    first = 0
    for c in range(m + 1, -1, -1):  # order each cell's few positives, descending
        last = counts[c]
        if last - first > 16:
            pos[first:last] = np.sort(pos[first:last])[::-1]
        else:
            for i in range(first + 1, last):  # insertion sort: a cell holds one or two positives, typically
                value, j = pos[i], i
                while j > first and pos[j - 1] < value:
                    pos[j] = pos[j - 1]
                    j -= 1
                pos[j] = value
        first = last
    return pos, p, lo, scale, m, table


@njit(cache=True, nogil=True)
def _count_negatives(row, j0, j1, pos, p, lo, scale, m, table, hist):
    """Add every item of ``row[j0:j1]`` to ``hist[k]``, k = #positives scoring strictly more."""
    for j in range(j0, j1):
        s = row[j]
        t = np.int32(table[_cell(s, lo, scale, m) + 1])
        if t >= 0:  # at most two positives in the cell: compare with both, no branch
            k = t + np.int32(pos[t] > s) + np.int32(pos[t + 1] > s)
        else:
            k = -t - 1
            while k < p and pos[k] > s:
                k += 1
        hist[k] += 1


@njit(cache=True, nogil=True)
def _count_row(row, a, b, own, pos, p, lo, scale, m, table, hist):
    """The negatives: every column outside the positives' block ``[a, b)``, but the query itself."""
    cols = row.shape[0]
    for j0, j1 in ((0, a), (b, cols)):
        if j0 <= own < j1:
            _count_negatives(row, j0, own, pos, p, lo, scale, m, table, hist)
            _count_negatives(row, own + 1, j1, pos, p, lo, scale, m, table, hist)
        else:
            _count_negatives(row, j0, j1, pos, p, lo, scale, m, table, hist)


@njit(parallel=True, cache=True, nogil=True)
def rank_rows(scores, start, count, skip, cells_per_positive, precision_sum, negatives_before, n_pos):
    """For each row r of ``scores`` (C, G), positives in columns ``[start[r], start[r] + count[r])`` except
    ``skip[r]`` (the query itself, or -1; it is no item at all): write the sum over positives of
    #(positives >= s_p) / #(items >= s_p), the number of negatives scoring at least the best positive
    (G when there is no positive) and the number of positives."""
    rows, cols = scores.shape
    for r in prange(rows):
        row = scores[r]
        a, b, own = start[r], start[r] + count[r], skip[r]
        pos, p, lo, scale, m, table = _positives_and_table(row, a, b, own, cells_per_positive)
        n_pos[r] = p
        if p == 0:
            precision_sum[r] = 0.0
            negatives_before[r] = cols
            continue
        hist = np.zeros(p + 1, np.int32)
        if p < 32000:  # a table of int16 is half the cache lines: about 15% faster with thousands of positives
            _count_row(row, a, b, own, pos, p, lo, scale, m, table.astype(np.int16), hist)
        else:
            _count_row(row, a, b, own, pos, p, lo, scale, m, table, hist)
        negatives_before[r] = hist[0]
        total, seen, k = 0.0, 0, 0
        i = 0
        while i < p:  # one tie group of positives [i, end) at a time: all get #pos >= s = end
            end = i + 1
            while end < p and pos[end] == pos[i]:
                end += 1
            while k <= i:
                seen += hist[k]
                k += 1
            total += (end - i) * end / (end + seen)
            i = end
        precision_sum[r] = total


def set_threads(threads: int) -> None:
    """Use ``threads`` workers (at most numba's configured maximum)."""
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
