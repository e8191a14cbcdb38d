"""``baseline``: plain supervised training with the chosen head.

It trains old models, and new models trained independently of the old one (the reference point
every compatible method is compared with).
"""

from __future__ import annotations

import torch

from compat_core.losses import cross_entropy_terms
from compat_core.methods.base import Batch, Method, MethodContext
from compat_core.methods.configs import BaselineConfig


class Baseline(Method):
    """Cross-entropy on the new model's head (with the head's margin, if any)."""

    config_class = BaselineConfig
    uses_old_model = False

    def __init__(self, config: BaselineConfig, ctx: MethodContext):
        super().__init__(config, ctx)
        self.model = ctx.build_model()

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self.model(batch.images, batch.targets)
        return cross_entropy_terms(out.logits, batch.targets, self.ctx.config.label_smoothing)
