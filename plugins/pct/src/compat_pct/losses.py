"""Loss functions of compat-pct. Pure tensor functions; the public losses return a dict of named
terms with ``total``, the ``*_per_sample`` helpers return one value per sample.

Notation: ``z_new``, ``z_old`` logits (B, C) over the *shared* classes (columns aligned), ``y`` the
label's column in that space (-1 when the label is not a shared class), ``w`` per-sample focal
weights, ``T`` temperature.

Focal distillation (Yan et al., "Positive-congruent training", CVPR 2021):
``FD = sum_i m_i w_i l_i / max(sum_i m_i, 1)`` with ``w_i = base + scale * 1[filter_i]`` and ``m_i``
the samples that take part (their label is a shared class).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FILTERS = ("all_pass", "old_correct", "neg_flip", "new_incorrect")


# -- focal weights and mixing -------------------------------------------------------------------------
def focal_weights(kd_filter: str, base: float, scale: float, old_correct: torch.Tensor,
                  new_correct: torch.Tensor) -> torch.Tensor:
    """``w_i = base + scale * indicator_i`` for the filters of the original ``--kd_filter``.

    Example:
        >>> focal_weights("neg_flip", 1.0, 5.0, torch.tensor([True, True, False]),
        ...               torch.tensor([True, False, False])).tolist()
        [1.0, 6.0, 1.0]
    """
    if kd_filter == "all_pass":
        indicator = torch.ones_like(old_correct, dtype=torch.bool)
    elif kd_filter == "old_correct":
        indicator = old_correct
    elif kd_filter == "neg_flip":
        indicator = old_correct & ~new_correct
    elif kd_filter == "new_incorrect":
        indicator = ~new_correct
    else:
        raise ValueError(f"unknown kd_filter {kd_filter!r} (one of {', '.join(FILTERS)})")
    return base + scale * indicator.float()


def weighted_mean(values: torch.Tensor, weights: torch.Tensor | None = None,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_i m_i w_i v_i / max(sum_i m_i, 1)``: the focal mean over the samples that take part
    (0, with a gradient path, when none does).

    Example:
        >>> weighted_mean(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 3.0, 9.0]),
        ...               torch.tensor([True, True, False])).item()
        3.5
    """
    terms = values if weights is None else values * weights
    if mask is None:
        return terms.mean() if terms.numel() else terms.sum()
    terms = terms.masked_fill(~mask, 0.0)  # masked_fill, not *: a NaN/inf outside the mask stays out
    return terms.sum() / mask.sum().clamp_min(1)


def mix(ce: torch.Tensor, name: str, term: torch.Tensor, kd_weight: float, mixing: str = "alpha",
        alpha: float = 0.9) -> dict[str, torch.Tensor]:
    """``alpha * lambda * term + (1 - alpha) * CE`` (``mixing="alpha"``, the original with --kd_alpha)
    or ``CE + lambda * term`` (``mixing="sum"``).

    Example:
        >>> mix(torch.tensor(2.0), "kd", torch.tensor(4.0), 0.5, "alpha", 0.75)["total"].item()
        2.0
    """
    if mixing == "alpha":
        total = alpha * kd_weight * term + (1.0 - alpha) * ce
    elif mixing == "sum":
        total = ce + kd_weight * term
    else:
        raise ValueError(f"unknown mixing {mixing!r} (alpha or sum)")
    return {"total": total, "ce": ce, name: term}


# -- logit distillation -------------------------------------------------------------------------------
def kl_per_sample(new_logits: torch.Tensor, old_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * sum_c p_old,c (log p_old,c - log p_new,c)`` with ``p = softmax(z / T)``.

    Example:
        >>> kl_per_sample(torch.zeros(1, 2), torch.zeros(1, 2), 4.0).tolist()
        [0.0]
    """
    log_new = F.log_softmax(new_logits.float() / temperature, dim=1)
    log_old = F.log_softmax(old_logits.detach().float() / temperature, dim=1)
    return (log_old.exp() * (log_old - log_new)).sum(dim=1) * temperature**2


def l2_per_sample(new_logits: torch.Tensor, old_logits: torch.Tensor) -> torch.Tensor:
    """``mean_c (z_new,c - z_old,c)^2`` (the original's ``l2`` mode averages over N x C elements).

    Example:
        >>> l2_per_sample(torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, 0.0]])).tolist()
        [5.0]
    """
    return (new_logits.float() - old_logits.detach().float()).pow(2).mean(dim=1)


def focal_distillation_loss(new_logits: torch.Tensor, old_logits: torch.Tensor, weights: torch.Tensor | None = None,
                            mask: torch.Tensor | None = None, mode: str = "kl", temperature: float = 100.0
                            ) -> dict[str, torch.Tensor]:
    """PCT's focal distillation: the weighted mean of the per-sample KL (``mode="kl"``) or logit L2.

    Example:
        >>> terms = focal_distillation_loss(torch.tensor([[1.0, 3.0]]), torch.zeros(1, 2), mode="l2")
        >>> terms["kd"].item()
        5.0
    """
    if mode == "kl":
        per_sample = kl_per_sample(new_logits, old_logits, temperature)
    elif mode == "l2":
        per_sample = l2_per_sample(new_logits, old_logits)
    else:
        raise ValueError(f"unknown distillation mode {mode!r} (kl or l2)")
    loss = weighted_mean(per_sample, weights, mask)
    return {"total": loss, "kd": loss}


# -- logit difference inhibition ------------------------------------------------------------------------
def ldi_class_mask(new_logits: torch.Tensor, old_logits: torch.Tensor, targets: torch.Tensor | None,
                   exclude_gt: bool = True, topk: int = 0, topk_by: str = "new") -> torch.Tensor:
    """Which (sample, class) pairs LDI penalises: all classes, minus the ground truth when
    ``exclude_gt``, cut to each sample's ``topk`` highest-scoring remaining classes (per row, the
    class axis: the original sorted the batch axis instead, which made top-k a no-op).

    Example:
        >>> z = torch.tensor([[0.0, 5.0, 3.0, 1.0]])
        >>> ldi_class_mask(z, z, torch.tensor([1]), topk=2).tolist()
        [[False, False, True, True]]
    """
    mask = torch.ones_like(new_logits, dtype=torch.bool)
    if exclude_gt and targets is not None:
        rows = torch.nonzero(targets >= 0).squeeze(1)
        mask[rows, targets[rows]] = False
    if topk and topk < mask.shape[1]:
        source = new_logits if topk_by == "new" else old_logits
        scores = source.detach().float().masked_fill(~mask, float("-inf"))
        chosen = torch.zeros_like(mask)
        chosen.scatter_(1, scores.topk(topk, dim=1).indices, True)
        mask &= chosen
    return mask


def ldi_per_sample(new_logits: torch.Tensor, old_logits: torch.Tensor, targets: torch.Tensor | None = None, *,
                   p: float = 2.0, margin: float = 0.5, exclude_gt: bool = True, p_norm: bool = False,
                   topk: int = 0, topk_by: str = "new") -> torch.Tensor:
    """LDI (ELODI, Zhao et al., arXiv:2205.06265, 2022): with ``d_c = max(|z_new,c - z_old,c| - margin, 0)``,
    ``l_i = mean over penalised classes of d_c^p``, or ``(sum d_c^p)^(1/p)`` with ``p_norm``.

    Example:
        >>> new, old = torch.tensor([[3.0, 0.0, 1.0]]), torch.zeros(1, 3)
        >>> ldi_per_sample(new, old, torch.tensor([1]), p=2, margin=0.5).tolist()  # (2.5^2 + 0.5^2) / 2
        [3.25]
    """
    mask = ldi_class_mask(new_logits, old_logits, targets, exclude_gt, topk, topk_by)
    excess = ((new_logits.float() - old_logits.detach().float()).abs() - margin).clamp_min(0.0)
    penalty = excess.pow(p).masked_fill(~mask, 0.0).sum(dim=1)
    if p_norm:
        return penalty.clamp_min(1e-12).pow(1.0 / p)
    return penalty / mask.sum(dim=1).clamp_min(1)


def ldi_loss(new_logits: torch.Tensor, old_logits: torch.Tensor, targets: torch.Tensor | None = None,
             weights: torch.Tensor | None = None, mask: torch.Tensor | None = None, **options) -> dict[str, torch.Tensor]:
    """The focal mean of :func:`ldi_per_sample` (options: p, margin, exclude_gt, p_norm, topk, topk_by).

    Example:
        >>> ldi_loss(torch.tensor([[3.0, 0.0, 1.0]]), torch.zeros(1, 3), torch.tensor([1]))["ldi"].item()
        3.25
    """
    loss = weighted_mean(ldi_per_sample(new_logits, old_logits, targets, **options), weights, mask)
    return {"total": loss, "ldi": loss}


# -- contrastive neighbourhood alignment ---------------------------------------------------------------
def cna_per_anchor(new_embeddings: torch.Tensor, teacher_similarity: torch.Tensor, anchors: torch.Tensor,
                   temperature: float = 0.01, neighbors: int = 1, form: str = "out") -> torch.Tensor:
    """CNA loss of each anchor.

    ``new_embeddings`` (M, D) are the whole (possibly gathered) batch; ``anchors`` (n,) the rows
    whose loss is computed; ``teacher_similarity`` (n, M) the teacher's similarity of each anchor to
    every sample. Positives ``P(i)`` are the ``neighbors`` most teacher-similar samples other than
    ``i``; ``s_ij = <n(f_i), n(f_j)> / tau`` for the new model; ``log Z_i = logsumexp_{a != i} s_ia``.
    ``form="out"``: ``l_i = mean_{j in P(i)} (log Z_i - s_ij)``; ``form="in"``:
    ``l_i = log Z_i - logsumexp_{j in P(i)} s_ij``.

    Example:
        >>> f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
        >>> t = f @ f.T
        >>> cna_per_anchor(f, t, torch.arange(3), temperature=1.0).tolist()[0]  # log(e^0 + e^1) - 1
        0.31326162815093994
    """
    count = new_embeddings.shape[0]
    normed = F.normalize(new_embeddings.float(), dim=1)
    sim = normed[anchors] @ normed.T / temperature
    if count < 2:  # no other sample: nothing to align
        return sim.sum(dim=1) * 0.0
    is_self = torch.zeros_like(sim, dtype=torch.bool)
    is_self[torch.arange(len(anchors), device=sim.device), anchors] = True
    teacher = teacher_similarity.detach().float().masked_fill(is_self, float("-inf"))
    positives = teacher.topk(min(neighbors, count - 1), dim=1).indices
    log_partition = torch.logsumexp(sim.masked_fill(is_self, float("-inf")), dim=1)
    positive_scores = sim.gather(1, positives)
    if form == "out":
        return (log_partition[:, None] - positive_scores).mean(dim=1)
    if form == "in":
        return log_partition - torch.logsumexp(positive_scores, dim=1)
    raise ValueError(f"unknown CNA form {form!r} (out or in)")


def teacher_similarity(teacher_embeddings: list[torch.Tensor], anchors: torch.Tensor,
                       weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarity (n, M) of the anchors to every sample, averaged over the teachers with
    ``weights`` (each teacher compares only with itself, so their dimensions may differ).

    Example:
        >>> e = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        >>> teacher_similarity([e, e], torch.tensor([0])).tolist()
        [[1.0, 0.0]]
    """
    weights = torch.ones(len(teacher_embeddings)) if weights is None else weights
    total = None
    for weight, embeddings in zip(weights.tolist(), teacher_embeddings, strict=True):
        normed = F.normalize(embeddings.detach().float(), dim=1)
        part = weight * (normed[anchors] @ normed.T)
        total = part if total is None else total + part
    return total / float(weights.sum())


def cna_loss(new_embeddings: torch.Tensor, teacher_embeddings: torch.Tensor, weights: torch.Tensor | None = None,
             temperature: float = 0.01, neighbors: int = 1, form: str = "out") -> dict[str, torch.Tensor]:
    """CNA of one batch against one teacher in one process (every sample is an anchor).

    Example:
        >>> f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
        >>> round(cna_loss(f, f, temperature=1.0)["cna"].item(), 4)  # (0.3133 + log 2 + 0.3133) / 3
        0.4399
    """
    anchors = torch.arange(len(new_embeddings), device=new_embeddings.device)
    similarity = teacher_similarity([teacher_embeddings], anchors)
    loss = weighted_mean(cna_per_anchor(new_embeddings, similarity, anchors, temperature, neighbors, form), weights)
    return {"total": loss, "cna": loss}


def focal_distillation_factory():
    return focal_distillation_loss


def ldi_factory():
    return ldi_loss


def cna_factory():
    return cna_loss
