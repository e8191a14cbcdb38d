"""The FCT transformation h(old embedding, side information) -> new embedding.

Architecture of the papers' reference code (``MLP_BN_SIDE_PROJECTION``), written with linear layers:
a 1x1 convolution on a (N, C, 1, 1) tensor followed by 2-d BatchNorm computes exactly what a linear
layer followed by 1-d BatchNorm computes on (N, C).

* old branch:  d_old  -> old_hidden  -> branch_dim     (linear without bias + BatchNorm + ReLU, twice)
* side branch: d_side -> side_hidden -> branch_dim     (the same)
* mixer: concat (2 x branch_dim) -> mixer_width (x mixer_layers, each linear + BN + ReLU) -> d_new
  (last layer: linear with bias, no BatchNorm, no ReLU)

Defaults: old_hidden = 2 d_old, side_hidden = 2 d_side, branch_dim = 2 d_new, mixer_width = 2048,
mixer_layers = 2. FastFill adds an uncertainty head ``Linear(d_new, 1)`` on the transformed embedding;
its output sigma is a per-sample log-variance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
from torch import nn


@dataclass
class TransformationSpec:
    """Sizes of a transformation; stored in the run's ``model.json`` to rebuild it.

    Example:
        >>> spec = TransformationSpec.from_dims(128, 128, 128)
        >>> spec.branch_dim, spec.mixer_width
        (256, 2048)
    """

    old_dim: int
    side_dim: int
    new_dim: int
    old_hidden: int
    side_hidden: int
    branch_dim: int
    mixer_width: int = 2048
    mixer_layers: int = 2
    uncertainty: bool = False

    @classmethod
    def from_dims(cls, old_dim: int, side_dim: int, new_dim: int, *, old_hidden: int | None = None,
                  side_hidden: int | None = None, branch_dim: int | None = None, mixer_width: int = 2048,
                  mixer_layers: int = 2, uncertainty: bool = False) -> TransformationSpec:
        """Fill the widths left as None with the original's defaults (twice the input or output size)."""
        return cls(old_dim=old_dim, side_dim=side_dim, new_dim=new_dim, old_hidden=old_hidden or 2 * old_dim,
                   side_hidden=side_hidden or 2 * side_dim, branch_dim=branch_dim or 2 * new_dim,
                   mixer_width=mixer_width, mixer_layers=mixer_layers, uncertainty=uncertainty)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TransformationSpec:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class TransformOutput(NamedTuple):
    embedding: torch.Tensor
    sigma: torch.Tensor | None  # (N,) log-variance, or None without an uncertainty head


def block(d_in: int, d_out: int) -> nn.Sequential:
    """Linear (no bias: BatchNorm's shift replaces it) -> BatchNorm -> ReLU."""
    return nn.Sequential(nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True))


class Transformation(nn.Module):
    """h(old, side) = mixer([old_branch(old); side_branch(side)]), plus sigma when ``spec.uncertainty``.

    Example:
        >>> h = Transformation(TransformationSpec.from_dims(4, 3, 2, mixer_width=8)).eval()
        >>> out = h(torch.zeros(5, 4), torch.zeros(5, 3))
        >>> out.embedding.shape, out.sigma
        (torch.Size([5, 2]), None)
    """

    def __init__(self, spec: TransformationSpec):
        super().__init__()
        self.spec = spec
        self.old_branch = nn.Sequential(block(spec.old_dim, spec.old_hidden), block(spec.old_hidden, spec.branch_dim))
        self.side_branch = nn.Sequential(block(spec.side_dim, spec.side_hidden),
                                         block(spec.side_hidden, spec.branch_dim))
        widths = [2 * spec.branch_dim] + [spec.mixer_width] * spec.mixer_layers
        hidden = [block(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        self.mixer = nn.Sequential(*hidden, nn.Linear(widths[-1], spec.new_dim))
        self.uncertainty_head = nn.Linear(spec.new_dim, 1) if spec.uncertainty else None

    def forward(self, old: torch.Tensor, side: torch.Tensor) -> TransformOutput:
        mixed = torch.cat([self.old_branch(old), self.side_branch(side)], dim=1)
        embedding = self.mixer(mixed)
        # As in FastFill, sigma is read off the transformed embedding (gradients reach h through it).
        sigma = None if self.uncertainty_head is None else self.uncertainty_head(embedding).squeeze(1)
        return TransformOutput(embedding, sigma)
