"""``nccl``: CE on the new head + alpha x feature term + beta x logit term against a queue of old embeddings.

Per step: the global batch's normalised old embeddings, labels and (for the logit term) the new head's
logits of those old embeddings are gathered from every process and enqueued *before* the loss, so every
process holds the same queue (declared in ``Method.local_buffers``: DDP does not broadcast it). Then for
each local sample i, with ``f_i`` the new embedding (aligned to the old dimension) and ``l_i`` its logits:

* feature term: anchors ``n(f_i)``, keys the queued ``n(o_k)``;
* logit term: anchors ``n(l_i)``, keys the queued logits ``n(z_k)`` (both L2-normalised, see the README);

both weighted by ``w_ik = (1 + n(o_i) . n(o_k)) / 2`` (:mod:`compat_nccl.losses`). The queue and its write
position are buffers, so ``--resume`` continues with exactly the queue the run was killed with.

Example:
    >>> method = NCCL(NCCLConfig(queue_size=1024), ctx)  # doctest: +SKIP
    >>> sorted(method(batch))  # doctest: +SKIP
    ['ce', 'feature', 'logit', 'queue_fill', 'total']
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from compat_core.distributed import gather
from compat_core.errors import CompatError
from compat_core.losses import cross_entropy_terms
from compat_core.methods.base import Batch, Method, MethodContext
from compat_core.old_space import OldEmbeddings, align_dim, check_dims
from compat_core.queue import FeatureQueue

from compat_nccl.config import NCCLConfig
from compat_nccl.losses import consensus_weights, entropy_credible, neighbourhood_contrastive


class NCCL(Method):
    """NCCL (Wu et al., IJCAI 2022) on compat's engine."""

    config_class = NCCLConfig
    scalars = ("queue_fill",)

    def __init__(self, config: NCCLConfig, ctx: MethodContext):
        super().__init__(config, ctx)
        old = ctx.old_model  # CompatError when --old is missing
        self.old_embeddings = OldEmbeddings(old, config.old_features, ctx.data, augment=ctx.config.augment,
                                            method=ctx.method_name)
        self.model = ctx.build_model(dim_policy=config.dim_policy if config.dim_policy != "error" else None)
        self.old_dim = self.old_embeddings.dim
        check_dims(self.model.embedding_dim, self.old_dim, config.dim_policy, ctx.method_name)
        if ctx.config.batch_size > config.queue_size:
            raise CompatError(f"`compat train nccl`: --queue-size {config.queue_size} is smaller than the global batch "
                              f"(--batch-size {ctx.config.batch_size}), which is enqueued whole every step. Use "
                              f"--queue-size {ctx.config.batch_size} or more (the original: 8192).")
        self.use_logits = config.beta > 0
        if self.use_logits and self.model.head is None:
            raise CompatError("`compat train nccl`: the logit term needs the new model's classifier head. Pass --beta 0.")
        if self.use_logits and self.model.embedding_dim != self.old_dim:
            raise CompatError(f"`compat train nccl`: the logit term scores old embeddings ({self.old_dim}-d) with the "
                              f"new head ({self.model.embedding_dim}-d). Train with --embedding-dim {self.old_dim}, or "
                              f"pass --beta 0 to keep only the feature term.")
        fields = {"old": ((self.old_dim,), torch.float32), "label": ((), torch.long)}
        if self.use_logits:
            fields["logits"] = ((len(ctx.data.classes),), torch.float32)
        self.queue = FeatureQueue(config.queue_size, fields)
        self.local_buffers = self.queue.buffer_names("queue")
        self.register_buffer("credible", self._credible(config, ctx), persistent=False)

    def _credible(self, config: NCCLConfig, ctx: MethodContext) -> torch.Tensor:
        """Credible flag by dataset index (all true without the filter)."""
        indices = np.asarray(ctx.data.base_indices, dtype=np.int64)
        table = torch.ones(int(indices.max(initial=-1)) + 1, dtype=torch.bool)
        if config.credible_filter:
            old = self.old_embeddings.of_dataset(ctx.data).cpu()
            labels = torch.as_tensor(np.asarray(ctx.data.labels), dtype=torch.long)
            table[torch.from_numpy(indices)] = entropy_credible(old, labels, len(ctx.data.classes))
            kept = int(table[torch.from_numpy(indices)].sum())
            self.notes.append(f"nccl: {kept} of {len(indices)} training samples are credible (entropy <= ln(C)/2) "
                              f"and enter the queue.")
        return table

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self.model(batch.images, batch.targets)
        terms = cross_entropy_terms(out.logits, batch.targets, self.ctx.config.label_smoothing)
        old = F.normalize(self.old_embeddings(batch.images, batch.indices).float(), dim=1)
        self._enqueue(old, batch)
        valid, keys, key_labels = self.queue.valid(), self.queue.get("old"), self.queue.get("label")
        weights = consensus_weights(old, keys)
        anchors = F.normalize(align_dim(out.embedding, self.old_dim, self.config.dim_policy).float(), dim=1)
        feature = neighbourhood_contrastive(anchors, keys, batch.targets, key_labels, weights,
                                            self.config.temperature, valid)
        total = terms["ce"] + self.config.alpha * feature
        result = {"ce": terms["ce"], "feature": feature}
        if self.use_logits:
            own_logits = F.normalize(self.model.classify(out.embedding).float(), dim=1)  # no margin
            logit = neighbourhood_contrastive(own_logits, F.normalize(self.queue.get("logits"), dim=1), batch.targets,
                                              key_labels, weights, self.config.temperature, valid)
            total = total + self.config.beta * logit
            result["logit"] = logit
        return {"total": total, **result, "queue_fill": torch.tensor(self.queue.fill)}

    @torch.no_grad()
    def _enqueue(self, old: torch.Tensor, batch: Batch) -> None:
        """The global batch, credible samples only, in rank order: the same on every process."""
        rows = {"old": gather(old), "label": gather(batch.targets)}
        if self.use_logits:
            rows["logits"] = gather(self.model.classify(old).float())  # the current new head, no margin
        keep = gather(self.credible[batch.indices.to(self.credible.device)].to(old.device))
        if not bool(keep.all()):
            rows = {name: value[keep] for name, value in rows.items()}
        self.queue.enqueue(**rows)
