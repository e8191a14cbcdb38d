"""The compat-pct methods: ``pct``, ``cna`` and ``elodi``.

Each trains a new classifier with cross-entropy plus one distillation term against the frozen old
model(s) (``--old RUN``, repeatable: an ensemble teacher), weighted per sample by the focal filter and
mixed with the CE by ``alpha`` or added with ``lambda``. See :mod:`compat_pct.teachers` for the
ensemble and the restriction to shared classes.

Example:
    >>> method = PCT(PCTConfig(), ctx)  # doctest: +SKIP
    >>> sorted(method(batch))  # doctest: +SKIP
    ['ce', 'kd', 'total']
"""

from __future__ import annotations

import torch
from compat_core.distributed import gather, gather_with_grad
from compat_core.errors import CompatError
from compat_core.losses import cross_entropy_terms
from compat_core.methods.base import Batch, Method, MethodContext

from compat_pct.config import CNAConfig, DistillationOptions, ELODIConfig, PCTConfig
from compat_pct.losses import (
    cna_per_anchor,
    focal_distillation_loss,
    focal_weights,
    ldi_loss,
    mix,
    teacher_similarity,
    weighted_mean,
)
from compat_pct.teachers import TeacherOutput, Teachers


class _Distillation(Method):
    """Shared set-up and per-batch mechanics: the new model, the teacher, focal weights, mixing."""

    config_class = DistillationOptions
    needs_teacher_logits = True
    term_name = "kd"

    def __init__(self, config: DistillationOptions, ctx: MethodContext):
        super().__init__(config, ctx)
        self.teachers = Teachers(ctx.old_models, list(ctx.data.classes), weights=config.teacher_weights,
                                 label_map=config.label_map, method=ctx.method_name,
                                 needs_logits=self.needs_teacher_logits or _filter_needs_old(config.kd_filter),
                                 device=ctx.device)
        self.model = ctx.build_model()

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self.model(batch.images, batch.targets)
        teacher = self.teachers(batch.images)
        logits = self._plain_logits(out)
        weights = self._focal_weights(logits, teacher, batch.targets)
        term = self.distillation(out.embedding, logits, teacher, batch.targets, weights)
        ce = cross_entropy_terms(out.logits, batch.targets, self.ctx.config.label_smoothing)["ce"]
        return mix(ce, self.term_name, term, self.config.kd_weight, self.config.mixing, self.config.alpha)

    def distillation(self, embedding, logits, teacher: TeacherOutput, targets, weights) -> torch.Tensor:
        raise NotImplementedError

    def _plain_logits(self, out) -> torch.Tensor:
        """Logits without the training margin of CosFace/ArcFace heads (distillation compares scores)."""
        if self.ctx.config.head in ("cosface", "arcface"):
            return self.model.classify(out.embedding)
        return out.logits

    def _focal_weights(self, logits: torch.Tensor, teacher: TeacherOutput, targets: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.kd_filter == "all_pass":  # no prediction needed
            ones = torch.ones(len(targets), dtype=torch.bool, device=targets.device)
            return focal_weights(cfg.kd_filter, cfg.filter_base, cfg.filter_scale, ones, ones)
        with torch.no_grad():
            new_correct = logits.argmax(dim=1) == targets
            old_correct = (self.teachers.predicted_new_class(teacher.logits) == targets
                           if teacher.logits is not None else torch.zeros_like(new_correct))
        return focal_weights(cfg.kd_filter, cfg.filter_base, cfg.filter_scale, old_correct, new_correct)


def check_ensemble_size(config: ELODIConfig, teachers: int, method: str = "elodi") -> None:
    """A :class:`CompatError` (exit code 2) when fewer than ``config.min_teachers`` ``--old`` runs are
    given; none at all is left to the teacher's own message.

    Example:
        >>> check_ensemble_size(ELODIConfig(recipe="ldi"), 1)  # single-teacher LDI: fine
    """
    if 0 < teachers < config.min_teachers:
        runs = f"{teachers} --old run{'s were' if teachers > 1 else ' was'}"
        raise CompatError(
            f"`compat train {method}` distils an ensemble of at least {config.min_teachers} teacher runs "
            f"(--min-teachers {config.min_teachers}; the ELODI paper's setting is 8), but {runs} given. Pass --old RUN "
            f"{config.min_teachers} times (models of the new architecture trained with different seeds), or "
            f"--min-teachers {teachers} to distil the ensemble you have, or --recipe ldi for single-teacher LDI "
            f"against the deployed old model (alpha 0.5, margin 0.5, all classes).")


def _filter_needs_old(kd_filter: str) -> bool:
    return kd_filter in ("old_correct", "neg_flip")


class PCT(_Distillation):
    """Positive-congruent training (Yan et al., CVPR 2021): focal distillation of the new logits
    towards the teacher's on the shared classes, KL with temperature (x T^2) or logit L2."""

    config_class = PCTConfig

    def distillation(self, embedding, logits, teacher, targets, weights) -> torch.Tensor:
        new, old = self.teachers.restrict(logits, teacher.logits)
        taking_part = self.teachers.shared_targets(targets) >= 0
        return focal_distillation_loss(new, old, weights, taking_part, self.config.kd_mode,
                                       self.config.temperature)["kd"]


class ELODI(_Distillation):
    """ELODI (Zhao, Shen, Xiong, Yang, Xia, Tu, Schiele, Soatto, "ELODI: Ensemble Logit Difference
    Inhibition for Positive-Congruent Training", arXiv:2205.06265, 2022): LDI,
    ``mean over the top-k classes of max(|z_new - z_teacher| - m, 0)^p`` on the shared classes, ground
    truth excluded, against an ensemble teacher (the paper's setting, the default: 8 teachers, alpha
    0.8, m 0, k 10), or against the single old model (``recipe="ldi"``)."""

    config_class = ELODIConfig
    term_name = "ldi"

    def __init__(self, config: ELODIConfig, ctx: MethodContext):
        check_ensemble_size(config, len(ctx.old_models), ctx.method_name)
        super().__init__(config, ctx)

    def distillation(self, embedding, logits, teacher, targets, weights) -> torch.Tensor:
        cfg = self.config
        new, old = self.teachers.restrict(logits, teacher.logits)
        shared = self.teachers.shared_targets(targets)
        return ldi_loss(new, old, shared, weights, shared >= 0, p=cfg.ldi_p, margin=cfg.ldi_margin,
                        exclude_gt=cfg.ldi_exclude_gt, p_norm=cfg.ldi_p_norm, topk=cfg.ldi_topk,
                        topk_by=cfg.ldi_topk_by)["ldi"]


class CNA(_Distillation):
    """Contrastive neighbourhood alignment: the new model's normalised embeddings must find, among
    the (global) batch, the neighbours the teacher finds. Works on embeddings, so old and new
    dimensions may differ; under DDP the batch is gathered across processes."""

    config_class = CNAConfig
    needs_teacher_logits = False
    term_name = "cna"

    def distillation(self, embedding, logits, teacher, targets, weights) -> torch.Tensor:
        cfg = self.config
        everything, offset = gather_with_grad(embedding.float())
        anchors = torch.arange(offset, offset + len(embedding), device=embedding.device)
        similarity = teacher_similarity([gather(e) for e in teacher.embeddings], anchors,
                                        self.teachers.weights.cpu())
        per_anchor = cna_per_anchor(everything, similarity, anchors, cfg.cna_temperature, cfg.cna_neighbors,
                                    cfg.cna_form)
        return weighted_mean(per_anchor, weights)
