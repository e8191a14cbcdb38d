"""The BCT-family methods: ``bct``, ``l2``, ``triplet`` and ``contrastive``.

Each trains a new :class:`~compat_core.models.EmbeddingModel` with cross-entropy on its own head
plus one compatibility term against the frozen old model (``--old RUN``). Old embeddings come from
the old model on each training batch (its own preprocessing, so different input sizes work) or
from ``--old-features FILE.npz`` by sample index.

Example:
    >>> method = BCT(BCTConfig(), ctx)  # doctest: +SKIP
    >>> sorted(method(batch))  # doctest: +SKIP
    ['ce', 'influence', 'total']
"""

from __future__ import annotations

import torch
from compat_core.losses import cross_entropy_terms
from compat_core.methods.base import Batch, Method, MethodContext
from compat_core.old_space import OldEmbeddings, align_dim, check_dims

from compat_bct.config import BCTConfig, ContrastiveConfig, L2Config, OldEmbeddingOptions, TripletConfig
from compat_bct.losses import (
    influence_loss,
    l2_compat_loss,
    lwf_influence_loss,
    supcon_new_to_old,
    triplet_new_to_old,
)
from compat_bct.old_classifier import build_old_classifier, describe_logits, influence_logits
from compat_bct.row_fit import describe_fit


class _AgainstOld(Method):
    """Shared set-up: the new model, the old-embedding source and the dimension check."""

    config_class = OldEmbeddingOptions

    def __init__(self, config: OldEmbeddingOptions, ctx: MethodContext):
        super().__init__(config, ctx)
        old = ctx.old_model  # CompatError when --old is missing
        self.old_embeddings = OldEmbeddings(old, config.old_features, ctx.data, augment=ctx.config.augment,
                                            per_sample=self.pairs_samples(config), method=ctx.method_name)
        # The policy is recorded in model.json so evaluators align dimensions the same way (--align auto).
        self.model = ctx.build_model(dim_policy=config.dim_policy if config.dim_policy != "error" else None)
        self.old_dim = self.old_embeddings.dim
        check_dims(self.model.embedding_dim, self.old_dim, config.dim_policy, ctx.method_name)

    @staticmethod
    def pairs_samples(config: OldEmbeddingOptions) -> bool:
        """Does the loss compare each image with its own old embedding (core's augmentation rule)?"""
        return True

    def aligned(self, embedding: torch.Tensor) -> torch.Tensor:
        """The new embedding in the old dimension (``dim_policy``)."""
        return align_dim(embedding, self.old_dim, self.config.dim_policy)

    def ce(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return cross_entropy_terms(logits, targets, self.ctx.config.label_smoothing)

    @staticmethod
    def combine(ce: dict[str, torch.Tensor], name: str, term: torch.Tensor, weight: float,
                with_ce: bool = True) -> dict[str, torch.Tensor]:
        total = weight * term
        terms = {name: term}
        if with_ce:
            total = ce["ce"] + total
            terms["ce"] = ce["ce"]
        return {"total": total, **terms}


class BCT(_AgainstOld):
    """BCT (Shen et al., CVPR 2020): ``CE(new head) + influence_weight * CE(old classifier(f), y)``.

    By default every row of the old classifier is synthesized from the old model's embeddings (class
    means of normalised old embeddings) and then fitted to them, and the new embedding is scored with
    cosine logits of scale ``influence_scale`` (``"auto"``: ``4 + ln((C - 1) / 9)`` for the C rows, so 4
    for 10 rows; ``"adacos"``: ``sqrt(2) ln(C - 1)``; or a number); the scale used for the C
    rows is printed and stored in ``model.json`` (``extra.influence_logits``). The
    paper's recipe (``synthesize="new-only"``, ``fit_synthesized=False``,
    ``normalized_classifier=False``) keeps the old head's rows for the
    classes it knows, appends class-mean rows for new classes and scores the way the old head did
    (linear: ``W f + b``; normface/cosface/arcface: ``s cos(f, w)`` without margin).
    """

    config_class = BCTConfig

    @staticmethod
    def pairs_samples(config: BCTConfig) -> bool:
        # The influence loss reads old embeddings only through whole-dataset class means (the rows), except
        # the LwF variant, which scores each sample's old embedding.
        return config.influence == "lwf"

    def __init__(self, config: BCTConfig, ctx: MethodContext):
        super().__init__(config, ctx)
        self.old_classifier = build_old_classifier(config, ctx, self.old_embeddings, ctx.method_name)
        report = self.old_classifier.report
        if report:  # recorded in model.json, and told: how well the rows describe the old space
            self.model.spec.extra["old_classifier"] = report
            self.notes.append(describe_fit(report, fitted=config.fit_synthesized))
        logits = influence_logits(self.old_classifier, config)
        self.model.spec.extra["influence_logits"] = logits
        self.notes.append(describe_logits(logits))

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self.model(batch.images, batch.targets)
        ce = self.ce(out.logits, batch.targets)
        logits = self.old_classifier(self.aligned(out.embedding))
        if self.config.influence == "lwf":
            old = self.old_embeddings(batch.images, batch.indices)
            influence = lwf_influence_loss(logits, self.old_classifier(old))["influence"]
        else:
            influence = influence_loss(logits, self.old_classifier.targets(batch.targets),
                                       self.ctx.config.label_smoothing)["influence"]
        return self.combine(ce, "influence", influence, self.config.influence_weight)


class L2(_AgainstOld):
    """``CE + l2_weight * mean max(0, ||n(o) - n(f)|| - l2_threshold)`` (MixBCT's L2 / weakened L2);
    ``l2_form="squared"`` and ``no_ce`` reproduce OpenBCT's regression-only MSE baseline."""

    config_class = L2Config

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self.model(batch.images, batch.targets)
        old = self.old_embeddings(batch.images, batch.indices)
        l2 = l2_compat_loss(self.aligned(out.embedding), old, self.config.l2_threshold, self.config.l2_form)["l2"]
        ce = None if self.config.no_ce else self.ce(out.logits, batch.targets)
        return self.combine(ce, "l2", l2, self.config.l2_weight, with_ce=not self.config.no_ce)


class Triplet(_AgainstOld):
    """``CE + triplet_weight * triplet(f_i, o_i, hardest o_j of another class)``. No influence term:
    the paper compares triplet as an alternative to the influence loss, and OpenBCT does not add it."""

    config_class = TripletConfig

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self.model(batch.images, batch.targets)
        old = self.old_embeddings(batch.images, batch.indices)
        term = triplet_new_to_old(self.aligned(out.embedding), old, batch.targets, self.config.triplet_margin,
                                  self.config.normalize_new)["triplet"]
        return self.combine(self.ce(out.logits, batch.targets), "triplet", term, self.config.triplet_weight)


class Contrastive(_AgainstOld):
    """``CE + contrastive_weight * SupCon(n(f) -> n(o), tau)``. No influence term (as for triplet)."""

    config_class = ContrastiveConfig

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self.model(batch.images, batch.targets)
        old = self.old_embeddings(batch.images, batch.indices)
        term = supcon_new_to_old(self.aligned(out.embedding), old, batch.targets,
                                 self.config.temperature)["contrastive"]
        return self.combine(self.ce(out.logits, batch.targets), "contrastive", term,
                            self.config.contrastive_weight)
