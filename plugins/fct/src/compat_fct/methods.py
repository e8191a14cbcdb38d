"""The methods ``fct`` and ``fastfill``: only the transformation is trained.

The old model (``--old``), the new model (``--new``) and the optional side-information model
(``--side-info``) are frozen :class:`~compat_core.models.OldModel` objects (never optimised, never in
the checkpoint). Each augmented training batch is embedded by all three; the transformation learns
to map (old, side) embeddings onto the new one. ``ctx.build_model()`` is not called, so the common
``--backbone`` / ``--embedding-dim`` flags play no part. ``export`` writes the gallery model
"old + side-info + transformation" (:class:`~compat_fct.transformed.TransformedModel`).

Example:
    >>> method = FCT(FCTConfig(new="runs/new"), ctx)  # doctest: +SKIP
    >>> sorted(method(batch))  # doctest: +SKIP
    ['similarity', 'total']
"""

from __future__ import annotations

import torch
from compat_core.errors import CompatError
from compat_core.methods.base import Batch, Method, MethodContext
from compat_core.models.embedding import EmbeddingModel
from compat_core.models.old import OldModel
from compat_core.old_space import OldEmbeddings, load_frozen_run, match_classes

from compat_fct.config import FastFillConfig, FCTConfig
from compat_fct.losses import fastfill_loss, fct_loss
from compat_fct.transformation import Transformation, TransformationSpec
from compat_fct.transformed import TransformedModel


class FCT(Method):
    """FCT (Ramanujan et al., CVPR 2022): ``mean_i l_sim(phi_new(x_i), h(phi_old(x_i), psi(x_i)))``."""

    config_class = FCTConfig

    def __init__(self, config: FCTConfig, ctx: MethodContext):
        super().__init__(config, ctx)
        self.old = ctx.old_model  # CompatError when --old is missing
        _require_plain(self.old, "--old")
        self.new = load_frozen_run(config.new, "--new", ctx.device)
        self.side = load_frozen_run(config.side_info, "--side-info", ctx.device) if config.side_info else None
        if self.side is not None:
            _require_plain(self.side, "--side-info")
        self.old_embeddings = OldEmbeddings(self.old, config.old_features, ctx.data, augment=ctx.config.augment,
                                            method=ctx.method_name)
        side_dim = self.old.embedding_dim if self.side is None else self.side.embedding_dim
        self.transformation = Transformation(TransformationSpec.from_dims(
            self.old.embedding_dim, side_dim, self.new.embedding_dim, old_hidden=config.old_hidden,
            side_hidden=config.side_hidden, branch_dim=config.branch_dim, mixer_width=config.mixer_width,
            mixer_layers=config.mixer_layers, uncertainty=self.wants_uncertainty(config)))

    @staticmethod
    def wants_uncertainty(config: FCTConfig) -> bool:
        return False

    def inputs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(old, side, target) embeddings of the batch; all three from frozen models, no gradient."""
        old = self.old_embeddings(batch.images, batch.indices)
        side = old if self.side is None else self.side.embed(batch.images)
        return old.float(), side.float(), self.new.embed(batch.images).float()

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        old, side, target = self.inputs(batch)
        return fct_loss(self.transformation(old, side).embedding, target, self.config.similarity)

    def on_epoch_start(self, epoch: int) -> None:
        # The original's switch_mode_to_eval: from epoch E/2 on, BatchNorm uses (and keeps) its running
        # statistics. Set every epoch because the engine puts the method back in train mode first.
        if self.config.freeze_bn_second_half and epoch >= self.ctx.config.epochs / 2:
            self.transformation.eval()

    def export(self) -> TransformedModel:
        cfg = self.ctx.config
        sources = {"old": self.old.source, "new": self.config.new, "side_info": self.config.side_info,
                   "old_features": self.config.old_features}
        return TransformedModel.assemble(
            self.old.model, None if self.side is None else self.side.model, self.transformation,
            method=self.ctx.method_name, sources=sources, new_classes=list(self.new.classes),
            trained_on={"data": cfg.data, "split": cfg.split, "classes": cfg.classes,
                        "num_images": len(self.ctx.data)})


class FastFill(FCT):
    """FastFill (Jaeckle et al., ICLR 2023): FCT's transformation with an uncertainty head, trained with
    ``mean_i [1/2 exp(-sigma_i) (mu_sim l_sim,i + mu_disc CE_eps(W_new h_i, y_i)) + mu_u sigma_i]``."""

    config_class = FastFillConfig

    def __init__(self, config: FastFillConfig, ctx: MethodContext):
        super().__init__(config, ctx)
        self.discriminative = config.discriminative_weight > 0
        if self.discriminative:
            if self.new.classifier is None:
                raise CompatError(f"--new {config.new} has no classifier head, which FastFill's discriminative term "
                                  f"needs. Pass a new model trained with a head, or --discriminative-weight 0.")
            self.register_buffer("new_label", _label_map(ctx.data.classes, self.new.classes, config.new),
                                 persistent=False)

    @staticmethod
    def wants_uncertainty(config: FastFillConfig) -> bool:
        return config.uncertainty

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        old, side, target = self.inputs(batch)
        out = self.transformation(old, side)
        logits = labels = None
        if self.discriminative:
            logits = self.new.classifier(out.embedding)  # frozen weights; the gradient reaches h
            labels = self.new_label[batch.targets]
        cfg = self.config
        return fastfill_loss(out.embedding, target, logits, labels, out.sigma, similarity=cfg.similarity,
                             similarity_weight=cfg.similarity_weight, discriminative_weight=cfg.discriminative_weight,
                             uncertainty_weight=cfg.uncertainty_weight, smoothing=cfg.disc_label_smoothing)


def _require_plain(model: OldModel, flag: str) -> None:
    if not isinstance(model.model, EmbeddingModel):
        raise CompatError(f"{flag} {model.source} is not a plain embedding model (it is a "
                          f"{type(model.model).__name__}). Pass a run trained by `compat train baseline` or a "
                          f"backward-compatible method.")


def _label_map(data_classes: list[str], new_classes: list[str], source: str) -> torch.Tensor:
    """Training label -> row of the new model's classifier, matched by class name."""
    rows = match_classes(new_classes, data_classes)
    unknown = [name for name, row in zip(data_classes, rows.tolist(), strict=True) if row < 0]
    if unknown:
        raise CompatError(f"the training data has class {unknown[0]!r}, which the new model --new {source} does not "
                          f"know (its classes: {', '.join(new_classes[:10])}). Train the transformation on classes "
                          f"the new model was trained on (--classes), or pass --discriminative-weight 0.")
    return rows
