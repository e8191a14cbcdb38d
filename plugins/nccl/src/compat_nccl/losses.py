"""NCCL's loss terms (Wu et al., "Neighborhood Consensus Contrastive Learning for Backward-Compatible
Representation", IJCAI 2022; the MixBCT repository's ``compatible_learning_loss.py``), written from the
formulas in ``shared/reference/bct-family.md`` section 2.4.

For each anchor ``a_i`` (a new embedding, or its logits) and the queued keys ``key_k`` (old embeddings,
or the new head's logits of old embeddings) with labels ``y_k``::

    L = -(1/B) sum_i (1/|P_i|) sum_{k in P_i} w_ik log softmax_k(a_i . key_k / tau)

where the softmax runs over every valid key, ``P_i = {k : y_k = y_i}`` and ``w_ik = (1 + o_i . o_k) / 2``
is the old-old cosine similarity mapped to [0, 1] (the "neighbourhood consensus" weight). Anchors with
no positive key are left out of the mean (with the batch enqueued first, every anchor has one).

Example:
    >>> a = torch.tensor([[1.0, 0.0]]); keys = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> loss = neighbourhood_contrastive(a, keys, torch.tensor([0]), torch.tensor([0, 1]), torch.ones(1, 2), 1.0)
    >>> round(float(loss), 4)  # -log(e / (e + 1))
    0.3133
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def consensus_weights(old_anchor: torch.Tensor, old_keys: torch.Tensor) -> torch.Tensor:
    """``w_ik = (1 + n(o_i) . n(o_k)) / 2`` for anchors' and keys' old embeddings, (B, K) in [0, 1]."""
    return (1 + F.normalize(old_anchor.float(), dim=1) @ F.normalize(old_keys.float(), dim=1).T) / 2


def neighbourhood_contrastive(anchors: torch.Tensor, keys: torch.Tensor, anchor_labels: torch.Tensor,
                              key_labels: torch.Tensor, weights: torch.Tensor, temperature: float,
                              valid: torch.Tensor | None = None) -> torch.Tensor:
    """The weighted supervised contrastive term above (a scalar; 0 when no anchor has a positive key).

    Args:
        anchors: (B, D), as given (normalise them first for cosine similarities).
        keys: (K, D) queued keys; ``valid`` (K,) marks the slots written so far (default: all).
        anchor_labels, key_labels: (B,) and (K,) class indices.
        weights: (B, K) ``w_ik``.
        temperature: tau.
    """
    valid = torch.ones(len(keys), dtype=torch.bool, device=keys.device) if valid is None else valid
    logits = (anchors.float() @ keys.float().T / temperature).masked_fill(~valid[None], float("-inf"))
    log_prob = logits.log_softmax(dim=1)
    positive = (anchor_labels[:, None] == key_labels[None]) & valid[None]
    count = positive.sum(dim=1)
    summed = (weights * log_prob).masked_fill(~positive, 0.0).sum(dim=1)
    has = count > 0
    if not bool(has.any()):
        return anchors.sum() * 0.0  # keeps the graph: a term, not a constant
    return -(summed[has] / count[has]).mean()


def neighbourhood_contrastive_factory():
    return neighbourhood_contrastive


def entropy_credible(old: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The original's unused credible-sample filter: ``p_ik = softmax_k(-d_ik / var(d))`` with ``d_ik`` the
    distance from ``n(o_i)`` to the L2-normalised mean of class k's normalised old embeddings (classes with
    samples only) and ``var(d)`` the variance of every ``d_ik``; sample i is credible when the entropy of
    ``p_i`` is at most ``ln(C) / 2`` (C: classes with samples).

    Example:
        >>> old = torch.tensor([[1.0, 0.0], [1.0, 0.05], [0.0, 1.0], [0.02, 1.0], [0.7, 0.7]])
        >>> entropy_credible(old, torch.tensor([0, 0, 1, 1, 1]), 2).tolist()
        [True, True, True, True, False]
    """
    from compat_core.old_space import class_means

    means, counts = class_means(old, labels, num_classes)
    present = counts > 0
    centres = F.normalize(means[present], dim=1)
    distance = torch.cdist(F.normalize(old.float(), dim=1), centres)  # (N, C present)
    spread = distance.var().clamp_min(1e-12)
    p = (-distance / spread).softmax(dim=1)
    entropy = -(p * p.clamp_min(1e-30).log()).sum(dim=1)
    return entropy <= torch.log(torch.tensor(float(int(present.sum())))) / 2
