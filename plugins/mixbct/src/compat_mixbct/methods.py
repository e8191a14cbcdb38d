"""``mixbct``: the classification loss of the new head on a batch in which some rows are old features.

Liang, Zhang, Wang, Sheng, Ding, "MixBCT: Towards Self-Adapting Backward-Compatible Training", 2023, as
summarised in ``shared/reference/bct-family.md`` section 2.4: per batch, ``R = int(b * mix_ratio)``
samples drawn at random among the *credible* ones have their new embedding rows replaced by their
L2-normalised old features (whole rows, no interpolation), then ``L = CE(head(mixed batch), y)``. There is
no extra term: the old features pull the new class centres towards the old model's distribution, and the
replaced rows send no gradient to the backbone.

Credible samples: per class, the share ``keep_ratio`` of the samples whose normalised old features lie nearest
their class mean (:func:`compat_core.old_space.credible_mask`), computed once over the training data
before training, or read from ``compat features denoise`` (``--credible``). The random draw of each step
is seeded by (run seed, global step, rank), so a resumed run draws what the uninterrupted one drew.

Example:
    >>> method = MixBCT(MixBCTConfig(), ctx)  # doctest: +SKIP
    >>> sorted(method(batch))  # doctest: +SKIP
    ['ce', 'credible_share', 'replaced_share', 'total']
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from compat_core.errors import CompatError
from compat_core.losses import cross_entropy_terms
from compat_core.methods.base import Batch, Method, MethodContext
from compat_core.old_space import OldEmbeddings, credible_mask

from compat_mixbct.config import MixBCTConfig


class MixBCT(Method):
    """MixBCT on compat's engine: a new model with a head; old features replace credible rows."""

    config_class = MixBCTConfig
    scalars = ("credible_share", "replaced_share")

    def __init__(self, config: MixBCTConfig, ctx: MethodContext):
        super().__init__(config, ctx)
        old = ctx.old_model  # CompatError when --old is missing
        self.old_embeddings = OldEmbeddings(old, config.old_features, ctx.data, augment=ctx.config.augment,
                                            method=ctx.method_name)
        self.model = ctx.build_model()
        if self.model.head is None:
            raise CompatError("`compat train mixbct` trains through the new classifier head; the model has none.")
        if self.model.embedding_dim != self.old_embeddings.dim:
            raise CompatError(f"`compat train mixbct` puts old features ({self.old_embeddings.dim}-d) in place of new "
                              f"embeddings ({self.model.embedding_dim}-d), so both need one dimension. Train with "
                              f"--embedding-dim {self.old_embeddings.dim}.")
        self.register_buffer("credible", self._credible(config, ctx), persistent=False)

    def _credible(self, config: MixBCTConfig, ctx: MethodContext) -> torch.Tensor:
        """Credible flag by dataset index."""
        indices = np.asarray(ctx.data.base_indices, dtype=np.int64)
        table = torch.zeros(int(indices.max(initial=-1)) + 1, dtype=torch.bool)
        if config.credible:
            mask = _read_mask(config.credible, indices)
        else:
            old = self.old_embeddings.of_dataset(ctx.data)
            mask = credible_mask(old, np.asarray(ctx.data.labels), config.keep_ratio,
                                 column_normalize=config.column_normalize)
        table[torch.from_numpy(indices)] = torch.from_numpy(mask)
        self.notes.append(f"mixbct: {int(mask.sum())} of {len(mask)} training samples are credible "
                          f"({'from ' + config.credible if config.credible else f'keep ratio {config.keep_ratio}'}); "
                          f"{int(ctx.config.batch_size // max(ctx.world_size, 1) * config.mix_ratio)} rows per "
                          f"batch are old features.")
        return table

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        embedding = self.model.embed(batch.images)
        credible = self.credible[batch.indices.to(self.credible.device)].to(embedding.device)
        replace = self._draw(credible, batch)
        old = F.normalize(self.old_embeddings(batch.images, batch.indices).float(), dim=1).to(embedding.dtype)
        mixed = torch.where(replace[:, None], old, embedding)  # replaced rows: no gradient to the backbone
        logits = self.model.classify(mixed, batch.targets)
        terms = cross_entropy_terms(logits, batch.targets, self.ctx.config.label_smoothing)
        n = float(len(batch))
        return {"total": terms["ce"], "ce": terms["ce"],
                "credible_share": credible.float().sum() / n, "replaced_share": replace.float().sum() / n}

    def _draw(self, credible: torch.Tensor, batch: Batch) -> torch.Tensor:
        """``int(b * mix_ratio)`` credible rows at random (all credible rows when fewer), as a mask."""
        count = int(len(batch) * self.config.mix_ratio)
        candidates = torch.nonzero(credible).squeeze(1)
        mask = torch.zeros(len(batch), dtype=torch.bool, device=credible.device)
        if count == 0 or len(candidates) == 0:
            return mask
        seed = (self.ctx.config.seed * 1_000_003 + batch.step) * 1_009 + self.ctx.rank
        order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))
        mask[candidates[order[:count].to(candidates.device)]] = True
        return mask


def _read_mask(path: str, indices: np.ndarray) -> np.ndarray:
    """The credible flags of ``indices`` from a ``compat features denoise`` file."""
    from compat_core.io import read_npz

    if not Path(path).is_file():
        raise CompatError(f"--credible {path}: no such file. Write it with `compat features denoise OLD_TRAIN.npz "
                          f"--keep-ratio 0.9 --out {path}`, or drop --credible to denoise when training starts.")
    arrays = read_npz(path, ("credible", "index"), what="credible mask",
                      unreadable_fix="Write it again with `compat features denoise`.",
                      missing_fix="Write it with `compat features denoise`.")
    lookup = {int(i): bool(c) for i, c in zip(arrays["index"].tolist(), arrays["credible"].tolist(), strict=True)}
    missing = [int(i) for i in indices if int(i) not in lookup]
    if missing:
        raise CompatError(f"--credible {path} has no flag for {len(missing)} of the {len(indices)} training samples "
                          f"(e.g. index {missing[0]}). Denoise the old features of the same --data, --split and "
                          f"--classes as this run.")
    return np.array([lookup[int(i)] for i in indices], dtype=bool)
