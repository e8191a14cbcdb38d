"""Structural prototype refinement (UniBCT's Eq. 9-10), once per class, batched and memory-bounded.

For class c with L2-normalised new embeddings ``X`` (n x d, the current model) and old features ``O``
(n x d_old): ``S = softmax(X X^T / tau)`` with the diagonal excluded, ``P = (1 - lam)(I - lam S)^-1``
and the prototype ``p_c = mean_rows(P O) = w^T O`` with ``w = (1/n) P^T 1``. So one linear solve
``(I - lam S)^T w = (1 - lam)/n * 1`` per class gives the prototype; the original inverted the whole
matrix once per *sample*. Classes are padded into batches whose affinity matrices fit ``memory_mb``;
a class too large for it alone is solved by the fixed-point iteration ``w <- b + lam S^T w`` (a
contraction: ``||lam S^T||_1 = lam`` for row-normalised S), with S rebuilt block by block.

``affinity="column"`` normalises S over dim 0, as the original code does. S is then column-stochastic,
``1^T P = 1^T`` and the mean of the rows of ``P O`` is exactly the plain class mean of ``O``: the
refinement changes the individual refined features, not their mean (tested). ``"row"`` (the default)
makes each refined feature a convex mix of its new-space neighbours' old features, so their mean
weights each sample by how often it is a neighbour and the prototype moves.

A sample with no neighbour (a class of one image) keeps its own old feature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_BYTES = 4  # float32
_MAX_ITERATIONS = 2000
_MAX_BATCH = 4096  # classes per batched solve: bounds the padded index tensors too


def refined_prototypes(new: torch.Tensor, old: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                       lam: float = 0.9, tau: float = 0.05, affinity: str = "row",
                       memory_mb: int = 512) -> torch.Tensor:
    """Refined prototypes (num_classes x d_old) of L2-normalised ``old`` features; a class without samples gets
    a zero row. ``new`` and ``old`` are the samples' new and old embeddings, row-aligned with ``labels``.

    Example:
        >>> new, old = torch.randn(6, 4), torch.randn(6, 3)
        >>> refined_prototypes(new, old, torch.tensor([0, 0, 0, 1, 1, 1]), 2).shape
        torch.Size([2, 3])
    """
    new, old = F.normalize(new.float(), dim=1), F.normalize(old.float(), dim=1)
    labels = labels.to(new.device)
    prototypes = torch.zeros(num_classes, old.shape[1], device=old.device)
    # samples grouped by class once (a sort), so 93,000 classes cost no 93,000 passes over the labels
    order = torch.argsort(labels, stable=True)
    new, old = new[order], old[order.to(old.device)]
    counts = torch.bincount(labels, minlength=num_classes).cpu()
    starts = counts.cumsum(0) - counts
    budget = memory_mb * 2**20
    batch: list[int] = []
    for c in torch.argsort(counts, stable=True).tolist():  # by size, so padded batches waste little
        n = int(counts[c])
        if n == 0:
            continue
        if n * n * _BYTES * 3 > budget:  # alone too large: iterative, block by block
            rows = slice(int(starts[c]), int(starts[c]) + n)
            prototypes[c] = _iterative_weights(new[rows], lam, tau, affinity, budget).to(old.device) @ old[rows]
            continue
        if batch and ((len(batch) + 1) * n * n * _BYTES * 3 > budget or len(batch) >= _MAX_BATCH):
            _solve_batch(batch, starts, counts, new, old, prototypes, lam, tau, affinity)
            batch = []
        batch.append(c)
    if batch:
        _solve_batch(batch, starts, counts, new, old, prototypes, lam, tau, affinity)
    return prototypes


def affinity_matrix(x: torch.Tensor, tau: float, affinity: str, valid: torch.Tensor | None = None) -> torch.Tensor:
    """S of one class (n x n) or a padded batch (B x n x n): softmax of ``x x^T / tau`` over each row
    (``"row"``) or column (``"column"``), diagonal and padding excluded; an empty row or column (no neighbour)
    becomes 1 on the diagonal, so that sample keeps its own old feature."""
    logits = x @ x.transpose(-1, -2) / tau
    n = x.shape[-2]
    eye = torch.eye(n, dtype=torch.bool, device=x.device)
    excluded = eye.expand_as(logits).clone()
    if valid is not None:
        excluded |= ~(valid[..., :, None] & valid[..., None, :])
    s = torch.softmax(logits.masked_fill(excluded, float("-inf")), dim=-1 if affinity == "row" else -2)
    s = torch.nan_to_num(s, nan=0.0)  # all excluded: no neighbour
    lonely = (s.sum(-1 if affinity == "row" else -2) == 0)
    if valid is not None:
        lonely &= valid
    return s + torch.diag_embed(lonely.to(s.dtype))


def _solve_batch(batch, starts, counts, new, old, prototypes, lam, tau, affinity) -> None:
    """The classes ``batch`` (rows ``starts[c] ..`` of the class-sorted ``new`` / ``old``), padded to the
    largest and solved together."""
    classes = torch.tensor(batch)
    sizes = counts[classes]
    n_max = int(sizes.max())
    slots = torch.arange(n_max)
    valid = slots[None, :] < sizes[:, None]
    rows = (starts[classes][:, None] + slots[None, :]).clamp(max=len(new) - 1)
    x = new[rows.to(new.device)] * valid.to(new.device)[..., None]
    o = old[rows.to(old.device)] * valid.to(old.device)[..., None]
    valid = valid.to(new.device)
    s = affinity_matrix(x, tau, affinity, valid)
    system = torch.eye(n_max, device=x.device).expand_as(s) - lam * s  # padded rows: identity, so w = 0 there
    rhs = (1.0 - lam) * valid.to(x.dtype) / sizes.to(x.device, x.dtype)[:, None]
    # one solve per class, not one batched call: a batched LU runs torch's parallel loop over the batch with
    # MKL's own threaded LU inside it, and that nesting of OpenMP regions spins forever with 2+ threads
    transposed = system.transpose(-1, -2)
    weights = torch.stack([torch.linalg.solve(transposed[b], rhs[b]) for b in range(len(batch))])
    prototypes[classes.to(prototypes.device)] = torch.einsum("bn,bnd->bd", weights.to(o.device), o)


def _iterative_weights(x: torch.Tensor, lam: float, tau: float, affinity: str, budget: int) -> torch.Tensor:
    """``w`` of one large class by ``w <- b + lam S^T w``, S rebuilt in row blocks that fit ``budget``."""
    n = x.shape[0]
    block = max(1, budget // (n * _BYTES * 3))
    b = torch.full((n,), (1.0 - lam) / n, device=x.device)
    w = b.clone()
    for _ in range(_MAX_ITERATIONS):
        product = torch.zeros_like(w)
        for start in range(0, n, block):
            rows = slice(start, min(n, start + block))
            if affinity == "row":  # S^T w = sum_i w_i S[i, :]
                product += w[rows] @ _row_block(x, rows, tau)
            else:  # column-normalised S is the transpose of the row-normalised one (X X^T is symmetric)
                product[rows] = _row_block(x, rows, tau) @ w
        updated = b + lam * product
        done = (updated - w).abs().sum() <= 1e-7 * updated.abs().sum()
        w = updated
        if done:
            break
    return w


def _row_block(x: torch.Tensor, rows: slice, tau: float) -> torch.Tensor:
    """Rows ``rows`` of the row-normalised S (diagonal excluded; a lonely row gets 1 on its diagonal)."""
    logits = x[rows] @ x.T / tau
    index = torch.arange(rows.start, rows.stop, device=x.device)
    logits[torch.arange(len(index), device=x.device), index] = float("-inf")
    s = torch.nan_to_num(torch.softmax(logits, dim=1), nan=0.0)
    lonely = s.sum(1) == 0
    s[torch.arange(len(index), device=x.device)[lonely], index[lonely]] = 1.0
    return s
