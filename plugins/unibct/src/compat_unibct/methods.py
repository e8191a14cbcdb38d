"""``unibct``: CE on the new head; from the first refinement epoch, plus ``weight`` x CE of the normalised new
embedding (aligned to the old dimension) against refined old-feature class prototypes.

At the start of each epoch in ``refine_epochs`` the prototypes are rebuilt
(:func:`compat_unibct.refine.refined_prototypes`): the current model embeds the whole training set (eval
mode, no augmentation), the old features come from the old model once at construction (or from
``--old-features``). The epochs before the first refinement are the warm-up (CE only).

The prototypes and the number of refinements done are persistent buffers: the per-epoch checkpoint holds
them and ``--resume`` continues with exactly those prototypes. Under DDP, process 0 refines and the
engine broadcasts the result once, after ``on_epoch_start`` (``Method.synced_buffers``), so every process
trains against the same prototypes.

Example:
    >>> method = UniBCT(UniBCTConfig(refine_epochs=[1]), ctx)  # doctest: +SKIP
    >>> method.on_epoch_start(1); sorted(method(batch))  # doctest: +SKIP
    ['ce', 'prototype', 'total']
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from compat_core.errors import CompatError
from compat_core.losses import cross_entropy_terms
from compat_core.methods.base import Batch, Method, MethodContext
from compat_core.old_space import OldEmbeddings, align_dim, check_dims, embed_dataset

from compat_unibct.config import UniBCTConfig
from compat_unibct.refine import refined_prototypes


class UniBCT(Method):
    """Universal BCT (Zhang et al., IJCAI 2022) on compat's engine."""

    config_class = UniBCTConfig
    synced_buffers = ("prototypes", "refinements")

    def __init__(self, config: UniBCTConfig, ctx: MethodContext):
        super().__init__(config, ctx)
        _check_refine_epochs(config.refine_epochs, ctx.config.epochs)
        old = ctx.old_model  # CompatError when --old is missing
        old_embeddings = OldEmbeddings(old, config.old_features, ctx.data, augment=ctx.config.augment,
                                       per_sample=False, method=ctx.method_name)
        self.model = ctx.build_model(dim_policy=config.dim_policy if config.dim_policy != "error" else None)
        self.old_dim = old_embeddings.dim
        check_dims(self.model.embedding_dim, self.old_dim, config.dim_policy, ctx.method_name)
        self.labels = torch.as_tensor(np.asarray(ctx.data.labels), dtype=torch.long)
        self.num_classes = len(ctx.data.classes)
        # the old model is frozen: its features of the training set are computed once (kept on the CPU)
        self.old_features = old_embeddings.of_dataset(ctx.data).float().cpu() if ctx.rank == 0 else None
        self.register_buffer("prototypes", torch.zeros(self.num_classes, self.old_dim))
        self.register_buffer("refinements", torch.zeros((), dtype=torch.long))
        if config.refine_epochs:
            self.notes.append(f"unibct: warm-up (CE only) for {min(config.refine_epochs)} epoch(s); prototypes "
                              f"refined at the start of epoch(s) "
                              f"{', '.join(str(e + 1) for e in sorted(config.refine_epochs))} (1-based)")

    def on_epoch_start(self, epoch: int) -> None:
        if epoch not in self.config.refine_epochs or self.ctx.rank != 0:
            return  # other processes receive process 0's prototypes (synced_buffers)
        new = align_dim(embed_dataset(self.model, self.ctx.data), self.old_dim, self.config.dim_policy)
        device = self.prototypes.device
        self.prototypes.copy_(refined_prototypes(
            new.to(device), self.old_features.to(device), self.labels.to(device), self.num_classes,
            lam=self.config.lam, tau=self.config.tau, affinity=self.config.affinity,
            memory_mb=self.config.memory_mb))
        self.refinements += 1

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self.model(batch.images, batch.targets)
        terms = cross_entropy_terms(out.logits, batch.targets, self.ctx.config.label_smoothing)
        if int(self.refinements) == 0:  # warm-up: no prototypes yet
            return terms
        anchors = F.normalize(align_dim(out.embedding, self.old_dim, self.config.dim_policy).float(), dim=1)
        logits = self.config.scale * anchors @ self.prototypes.T
        prototype = F.cross_entropy(logits, batch.targets)
        return {"total": terms["ce"] + self.config.weight * prototype, "ce": terms["ce"], "prototype": prototype}


def _check_refine_epochs(epochs: list[int], run_epochs: int) -> None:
    beyond = sorted(e for e in epochs if e >= run_epochs or e < 0)
    if beyond:
        scaled = sorted({max(0, min(run_epochs - 1, round(run_epochs * k / 3))) for k in (1, 2)})
        raise CompatError(f"`compat train unibct`: --refine-epochs {', '.join(map(str, epochs))} lie(s) outside this "
                          f"{run_epochs}-epoch run (epochs are 0-based, so each must be < {run_epochs}); the "
                          f"original's 10 and 20 belong to a run whose learning rate decays at epochs 20, 26 and 32. "
                          f"Pass e.g. --refine-epochs {','.join(map(str, scaled))}, or train longer with --epochs.")
    if len(set(epochs)) != len(epochs):
        raise CompatError(f"`compat train unibct`: --refine-epochs {', '.join(map(str, epochs))} names an epoch twice.")
