"""Closed-form fits of a map ``y ~ x W + b`` between paired embeddings (rows of ``x`` and ``y``).

All in float64 on the given tensors; each returns ``(W, b)`` with ``W`` of shape (p, q).

- :func:`procrustes`: orthogonal Procrustes (Schonemann, 1966), ``W = U V^T`` from the SVD
  ``x^T y = U S V^T``: the rotation (or, between dimensions p != q, the map with orthonormal rows or
  columns) that best aligns ``x`` with ``y``; no bias, so angles and norms are kept.
- :func:`ridge`: least squares with a ridge, ``W = (Xc^T Xc / n + lambda I)^-1 Xc^T Yc / n`` on centred
  data and ``b = mean(y) - mean(x) W``.
- :func:`reduced_rank`: the ridge map restricted to rank r (reduced-rank regression, Izenman 1975): the
  fitted values projected onto their top-r right singular vectors, ``W_r = W V_r V_r^T``.

Example:
    >>> x = torch.randn(100, 8, dtype=torch.float64); q = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))[0]
    >>> w, b = procrustes(x, x @ q)
    >>> bool(torch.allclose(w, q))
    True
"""

from __future__ import annotations

import torch


def procrustes(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The orthogonal ``W`` minimising ``||x W - y||_F`` (semi-orthogonal when the dimensions differ)."""
    u, _, vh = torch.linalg.svd(x.T @ y, full_matrices=False)
    return u @ vh, torch.zeros(y.shape[1], dtype=y.dtype, device=y.device)


def ridge(x: torch.Tensor, y: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, b)`` minimising ``mean_i ||y_i - x_i W - b||^2 + lam ||W||_F^2``."""
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    n = x.shape[0]
    gram = xc.T @ xc / n + lam * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    w = torch.linalg.solve(gram, xc.T @ yc / n)
    return w, y_mean - x_mean @ w


def reduced_rank(x: torch.Tensor, y: torch.Tensor, lam: float, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ridge map of rank at most ``rank``; returns ``(W, b)`` with ``W`` of rank <= ``rank``."""
    w, _ = ridge(x, y, lam)
    x_mean, y_mean = x.mean(0), y.mean(0)
    fitted = (x - x_mean) @ w
    _, _, vh = torch.linalg.svd(fitted, full_matrices=False)
    v = vh[:rank].T
    w_r = w @ v @ v.T
    return w_r, y_mean - x_mean @ w_r
