"""Losses of FCT and FastFill. Each returns a dict of named terms with ``total``.

* FCT: ``mean_i l_sim(phi_new(x_i), h_i)``; with ``mse`` this is ``nn.MSELoss`` (mean over the batch
  and the dimensions).
* FastFill: ``mean_i [ 1/2 exp(-sigma_i) (mu_sim l_sim,i + mu_disc l_disc,i) + mu_u sigma_i ]`` with
  ``l_disc,i`` the label-smoothed cross-entropy of the new model's frozen classifier on ``h_i``
  (Kendall and Gal's heteroscedastic form: sigma is a per-sample log-variance).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SIMILARITIES = ("mse", "l1", "cosine")


def similarity_per_sample(prediction: torch.Tensor, target: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Per-sample distance (N,): ``mse`` = mean squared error over dims, ``l1`` = mean absolute error,
    ``cosine`` = 1 - cos(prediction, target).

    Example:
        >>> similarity_per_sample(torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, 1.0]])).tolist()
        [2.5]
    """
    if kind == "mse":
        return (prediction - target).pow(2).mean(dim=1)
    if kind == "l1":
        return (prediction - target).abs().mean(dim=1)
    if kind == "cosine":
        return 1.0 - F.cosine_similarity(prediction, target, dim=1)
    raise ValueError(f"similarity must be one of {SIMILARITIES}, got {kind!r}")


def label_smoothing_ce_per_sample(logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """``(1 - eps) * NLL(y) + eps * mean_c(-log p_c)`` per sample (N,); eps = 0 is plain cross-entropy.

    Example:
        >>> ce = label_smoothing_ce_per_sample(torch.zeros(1, 4), torch.tensor([2]), 0.1)
        >>> round(float(ce), 4)  # uniform prediction: log 4 whatever eps
        1.3863
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    nll = -log_p.gather(1, targets[:, None]).squeeze(1)
    return (1.0 - smoothing) * nll - smoothing * log_p.mean(dim=1)


def fct_loss(prediction: torch.Tensor, target: torch.Tensor, similarity: str = "mse") -> dict[str, torch.Tensor]:
    """FCT: the batch mean of the per-sample distance between h and the new embedding.

    Example:
        >>> fct_loss(torch.ones(2, 3), torch.zeros(2, 3))["total"].item()
        1.0
    """
    term = similarity_per_sample(prediction.float(), target.float(), similarity).mean()
    return {"total": term, "similarity": term}


def uncertainty_weighted(per_sample: torch.Tensor, sigma: torch.Tensor, weight: float) -> torch.Tensor:
    """``mean_i [ 1/2 exp(-sigma_i) l_i + weight * sigma_i ]``; its minimum in sigma_i is at
    ``sigma_i = log(l_i / (2 weight))``.

    Example:
        >>> uncertainty_weighted(torch.tensor([2.0]), torch.tensor([0.0]), 0.5).item()
        1.0
    """
    return (0.5 * torch.exp(-sigma) * per_sample + weight * sigma).mean()


def fastfill_loss(prediction: torch.Tensor, target: torch.Tensor, logits: torch.Tensor | None,
                  labels: torch.Tensor, sigma: torch.Tensor | None, *, similarity: str = "mse",
                  similarity_weight: float = 1.0, discriminative_weight: float = 1.0,
                  uncertainty_weight: float = 0.5, smoothing: float = 0.1) -> dict[str, torch.Tensor]:
    """FastFill's loss; without ``sigma`` the plain mean of the weighted per-sample terms.

    Args:
        prediction: (N, D) transformed old embeddings h.
        target: (N, D) new-model embeddings of the same images.
        logits: (N, C) the new model's frozen classifier applied to ``prediction`` (None when
            ``discriminative_weight`` is 0).
        labels: (N,) class indices of the new model's classifier.
        sigma: (N,) predicted log-variance, or None.

    Returns:
        ``total``, ``similarity`` and ``discriminative`` (batch means of the unweighted per-sample
        terms) and, with ``sigma``, ``sigma`` (its batch mean).

    Example:
        >>> terms = fastfill_loss(torch.ones(1, 2), torch.zeros(1, 2), torch.zeros(1, 3), torch.tensor([0]),
        ...                       torch.tensor([0.0]), smoothing=0.0)
        >>> round(terms["total"].item(), 4)  # 1/2 (1 + log 3) + 0
        1.0493
    """
    sim = similarity_per_sample(prediction.float(), target.float(), similarity)
    per_sample = similarity_weight * sim
    terms = {"similarity": sim.mean()}
    if logits is not None and discriminative_weight > 0:
        disc = label_smoothing_ce_per_sample(logits, labels, smoothing)
        per_sample = per_sample + discriminative_weight * disc
        terms["discriminative"] = disc.mean()
    if sigma is None:
        return {"total": per_sample.mean(), **terms}
    sigma = sigma.float()
    return {"total": uncertainty_weighted(per_sample, sigma, uncertainty_weight), **terms, "sigma": sigma.mean()}


def fct_loss_factory(similarity: str = "mse"):
    """Registered as ``fct_similarity``: ``loss(prediction=, target=)``."""
    return lambda prediction, target: fct_loss(prediction, target, similarity)


def fastfill_loss_factory(**weights):
    """Registered as ``fastfill``: ``loss(prediction=, target=, logits=, labels=, sigma=)``."""
    return lambda prediction, target, logits, labels, sigma: fastfill_loss(prediction, target, logits, labels,
                                                                           sigma, **weights)
