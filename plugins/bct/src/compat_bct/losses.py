"""Loss functions of the BCT family. Each is pure (tensors in, tensors out) and returns a dict of
named terms with ``total``.

Notation: ``f`` new embeddings (B, D), ``o`` old embeddings of the same images (B, D), ``y`` labels,
``n(.)`` L2 normalisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def influence_loss(old_logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
                   ) -> dict[str, torch.Tensor]:
    """BCT influence loss: softmax CE of the old classifier's logits on the new embedding (with the run's label
    smoothing, which BT^2's baseline applies to both of its CE terms).

    Example:
        >>> terms = influence_loss(torch.zeros(1, 4), torch.tensor([2]))
        >>> round(terms["influence"].item(), 4)  # log(4)
        1.3863
    """
    loss = F.cross_entropy(old_logits.float(), targets, label_smoothing=label_smoothing)
    return {"total": loss, "influence": loss}


def lwf_influence_loss(old_logits_new: torch.Tensor, old_logits_old: torch.Tensor) -> dict[str, torch.Tensor]:
    """LwF influence: ``-(1/B) sum_i sum_c p_ic log softmax(W_old f_i)_c`` with ``p = softmax(W_old o)``.

    Example:
        >>> terms = lwf_influence_loss(torch.zeros(1, 2), torch.tensor([[0.0, 0.0]]))
        >>> round(terms["influence"].item(), 4)  # log(2)
        0.6931
    """
    targets = old_logits_old.detach().float().softmax(dim=1)
    loss = -(targets * old_logits_new.float().log_softmax(dim=1)).sum(dim=1).mean()
    return {"total": loss, "influence": loss}


def l2_compat_loss(new: torch.Tensor, old: torch.Tensor, threshold: float = 0.0, form: str = "norm"
                   ) -> dict[str, torch.Tensor]:
    """``mean_i max(0, d_i - threshold)`` with ``d_i = ||n(o_i) - n(f_i)||_2`` (``form="norm"``,
    MixBCT's L2 / weakened L2) or ``d_i = mean_k (n(o_i) - n(f_i))_k^2`` (``form="squared"``, which
    with threshold 0 equals OpenBCT's ``nn.MSELoss`` on normalised features).

    Example:
        >>> terms = l2_compat_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
        >>> round(terms["l2"].item(), 4)  # sqrt(2)
        1.4142
    """
    diff = F.normalize(old.float(), dim=1) - F.normalize(new.float(), dim=1)
    if form == "norm":
        dist = diff.pow(2).sum(dim=1).clamp_min(1e-12).sqrt()
    elif form == "squared":
        dist = diff.pow(2).mean(dim=1)
    else:
        raise ValueError(f"unknown l2 form {form!r} (norm or squared)")
    loss = (dist - threshold).clamp_min(0).mean()
    return {"total": loss, "l2": loss}


def _pairwise_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (len(a), len(b)), differentiable at zero."""
    return (a[:, None, :] - b[None, :, :]).pow(2).sum(dim=-1).clamp_min(1e-12).sqrt()


def triplet_new_to_old(new: torch.Tensor, old: torch.Tensor, labels: torch.Tensor, margin: float = 1.0,
                       normalize_new: bool = True) -> dict[str, torch.Tensor]:
    """Triplet loss with anchor ``f_i`` (normalised unless ``normalize_new=False``), positive ``n(o_i)``
    (the old embedding of the same image) and negative the hardest ``n(o_j)`` with ``y_j != y_i`` in the
    batch (closest to the anchor): ``mean_i max(0, ||a_i - p_i|| - ||a_i - n_i|| + margin)`` over the
    anchors that have a negative (0 when none has).

    Example:
        >>> f = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> terms = triplet_new_to_old(f, f, torch.tensor([0, 1]), margin=1.0)
        >>> round(terms["triplet"].item(), 4)  # max(0, 0 - sqrt(2) + 1)
        0.0
    """
    anchor = F.normalize(new.float(), dim=1) if normalize_new else new.float()
    old = F.normalize(old.float(), dim=1)
    dist = _pairwise_distance(anchor, old)
    positive = dist.diagonal()
    different = labels[:, None] != labels[None, :]
    negative = dist.masked_fill(~different, float("inf")).min(dim=1).values
    valid = different.any(dim=1)
    if not bool(valid.any()):
        loss = dist.sum() * 0.0
    else:
        loss = (positive - negative + margin).clamp_min(0)[valid].mean()
    return {"total": loss, "triplet": loss}


def supcon_new_to_old(new: torch.Tensor, old: torch.Tensor, labels: torch.Tensor, temperature: float = 0.05
                      ) -> dict[str, torch.Tensor]:
    """Supervised contrastive loss from new to old embeddings (OpenBCT's ``--contra``).

    With ``s_ij = n(f_i) . n(o_j) / tau``, positives ``P_i = {j: y_j = y_i}`` (``i`` included) and
    negatives ``N_i = {k: y_k != y_i}``::

        l_ij = -log( exp(s_ij) / (exp(s_ij) + sum_{k in N_i} exp(s_ik)) )
        loss = mean_i mean_{j in P_i} l_ij

    Example:
        >>> f = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> terms = supcon_new_to_old(f, f, torch.tensor([0, 1]), temperature=1.0)
        >>> round(terms["contrastive"].item(), 4)  # -log(e / (e + 1))
        0.3133
    """
    sim = F.normalize(new.float(), dim=1) @ F.normalize(old.float(), dim=1).T / temperature
    positive = labels[:, None] == labels[None, :]
    negatives = torch.logsumexp(sim.masked_fill(positive, float("-inf")), dim=1, keepdim=True)
    per_pair = torch.logaddexp(sim, negatives) - sim  # -log(exp(s_ij) / (exp(s_ij) + sum_neg))
    per_anchor = (per_pair * positive).sum(dim=1) / positive.sum(dim=1)
    loss = per_anchor.mean()
    return {"total": loss, "contrastive": loss}


def influence_factory():
    return influence_loss


def lwf_influence_factory():
    return lwf_influence_loss


def l2_compat_factory():
    return l2_compat_loss


def triplet_factory():
    return triplet_new_to_old


def supcon_factory():
    return supcon_new_to_old
