"""Classifier heads: linear softmax, NormFace, CosFace and ArcFace.

Normalized heads compute ``s * cos(theta)`` with class weights normalized per class (row-wise; the
original OpenBCT normalizes along the class axis, a bug we do not copy). Margins are applied only to
the target logit and only when targets are passed (training).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_SCALE = {"normface": 30.0, "cosface": 64.0, "arcface": 64.0}
DEFAULT_MARGIN = {"cosface": 0.4, "arcface": 0.5}


class LinearHead(nn.Module):
    """Plain softmax classifier ``W f + b``."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(dim, num_classes)

    @property
    def weight(self) -> torch.Tensor:
        return self.fc.weight

    @property
    def bias(self) -> torch.Tensor:
        return self.fc.bias

    def forward(self, embedding: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(embedding)


class CosineHead(nn.Module):
    """``s * cos`` logits with an optional additive (CosFace) or angular (ArcFace) target margin.

    Example:
        >>> head = CosineHead(4, 3, scale=64.0, margin=0.5, kind="arcface")
        >>> head(torch.randn(2, 4), torch.tensor([0, 2])).shape
        torch.Size([2, 3])
    """

    def __init__(self, dim: int, num_classes: int, scale: float, margin: float = 0.0, kind: str = "normface"):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim).normal_(0, 0.01))
        self.scale, self.margin, self.kind = scale, margin, kind

    def cosine(self, embedding: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embedding, dim=1), F.normalize(self.weight, dim=1))

    def forward(self, embedding: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        cos = self.cosine(embedding).float()
        if targets is not None and self.margin > 0:
            cos = self._with_margin(cos, targets)
        return cos * self.scale

    def _with_margin(self, cos: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(targets), device=cos.device)
        target_cos = cos[rows, targets].clamp(-1 + 1e-7, 1 - 1e-7)
        if self.kind == "cosface":
            new_target = target_cos - self.margin
        else:
            # insightface's ArcFace: cos(theta + m) while theta + m < pi, else a linear penalty so the
            # logit stays monotonic in theta.
            sin = torch.sqrt(1.0 - target_cos**2)
            cos_m, sin_m = math.cos(self.margin), math.sin(self.margin)
            with_margin = target_cos * cos_m - sin * sin_m
            threshold = math.cos(math.pi - self.margin)
            new_target = torch.where(target_cos > threshold, with_margin,
                                     target_cos - math.sin(math.pi - self.margin) * self.margin)
        cos = cos.clone()
        cos[rows, targets] = new_target
        return cos


def build_head(kind: str, dim: int, num_classes: int, scale: float | None = None,
               margin: float | None = None) -> nn.Module:
    if kind == "linear":
        return LinearHead(dim, num_classes)
    scale = DEFAULT_SCALE[kind] if scale is None else scale
    margin = DEFAULT_MARGIN.get(kind, 0.0) if margin is None else margin
    if kind == "normface":
        margin = 0.0
    return CosineHead(dim, num_classes, scale=scale, margin=margin, kind=kind)


def head_settings(kind: str, scale: float | None, margin: float | None) -> dict:
    """The head description stored in model.json (defaults resolved)."""
    if kind == "linear":
        return {"type": "linear"}
    return {"type": kind, "scale": DEFAULT_SCALE[kind] if scale is None else scale,
            "margin": 0.0 if kind == "normface" else (DEFAULT_MARGIN[kind] if margin is None else margin)}
