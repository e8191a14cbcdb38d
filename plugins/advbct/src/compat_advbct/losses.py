"""AdvBCT's pieces (Pan et al., "Boundary-aware Backward-Compatible Representation via Adversarial Learning
in Image Retrieval", CVPR 2023), written from the formulas in ``shared/reference/bct-family.md`` section 2.4.

With ``n(x) = x / ||x||``, ``o_i`` the old and ``f_i`` the new embedding of training image i:

* old-class metadata: ``mu_c = mean n(o_i)`` over class c (not re-normalised), radii ``r_i = ||n(o_i) - mu_c||``,
  Tukey's 1.5 x IQR fences drop outlying radii in classes of at least 4 samples, ``r_max_c`` = the largest
  kept radius; a class with at most one kept radius has no boundary;
* elastic boundary: ``e_c = |r_max_c - theta| sigmoid(w_c)``, ``R_c = r_max_c + e_c`` if ``r_max_c < theta``
  else ``r_max_c - e_c``;
* point-to-set: the mean, over samples outside their class's boundary, of ``||n(f_i) - mu_y|| - R_y``;
* adversarial: a discriminator tells new (label 0, through a gradient reversal layer) from old (label 1).

Example:
    >>> centres, r_max, has = class_boundaries(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]), 1)
    >>> centres.tolist(), [round(r, 4) for r in r_max.tolist()], has.tolist()
    ([[0.5, 0.5]], [0.7071], [True])
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from compat_core.old_space import class_means


def class_quantiles(values: torch.Tensor, labels: torch.Tensor, num_classes: int, q: float) -> torch.Tensor:
    """The ``q`` quantile of ``values`` per class, linear interpolation (as ``torch.quantile``); 0 for empty classes.

    Vectorised: one sort by (label, value), then each class's two order statistics are gathered at once.

    Example:
        >>> class_quantiles(torch.tensor([4.0, 1.0, 2.0, 3.0, 9.0]), torch.tensor([0, 0, 0, 0, 1]), 3, 0.5).tolist()
        [2.5, 9.0, 0.0]
    """
    order = torch.argsort(values, stable=True)
    order = order[torch.argsort(labels[order], stable=True)]  # by label, then by value within a label
    ordered = values[order]
    counts = torch.bincount(labels, minlength=num_classes)
    starts = counts.cumsum(0) - counts
    position = q * (counts - 1).clamp_min(0).to(values.dtype)
    low, high = position.floor().long(), position.ceil().long()
    last = max(len(values) - 1, 0)
    below, above = ordered[(starts + low).clamp(0, last)], ordered[(starts + high).clamp(0, last)]
    value = below + (position - low.to(values.dtype)) * (above - below)
    return torch.where(counts > 0, value, torch.zeros_like(value))


@torch.no_grad()
def class_boundaries(features: torch.Tensor, labels: torch.Tensor, num_classes: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Old-class metadata: ``(centres (C, D), r_max (C,), has_boundary (C,))`` from old embeddings.

    Args:
        features: (N, D) old embeddings of the training images (normalised here).
        labels: (N,) class indices.
        num_classes: C; classes without samples get a zero centre, ``r_max`` 0 and no boundary.

    Example:
        >>> feats = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> _, r_max, has = class_boundaries(feats, torch.tensor([0, 0, 0, 0]), 2)
        >>> [round(r, 4) for r in r_max.tolist()], has.tolist()  # the 4th radius is a Tukey outlier
        ([0.3536, 0.0], [True, False])
    """
    normed = F.normalize(features.float(), dim=1)
    centres, counts = class_means(normed, labels, num_classes)  # means of unit vectors, not re-normalised
    radii = (normed - centres[labels]).norm(dim=1)
    q1 = class_quantiles(radii, labels, num_classes, 0.25)
    q3 = class_quantiles(radii, labels, num_classes, 0.75)
    iqr = q3 - q1
    inside = (radii >= (q1 - 1.5 * iqr)[labels]) & (radii <= (q3 + 1.5 * iqr)[labels])
    keep = inside | (counts < 4)[labels]  # quartiles of fewer than 4 radii say nothing about outliers
    r_max = torch.zeros(num_classes, dtype=radii.dtype).scatter_reduce(
        0, labels[keep], radii[keep], reduce="amax", include_self=True)  # radii >= 0, so 0 is a neutral start
    kept = torch.bincount(labels[keep], minlength=num_classes)
    return centres, r_max, kept >= 2


def elastic_radius(r_max: torch.Tensor, weights: torch.Tensor, theta: float) -> torch.Tensor:
    """``R_c``: ``r_max_c`` moved towards ``theta`` by ``e_c = |r_max_c - theta| sigmoid(w_c)``.

    Example:
        >>> [round(r, 4) for r in elastic_radius(torch.tensor([0.2, 0.6]), torch.zeros(2), 0.4).tolist()]
        [0.3, 0.5]
    """
    extent = (r_max - theta).abs() * torch.sigmoid(weights)
    return torch.where(r_max < theta, r_max + extent, r_max - extent)


def point_to_set(normed: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor, radius: torch.Tensor,
                 has_boundary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean excess distance of the samples outside their class's boundary, and which samples those are.

    Args:
        normed: (B, D) L2-normalised new embeddings (aligned to the old dimension).
        labels: (B,) class indices.
        centres, radius, has_boundary: (C, D), (C,) and (C,) per-class ``mu_c``, ``R_c`` and boundary flags.

    Returns:
        ``(loss, violating)``: the scalar (0, still in the graph, when no sample violates) and the (B,) mask.

    Example:
        >>> loss, out = point_to_set(torch.tensor([[0.0, 1.0]]), torch.tensor([0]), torch.tensor([[1.0, 0.0]]),
        ...                          torch.tensor([1.0]), torch.tensor([True]))
        >>> round(float(loss), 4), out.tolist()  # sqrt(2) - 1
        (0.4142, [True])
    """
    excess = (normed - centres[labels]).norm(dim=1) - radius[labels]
    violating = has_boundary[labels] & (excess > 0)
    # a masked sum rather than indexing: with no violator the term is an exact 0 that still reaches every
    # parameter (DDP expects a gradient for each one every step)
    loss = (excess * violating).sum() / violating.sum().clamp_min(1)
    return loss, violating


def point_to_set_factory():
    return point_to_set


class _GradientReversal(torch.autograd.Function):
    """Identity forward, gradient times ``-strength`` backward (DANN). Lives here: AdvBCT is its only user."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.strength * grad, None


def reverse_gradient(x: torch.Tensor, strength: float) -> torch.Tensor:
    """``x`` unchanged; its gradient multiplied by ``-strength`` on the way back.

    Example:
        >>> x = torch.ones(2, requires_grad=True)
        >>> reverse_gradient(x, 0.5).sum().backward()
        >>> x.grad.tolist()
        [-0.5, -0.5]
    """
    return _GradientReversal.apply(x, float(strength))


def dann_lambda(progress: float) -> float:
    """The DANN schedule ``2 / (1 + exp(-10 p)) - 1`` of training progress ``p`` (clamped to [0, 1]).

    Example:
        >>> dann_lambda(0.0), round(dann_lambda(1.0), 6)
        (0.0, 0.999909)
    """
    p = min(max(float(progress), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0


class AdversarialTerms(NamedTuple):
    """What :func:`adversarial_terms` measures on one batch."""

    loss: torch.Tensor  # CE(D(GRL(new)), 0) + CE(D(old), 1)
    accuracy: torch.Tensor  # D's accuracy on both halves
    active: torch.Tensor  # share of D's last hidden units that are non-zero on at least one row of the batch


def adversarial_terms(discriminator: torch.nn.Sequential, new: torch.Tensor, old: torch.Tensor, strength: float
                      ) -> AdversarialTerms:
    """``CE(D(GRL(new)), 0) + CE(D(old), 1)``, the discriminator's accuracy, and how many of its units live.

    Both halves go through D as one batch: its BatchNorm then normalises with statistics of both domains
    (two calls would centre each domain on its own mean and hide exactly the shift D should see), and the
    batch has at least two rows even when a process holds a single sample. ``old`` is detached.

    ``active`` watches for the failure of ReLU discriminators: once every hidden unit is 0 on every input (a
    too-large step drives the BatchNorm shifts below the units' range), D's output is a constant, the
    term's value stays at ``2 ln 2`` at best and no gradient reaches the model.

    Args:
        discriminator: a ``Sequential`` whose last module is the output layer; ``active`` is measured on the
            input of that layer.
        new, old: (B, D) and (B', D) embeddings; ``new`` goes through the gradient reversal.
        strength: the reversal's strength (DANN's lambda).

    Example:
        >>> disc = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
        >>> terms = adversarial_terms(disc, torch.ones(3, 2), torch.zeros(3, 2), 1.0)
        >>> terms.loss.shape, 0 <= float(terms.accuracy) <= 1, 0 <= float(terms.active) <= 1
        (torch.Size([]), True, True)
    """
    hidden = discriminator[:-1](torch.cat([reverse_gradient(new, strength), old.detach()]))
    logits = discriminator[-1](hidden).float()
    domain = torch.cat([torch.zeros(len(new), dtype=torch.long, device=logits.device),
                        torch.ones(len(old), dtype=torch.long, device=logits.device)])
    n = len(new)
    loss = F.cross_entropy(logits[:n], domain[:n]) + F.cross_entropy(logits[n:], domain[n:])
    accuracy = (logits.detach().argmax(dim=1) == domain).float().mean()
    active = (hidden.detach() != 0).any(dim=0).float().mean()
    return AdversarialTerms(loss, accuracy, active)
