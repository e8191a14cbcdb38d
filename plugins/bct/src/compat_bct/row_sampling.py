"""What bounds the row fit at face-recognition size: a stratified subsample of the old embeddings and
blocks of neighbouring rows that each sample is scored against.

At 93,000 classes x 512 dims the full-batch softmax regression of :mod:`compat_bct.row_fit` costs
N x R x D multiply-adds per evaluation (about 10 minutes per evaluation for one sample per class on a
2-core CPU, 250 evaluations per fit; ``plugins/bct/README.md`` has the measurements). Two bounds make
it a matter of minutes:

- :func:`stratified_subsample`: at most ``max_samples`` samples (or one per class, if more), at least
  one of every class present, the rest in proportion to the class sizes, seeded;
- :func:`row_blocks` and :class:`BlockLayout`: the rows are split into blocks of at most ``size``
  neighbouring rows (recursive halving along the principal direction of the starting rows), and each
  sample is scored against the rows of its own row's block instead of all R rows: N x S x D per
  evaluation, in dense batched products. The fit exists to move decision boundaries between
  neighbouring classes; a far row's share of the softmax changes little. Neighbours that a split
  separates are lost: the price of the bound.

Example:
    >>> stratified_subsample(torch.tensor([0, 0, 0, 0, 0, 0, 1, 1]), max_samples=6, seed=0).tolist()
    [0, 2, 3, 4, 6, 7]
    >>> rows = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    >>> sorted(sorted(b.tolist()) for b in row_blocks(rows, size=2))
    [[0, 2], [1, 3]]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def stratified_subsample(targets: torch.Tensor, max_samples: int, seed: int = 0) -> torch.Tensor | None:
    """Positions (sorted) of a seeded stratified subsample of ``targets``; ``None`` keeps every sample.

    Nothing is dropped while ``len(targets) <= max_samples``. Otherwise every class present keeps one
    sample, and the other ``max_samples - P`` places (``P`` = classes present) go to the classes in
    proportion to their remaining samples (largest remainder, ties to the lower class), each class's
    samples chosen at random. The subsample has exactly ``max(max_samples, P)`` samples: one per
    class wins over ``max_samples`` when there are more classes than that.

    Example:
        >>> stratified_subsample(torch.tensor([2, 2, 5]), max_samples=3) is None
        True
        >>> torch.bincount(torch.arange(4).repeat(5)[stratified_subsample(torch.arange(4).repeat(5), 10)]).tolist()
        [3, 3, 2, 2]
    """
    n = len(targets)
    if n <= max_samples:
        return None
    targets = targets.long().cpu()
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    order = order[torch.sort(targets[order], stable=True).indices]  # grouped by class, random within
    counts = torch.bincount(targets)
    quota = _quota(counts, max_samples)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n) - starts.repeat_interleave(counts)  # position of each sample within its class
    keep = rank < quota.repeat_interleave(counts)
    return torch.sort(order[keep]).values


def _quota(counts: torch.Tensor, max_samples: int) -> torch.Tensor:
    """Samples kept per class: 1 per present class + a largest-remainder share of the rest (integers)."""
    present = counts > 0
    spare = counts - present.long()  # samples beyond each class's first
    places = max(max_samples - int(present.sum()), 0)
    pool = int(spare.sum())
    extra = spare * places // max(pool, 1)
    remainder = spare * places % max(pool, 1)
    left = places - int(extra.sum())
    if left > 0:  # the classes with the largest remainders get one more (stable: lower class first)
        extra[torch.sort(remainder, descending=True, stable=True).indices[:left]] += 1
    return present.long() + extra


AUTO_BLOCK = 128  # rows per block of --fit-block auto
EXACT_WORK = 2e12  # multiply-adds up to which --fit-block auto keeps the exact fit (~4 min, one core)


def resolve_block(option: int | str, samples: int, rows: int, dim: int, max_iter: int) -> int:
    """``--fit-block``: 0 = the exact full softmax, else the block size. ``"auto"``: exact while the fit's
    work, samples x rows x dim per evaluation x 1.25 evaluations per iteration, stays within
    ``EXACT_WORK``; blocks of ``AUTO_BLOCK`` rows beyond. A number: blocks of that size (0: exact).
    Blocks of ``rows`` or more are the exact fit.

    Example:
        >>> resolve_block("auto", 60_000, 10, 128, 200), resolve_block("auto", 100_000, 93_000, 512, 52)
        (0, 128)
        >>> resolve_block(64, 1_000, 50, 16, 200), resolve_block(64, 1_000, 500, 16, 200)
        (0, 64)
    """
    if option == "auto":
        exact = samples * rows * dim * 1.25 * max_iter <= EXACT_WORK
        option = 0 if exact else AUTO_BLOCK
    return int(option) if 0 < int(option) < rows else 0


def row_blocks(weight: torch.Tensor, size: int, seed: int = 0) -> list[torch.Tensor]:
    """Split the rows into blocks of at most ``size`` row indices (between ``size / 2`` and ``size``
    when there are more rows than ``size``), neighbours together.

    A block of more than ``size`` rows is halved at the median of the normalised rows' projection on
    their principal direction (8 power iterations from a seeded start), recursively. Cost: about
    16 x R x D multiply-adds per level, log2(R / size) levels.

    Example:
        >>> [b.tolist() for b in row_blocks(torch.eye(3), size=3)]
        [[0, 1, 2]]
    """
    normed = F.normalize(weight.float(), dim=1)
    gen = torch.Generator().manual_seed(seed)
    pending, blocks = [torch.arange(len(weight), device=weight.device)], []
    while pending:
        rows = pending.pop()
        if len(rows) <= size:
            blocks.append(rows)
            continue
        centred = normed[rows] - normed[rows].mean(dim=0)
        direction = torch.randn(weight.shape[1], generator=gen).to(weight.device)
        for _ in range(8):  # power iteration on centred^T centred
            direction = centred.T @ (centred @ direction)
            direction = direction / direction.norm().clamp_min(1e-12)
        order = torch.sort(centred @ direction, stable=True).indices
        half = len(rows) // 2
        pending += [rows[order[half:]], rows[order[:half]]]
    return blocks


class BlockLayout:
    """Rows in blocks (:func:`row_blocks`) and samples grouped by their target row's block, padded
    so that every block is one dense (samples x rows) product.

    ``rows`` (B, S) holds each block's row indices and ``samples`` (B, M) its samples' positions
    (-1 = padding); ``own`` (B, M) is the slot of each sample's target row within its block.

    Example:
        >>> layout = BlockLayout([torch.tensor([0, 2]), torch.tensor([1])], torch.tensor([1, 2, 0]))
        >>> layout.rows.tolist(), layout.samples.tolist(), layout.own.tolist()
        ([[0, 2], [1, -1]], [[1, 2], [0, -1]], [[1, 0], [0, 0]])
    """

    def __init__(self, blocks: list[torch.Tensor], targets: torch.Tensor):
        device = targets.device
        width = max(len(b) for b in blocks)
        self.rows = torch.full((len(blocks), width), -1, dtype=torch.long, device=device)
        for i, block in enumerate(blocks):
            self.rows[i, :len(block)] = block.to(device)
        valid = self.rows >= 0
        num_rows = int(self.rows.max()) + 1
        block_of_row = torch.full((num_rows,), -1, dtype=torch.long, device=device)
        slot_of_row = torch.zeros(num_rows, dtype=torch.long, device=device)
        block_of_row[self.rows[valid]] = torch.nonzero(valid)[:, 0]
        slot_of_row[self.rows[valid]] = torch.nonzero(valid)[:, 1]
        block = block_of_row[targets]
        order = torch.sort(block, stable=True).indices
        counts = torch.bincount(block, minlength=len(blocks))
        rank = torch.arange(len(targets), device=device) - (torch.cumsum(counts, 0) - counts)[block[order]]
        self.samples = torch.full((len(blocks), max(int(counts.max()), 1)), -1, dtype=torch.long, device=device)
        self.samples[block[order], rank] = order
        self.own = torch.zeros_like(self.samples)
        self.own[block[order], rank] = slot_of_row[targets[order]]

    def arranged(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` as (B, M, D), block by block, zeros in the padding."""
        return features[self.samples.clamp_min(0)] * (self.samples >= 0)[..., None]

    def logits(self, arranged: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, kind: str, scale: float,
               lo: int, hi: int) -> torch.Tensor:
        """Logits (b, M, S) of blocks ``lo:hi`` from :meth:`arranged` features; padded rows at -inf.
        For cosine logits both the features and ``weight`` are already normalised."""
        rows = self.rows[lo:hi]
        logits = torch.bmm(arranged[lo:hi], weight[rows.clamp_min(0)].transpose(1, 2))
        logits = scale * logits if kind == "cosine" else logits + bias[rows.clamp_min(0)][:, None, :]
        return logits.masked_fill(rows[:, None, :] < 0, -float("inf"))

    def blocks_per_chunk(self, chunk_logits: int) -> int:
        return max(1, chunk_logits // (self.samples.shape[1] * self.rows.shape[1]))
