"""Options of ``compat train nccl`` (no torch here: the CLI builds flags from them).

Example:
    >>> NCCLConfig().queue_size, NCCLConfig().alpha, NCCLConfig().beta
    (8192, 1.0, 0.01)
"""

from __future__ import annotations

from compat_core.config import OldSpaceOptions
from pydantic import Field


class NCCLConfig(OldSpaceOptions):
    """``nccl``: CE + alpha x feature term + beta x logit term against a queue of old embeddings."""

    queue_size: int = Field(8192, ge=1, description="K: old embeddings (with labels and logits) kept in the queue; at "
                            "least the global batch size (the original's configs: 8192).")
    alpha: float = Field(1.0, ge=0, description="Weight of the feature term (new embedding vs queued old embeddings).")
    beta: float = Field(0.01, ge=0, description="Weight of the logit term (new logits vs the new head's logits of the "
                        "queued old embeddings); 0 drops the term and the logit queue.")
    temperature: float = Field(1.0, gt=0, description="tau of both terms (the original's constructor default; no "
                               "config of it sets another).")
    credible_filter: bool = Field(False, description="Enqueue only credible samples: those whose old embedding's "
                                  "soft assignment to the old class means has entropy <= ln(C)/2 (written in the "
                                  "original but never used there).")
