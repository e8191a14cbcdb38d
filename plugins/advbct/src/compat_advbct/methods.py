"""``advbct``: CE on the new head + a point-to-set term against elastic old-class boundaries + an adversarial
term between new and old embeddings (Pan et al., CVPR 2023).

Built once in ``__init__`` from the old embeddings of the whole training set (no augmentation, or
``--old-features``): per class the centre ``mu_c`` and the largest non-outlying radius ``r_max_c``
(:func:`compat_advbct.losses.class_boundaries`). Trained with the new model: per-class boundary weights
``w_c`` (:class:`ElasticBoundary`) and a discriminator. Per step, with ``n(f_i)`` the normalised new embedding
aligned to the old dimension and ``n(o_i)`` the normalised old one::

    L = CE + p2s_weight * L_p2s + adv_weight * (E - epoch) / E * [CE(D(GRL(n(f))), 0) + CE(D(n(o)), 1)]

The gradient reversal's strength follows DANN's ``2 / (1 + exp(-10 p)) - 1`` of the global progress
``p = step / total_steps``. Only the new model is exported; the boundary and the discriminator live in the
checkpoint (they are sub-modules), so ``--resume`` continues them.

Example:
    >>> method = AdvBCT(AdvBCTConfig(theta=0.4), ctx)  # doctest: +SKIP
    >>> sorted(method(batch))  # doctest: +SKIP
    ['adv', 'ce', 'disc_acc', 'disc_active', 'grl_lambda', 'p2s', 'total', 'violating']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from compat_core.losses import cross_entropy_terms
from compat_core.methods.base import Batch, Method, MethodContext, default_param_groups
from compat_core.old_space import OldEmbeddings, align_dim, check_dims
from torch import nn

from compat_advbct.config import AdvBCTConfig
from compat_advbct.losses import (
    adversarial_terms,
    class_boundaries,
    dann_lambda,
    elastic_radius,
    point_to_set,
)

#: Below this epoch mean of ``disc_active`` the discriminator counts as dead (see ``epoch_warnings``).
DEAD_DISCRIMINATOR = 0.02


class ElasticBoundary(nn.Module):
    """Per-class centres and radii of the old embeddings (buffers) and the learnable weights ``w_c``.

    ``forward()`` gives the elastic radii ``R_c``. ``w_c`` starts at U(-1, 1) from torch's global generator,
    which the engine seeds before building the method.

    Example:
        >>> boundary = ElasticBoundary(torch.zeros(2, 3), torch.tensor([0.2, 0.6]), torch.tensor([True, True]), 0.4)
        >>> boundary().shape
        torch.Size([2])
    """

    def __init__(self, centres: torch.Tensor, r_max: torch.Tensor, has_boundary: torch.Tensor, theta: float):
        super().__init__()
        self.theta = theta
        # persistent: --resume restores exactly the metadata the run started with, whatever the thread count
        # that recomputes the old embeddings in __init__ (the values are the same up to the last bit anyway)
        self.register_buffer("centres", centres.float())
        self.register_buffer("r_max", r_max.float())
        self.register_buffer("has_boundary", has_boundary.bool())
        self.weight = nn.Parameter(torch.empty(len(r_max)).uniform_(-1.0, 1.0))

    def forward(self) -> torch.Tensor:
        return elastic_radius(self.r_max, self.weight, self.theta)


def discriminator(dim: int, hidden: int) -> nn.Module:
    """The paper's D: Linear(dim, hidden) -> BatchNorm1d -> ReLU -> Linear(hidden, 2) (log-softmax in the loss)."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, 2))


class AdvBCT(Method):
    """AdvBCT (Pan et al., CVPR 2023) on compat's engine."""

    config_class = AdvBCTConfig
    scalars = ("grl_lambda", "violating", "disc_acc", "disc_active")
    # identical on every process by construction (computed from the whole dataset): DDP need not broadcast them
    local_buffers = ("boundary.centres", "boundary.r_max", "boundary.has_boundary")

    def __init__(self, config: AdvBCTConfig, ctx: MethodContext):
        super().__init__(config, ctx)
        old = ctx.old_model  # CompatError when --old is missing
        # per_sample=False: a batch's old embeddings only show D samples of the old distribution, and the
        # boundaries are whole-dataset statistics; no term pairs an image with its own old embedding, so a
        # cache of un-augmented images is valid under augmentation
        self.old_embeddings = OldEmbeddings(old, config.old_features, ctx.data, augment=ctx.config.augment,
                                            per_sample=False, method=ctx.method_name)
        self.model = ctx.build_model(dim_policy=config.dim_policy if config.dim_policy != "error" else None)
        self.old_dim = self.old_embeddings.dim
        check_dims(self.model.embedding_dim, self.old_dim, config.dim_policy, ctx.method_name)
        features = self.old_embeddings.of_dataset(ctx.data).cpu()
        labels = torch.as_tensor(np.asarray(ctx.data.labels), dtype=torch.long)
        centres, r_max, has_boundary = class_boundaries(features, labels, len(ctx.data.classes))
        self.boundary = ElasticBoundary(centres, r_max, has_boundary, config.theta)
        self.discriminator = discriminator(self.old_dim, config.disc_hidden)
        self._note(labels, r_max, has_boundary)

    def _note(self, labels: torch.Tensor, r_max: torch.Tensor, has_boundary: torch.Tensor) -> None:
        present = torch.bincount(labels, minlength=len(r_max)) > 0
        bounded = r_max[has_boundary]
        spread = (f"r_max {float(bounded.min()):.3f}-{float(bounded.max()):.3f}, median {float(bounded.median()):.3f}"
                  if len(bounded) else "no radius")
        self.notes.append(f"advbct: old-class boundaries for {int(has_boundary.sum())} of {int(present.sum())} "
                          f"classes from {len(labels)} old embeddings ({spread}; theta {self.config.theta}); "
                          f"classes with at most one kept radius get no point-to-set term.")

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self.model(batch.images, batch.targets)
        ce = cross_entropy_terms(out.logits, batch.targets, self.ctx.config.label_smoothing)["ce"]
        new = F.normalize(align_dim(out.embedding, self.old_dim, self.config.dim_policy).float(), dim=1)
        boundary = self.boundary
        p2s, violating = point_to_set(new, batch.targets, boundary.centres, boundary(), boundary.has_boundary)
        with torch.no_grad():
            old = F.normalize(self.old_embeddings(batch.images, batch.indices).float(), dim=1)
        strength = dann_lambda(batch.step / max(1, self.ctx.total_steps))
        adversarial = adversarial_terms(self.discriminator, new, old, strength)
        epochs = self.ctx.config.epochs
        p2s = self.config.p2s_weight * p2s
        # fades out linearly over the run
        adv = self.config.adv_weight * (epochs - batch.epoch) / epochs * adversarial.loss
        return {"total": ce + p2s + adv, "ce": ce, "p2s": p2s, "adv": adv,
                "grl_lambda": torch.tensor(strength), "violating": violating.float().mean(),
                "disc_acc": adversarial.accuracy, "disc_active": adversarial.active}

    def epoch_warnings(self, epoch: int, means: Mapping[str, float]) -> list[str]:
        """A warning when the discriminator's hidden units were (almost) all inactive through the epoch."""
        active = means.get("disc_active")
        if self.config.adv_weight == 0 or active is None or active >= DEAD_DISCRIMINATOR:
            return []
        lr = self._disc_lr(self.ctx.config.lr)
        return [f"advbct: in epoch {epoch + 1} only {100 * active:.2f}% of the discriminator's hidden units were "
                f"non-zero on any sample of a batch (mean disc_active {active:.4f}): its ReLUs have died, its output "
                f"hardly depends on its input, and the adversarial term no longer trains the model. Train with a "
                f"lower --disc-lr than {lr:g} (the compat-advbct README gives the value chosen on Fashion-MNIST's "
                f"validation split)."]

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """The discriminator at ``--disc-lr`` (the run's ``lr`` when none), everything else at ``lr``; core's decay rules."""
        rest = nn.ModuleList([module for module in self.children() if module is not self.discriminator])
        return default_param_groups(rest, lr, weight_decay) + default_param_groups(self.discriminator,
                                                                                   self._disc_lr(lr),
                                                                                   weight_decay)

    def _disc_lr(self, lr: float) -> float:
        """The discriminator's learning rate: ``--disc-lr``, or the run's ``lr`` when it is none."""
        return lr if self.config.disc_lr is None else self.config.disc_lr
