"""``bt2``: the BT^2 model (:mod:`compat_bt2.model`) trained with four terms::

    L = CE(head(v), y) + lambda2 * CE(n(bct) . W^T, y) + lambda3 * (1 - cos(old(x), bct)) + lambda1 * (1 - cos(new'(x), v))

``W`` holds the old class means over the training set (means of normalised old embeddings, not
re-normalised, no scale: BT^2's own BCT influence), computed once when training starts; ``old`` is the
frozen old model and ``new'`` the frozen independently trained new model of the same generation
(``--new-prime``), both on each (augmented) batch. Only the BT^2 model is exported.

Example:
    >>> method = BT2(BT2Config(new_prime="runs/new"), ctx)  # doctest: +SKIP
    >>> sorted(method(batch))  # doctest: +SKIP
    ['ce', 'influence', 'new_cos', 'old_cos', 'total']
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from compat_core.errors import CompatError
from compat_core.losses import cross_entropy_terms
from compat_core.methods.base import Batch, Method, MethodContext
from compat_core.old_space import OldEmbeddings, class_means, load_frozen_run

from compat_bt2.config import BT2Config
from compat_bt2.model import BT2Model, bt2_spec


class BT2(Method):
    """BT^2 (Zhou et al., ICCV 2023) on compat's engine."""

    config_class = BT2Config

    def __init__(self, config: BT2Config, ctx: MethodContext):
        super().__init__(config, ctx)
        old = ctx.old_model  # CompatError when --old is missing
        self.new_prime = load_frozen_run(config.new_prime, "--new-prime", ctx.device)
        d = int(ctx.config.embedding_dim or 0)
        if d != self.new_prime.embedding_dim:
            raise CompatError(f"`compat train bt2`: --embedding-dim {ctx.config.embedding_dim} must equal the "
                              f"embedding dimension of --new-prime {config.new_prime} ({self.new_prime.embedding_dim}"
                              f"): the term 1 - cos(new'(x), v) compares them. Pass --embedding-dim "
                              f"{self.new_prime.embedding_dim}.")
        self.old_embeddings = OldEmbeddings(old, config.old_features, ctx.data, augment=ctx.config.augment,
                                            method=ctx.method_name)
        d_old = self.old_embeddings.dim
        spec = bt2_spec(ctx.model_spec(), d=d, d_old=d_old, add=extra_dims(config, d, d_old), scale_c=config.scale_c)
        spec.extra["bt2"]["new_prime"] = config.new_prime
        self.model = BT2Model(spec).to(ctx.device)
        labels = torch.as_tensor(np.asarray(ctx.data.labels), dtype=torch.long)
        # every class has images (the engine refuses empty ones), so no 0/0 row (the original's pitfall)
        means, _ = class_means(self.old_embeddings.of_dataset(ctx.data).cpu(), labels, len(ctx.data.classes))
        self.register_buffer("old_prototypes", means.to(ctx.device))  # checkpointed: --resume uses the same W

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        parts = self.model.parts(batch.images, batch.targets)
        ce = cross_entropy_terms(parts["logits"], batch.targets, self.ctx.config.label_smoothing)["ce"]
        bct = parts["bct"].float()
        influence = F.cross_entropy(F.normalize(bct, dim=1) @ self.old_prototypes.T, batch.targets)
        old = self.old_embeddings(batch.images, batch.indices).float()
        new_prime = self.new_prime.embed(batch.images).float()
        old_cos = 1.0 - F.cosine_similarity(old, bct, dim=1).mean()
        new_cos = 1.0 - F.cosine_similarity(new_prime, parts["v"].float(), dim=1).mean()
        cfg = self.config
        total = ce + cfg.lambda2 * influence + cfg.lambda3 * old_cos + cfg.lambda1 * new_cos
        return {"total": total, "ce": ce, "influence": influence, "old_cos": old_cos, "new_cos": new_cos}


def extra_dims(config: BT2Config, d: int, d_old: int) -> int:
    """The model's a (deployed size d + a): ``--add-dim`` itself, or with ``--grow`` what makes the deployed
    size d_old + ``--add-dim``.

    Example:
        >>> extra_dims(BT2Config(new_prime="n", grow=True), d=128, d_old=160)  # 128 + 64 = 160 + 32
        64
    """
    if not config.grow:
        return config.add_dim
    if d_old + config.add_dim < d:
        raise CompatError(f"`compat train bt2 --grow`: the old embedding ({d_old} dims) plus --add-dim "
                          f"{config.add_dim} is smaller than the new feature d = {d}; the deployed embedding "
                          f"needs at least d dimensions. Raise --add-dim to {d - d_old} or more, or drop --grow.")
    return d_old - d + config.add_dim
