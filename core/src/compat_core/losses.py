"""Losses shared by methods. Each returns a dict of named terms with ``total``."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy_terms(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
                        ) -> dict[str, torch.Tensor]:
    """Softmax cross-entropy as ``{"total", "ce"}``.

    Example:
        >>> terms = cross_entropy_terms(torch.zeros(1, 4), torch.tensor([0]))
        >>> round(terms["ce"].item(), 4)  # log(4)
        1.3863
    """
    ce = F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)
    return {"total": ce, "ce": ce}
