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

Where the time goes, and why the code looks the way it does (profiled at 100,000 columns):

* every array index in the hot loops is unsigned (``np.uintp``): numba emits negative-index wraparound
  code for signed ones, a third of the instructions of the per-negative loop;
* the negatives' cells are computed for a block of :data:`BLOCK` columns at a time, a loop that LLVM
  vectorises, before the scalar table lookups and comparisons;
* the positives are bucket-sorted by cell with the table's own counts (linear time); the table is then
  turned, in place, into "positives above each cell" (and the sign bit marks a crowded cell), so the
  setup of a row with 10,000 positives touches each cell three times and allocates nothing: the table,
  positives and histogram buffers are allocated once per block of rows.

Rows are independent and run in parallel (numba ``prange`` over blocks of rows, its own ``workqueue``
thread pool, so it never nests inside torch's OpenMP); compiled code is cached next to this file.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

if numba.config.THREADING_LAYER == "default":
    # workqueue: numba's own pool, which cannot deadlock against torch's and MKL's OpenMP runtimes.
    numba.config.THREADING_LAYER = "workqueue"

#: Columns whose cells are computed (vectorised) ahead of their table lookups.
BLOCK = 256

#: Rows with fewer positives than this use an int16 cell table (half the cache lines of int32).
INT16_TABLE_BELOW = 32000

_ONE = np.uintp(1)


@njit(cache=True, nogil=True, inline="always")
def _cell(s, lo, scale, m):
    """Cell of score ``s`` in [-1, m]: -1 below the lowest positive, a monotone function of ``s``."""
    x = (s - lo) * scale
    x = min(max(x, np.float32(-1.0)), np.float32(m))
    return np.int32(x)


@njit(cache=True, nogil=True, inline="always")
def _slot(s, lo, scale, m):
    """Where the table holds cell ``_cell(s)``'s entry: ``cell + 2``, unsigned (no wraparound code)."""
    return np.uintp(_cell(s, lo, scale, m) + 2)


@njit(cache=True, nogil=True)
def _bounds(row, j0, j1, lo, hi):
    """``lo`` and ``hi`` widened to ``row[j0:j1]``."""
    for j in range(np.uintp(j0), np.uintp(j1)):
        x = row[j]
        lo = x if x < lo else lo
        hi = x if x > hi else hi
    return lo, hi


@njit(cache=True, nogil=True)
def _positives_and_table(row, a, b, own, cells_per_positive, table, pos):
    """Sort the row's positives (columns ``[a, b)`` but ``own``) into ``pos`` in descending order (two
    -inf after the last) and build the cell grid (lo, scale, m) and ``table``: at ``c + 2``, for each cell
    c in [-1, m], the number of positives in higher cells t, stored as ``~t`` (= -t - 1) when the cell
    holds more than two positives. Returns ``(p, lo, scale, m)``, p the number of positives."""
    a0, a1, b0, b1 = (a, own, own + 1, b) if a <= own < b else (a, b, b, b)
    p = (a1 - a0) + (b1 - b0)
    pos[p] = pos[p + 1] = -np.inf  # read by the comparisons past the last positive; stop the loop
    if p == 0:
        return 0, np.float32(0.0), np.float32(0.0), 1
    first = row[a0] if a1 > a0 else row[b0]
    lo, hi = _bounds(row, a0, a1, first, first)
    lo, hi = _bounds(row, b0, b1, lo, hi)
    m = max(1, int(cells_per_positive * p))
    scale = np.float32(0.0)
    if hi > lo:
        wide = m / (np.float64(hi) - np.float64(lo))
        scale = np.float32(wide) if wide < 3e38 else np.float32(0.0)  # 0: one cell, the loop path
    # Counting sort by cell, descending: table[c + 1] counts cell c, then becomes where its positives
    # start, then (each placed positive moving it on) where the next lower cell's positives start, which is
    # exactly "positives in cells above c - 1": the lookup value, at c - 1's slot c + 1.
    table[: m + 3] = 0
    for j0, j1 in ((a0, a1), (b0, b1)):
        for j in range(np.uintp(j0), np.uintp(j1)):
            table[_slot(row[j], lo, scale, m) - _ONE] += 1
    above = 0
    for i in range(m + 1, -1, -1):
        n = table[i]
        table[i] = above
        above += n
    for j0, j1 in ((a0, a1), (b0, b1)):
        for j in range(np.uintp(j0), np.uintp(j1)):
            i = _slot(row[j], lo, scale, m) - _ONE
            pos[np.uintp(table[i])] = row[j]
            table[i] += 1
    previous = table[1]  # positives above cell -1: all of them
    for i in range(2, m + 3):  # mark crowded cells, branch-free: ~t = -t - 1
        t = table[i]
        table[i] = t ^ -(previous - t > 2)
        previous = t
    _order_within_cells(pos, p)
    return p, lo, scale, m


@njit(cache=True, nogil=True)
def _order_within_cells(pos, p):
    """Sort ``pos[:p]`` descending, given that only positives of the same cell can be out of order."""
    carry = pos[0]
    for i in range(1, p):  # one branch-free bubble pass: orders every cell of two positives
        y = pos[i]
        pos[i - 1] = max(carry, y)
        carry = min(carry, y)
    pos[p - 1] = carry
    moves = 0
    for i in range(1, p):  # insertion sort for crowded cells; a full sort if they hold most positives
        value, j = pos[i], i
        while j > 0 and pos[j - 1] < value:
            pos[j] = pos[j - 1]
            j -= 1
        pos[j] = value
        moves += i - j
        if moves > 16 * p:
            pos[:p] = np.sort(pos[:p])[::-1]
            return


@njit(cache=True, nogil=True)
def _count_negatives(row, j0, j1, pos, lo, scale, m, table, hist, slots):
    """Add every item of ``row[j0:j1]`` to ``hist[k]``, k = #positives scoring strictly more."""
    while j0 < j1:
        size = min(slots.shape[0], j1 - j0)
        base = np.uintp(j0)
        for i in range(np.uintp(size)):
            slots[i] = _slot(row[base + i], lo, scale, m)
        for i in range(np.uintp(size)):
            s = row[base + i]
            t = np.int32(table[np.uintp(slots[i])])
            if t >= 0:  # at most two positives in the cell: compare with both, no branch
                u = np.uintp(t)
                k = u + np.uintp(pos[u] > s) + np.uintp(pos[u + _ONE] > s)
            else:
                k = np.uintp(-t - 1)
                while pos[k] > s:  # pos[p] = -inf < s stops it
                    k += _ONE
            hist[k] += 1
        j0 += size


@njit(cache=True, nogil=True)
def _rank_row(row, a, b, own, cells_per_positive, table, pos, hist, slots):
    """(sum over positives of precision at it, #negatives scoring at least the best positive, P)."""
    p, lo, scale, m = _positives_and_table(row, a, b, own, cells_per_positive, table, pos)
    if p == 0:
        return 0.0, row.shape[0], 0
    hist[: p + 1] = 0
    cols = row.shape[0]
    for j0, j1 in ((0, a), (b, cols)):  # the negatives: every column outside [a, b), but the query itself
        if j0 <= own < j1:
            _count_negatives(row, j0, own, pos, lo, scale, m, table, hist, slots)
            _count_negatives(row, own + 1, j1, pos, lo, scale, m, table, hist, slots)
        else:
            _count_negatives(row, j0, j1, pos, lo, scale, m, table, hist, slots)
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
    return total, hist[0], p


@njit(cache=True, nogil=True)
def _rank_block(scores, start, count, skip, cells_per_positive, precision_sum, negatives_before, n_pos,
                r0, r1, most, table):
    """Rows ``[r0, r1)``, sharing one set of buffers sized for ``most``, their largest count."""
    pos = np.empty(most + 2, np.float32)
    hist = np.empty(most + 1, np.int32)
    slots = np.empty(BLOCK, np.int32)
    for r in range(r0, r1):
        a = start[r]
        precision_sum[r], negatives_before[r], n_pos[r] = _rank_row(
            scores[r], a, a + count[r], skip[r], cells_per_positive, table, pos, hist, slots)


def rank_rows(scores, start, count, skip, cells_per_positive, precision_sum, negatives_before, n_pos):
    """For each row r of ``scores`` (C, G), positives in columns ``[start[r], start[r] + count[r])`` except
    ``skip[r]`` (the query itself, or -1; it is no item at all): write the sum over positives of
    #(positives >= s_p) / #(items >= s_p), the number of negatives scoring at least the best positive
    (G when there is no positive) and the number of positives."""
    blocks = min(len(scores), 4 * numba.get_num_threads())  # buffers are allocated once per block of rows
    _rank_rows(scores, start, count, skip, cells_per_positive, precision_sum, negatives_before, n_pos,
               max(blocks, 1))


@njit(parallel=True, cache=True, nogil=True)
def _rank_rows(scores, start, count, skip, cells_per_positive, precision_sum, negatives_before, n_pos, blocks):
    rows = scores.shape[0]
    for block in prange(blocks):
        r0, r1 = block * rows // blocks, (block + 1) * rows // blocks
        most = 0
        for r in range(r0, r1):
            most = max(most, count[r])
        size = max(1, int(cells_per_positive * most)) + 3
        if most < INT16_TABLE_BELOW:
            _rank_block(scores, start, count, skip, cells_per_positive, precision_sum, negatives_before,
                        n_pos, r0, r1, most, np.empty(size, np.int16))
        else:
            _rank_block(scores, start, count, skip, cells_per_positive, precision_sum, negatives_before,
                        n_pos, r0, r1, most, np.empty(size, np.int32))


def set_threads(threads: int) -> None:
    """Use ``threads`` workers (at most numba's configured maximum)."""
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
