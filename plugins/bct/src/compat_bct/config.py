"""Option models of the BCT-family methods (no torch here: the CLI builds flags from them).

Every field becomes a ``--flag`` of ``compat train METHOD`` (``influence_weight`` ->
``--influence-weight``) and can also come from ``--config`` or ``--set``.

Example:
    >>> BCTConfig(influence_weight=2).influence_weight
    2.0
    >>> L2Config().l2_threshold
    0.0
"""

from __future__ import annotations

from typing import Literal

from compat_core.config import MethodConfig
from pydantic import Field

DimPolicy = Literal["error", "truncate", "zero-pad"]


class OldEmbeddingOptions(MethodConfig):
    """Options shared by every method that compares new embeddings with the old model's."""

    dim_policy: DimPolicy = Field(
        "error", description="When the new embedding dim differs from the old one: error (default); truncate "
        "(new embedding cut to its first old-dim values, needs new >= old, as OpenBCT); zero-pad (new "
        "embedding padded with zeros to the old dim, needs new <= old). Applied to the new embedding before the "
        "old classifier or the comparison with old embeddings.")
    old_features: str | None = Field(
        None, description="Optional .npz of old-model features of the training data (`compat features extract "
        "--model OLD --data DATA --split train`), looked up by sample index. Default (none): old embeddings are "
        "computed on the fly by the old model on each (augmented) training batch.")


class BCTConfig(OldEmbeddingOptions):
    """``bct``: CE on the new head + ``influence_weight`` x influence loss through the old classifier."""

    influence_weight: float = Field(1.0, ge=0, description="lambda: weight of the influence loss (OpenBCT: 1; BT^2's BCT baseline: 10).")
    influence: Literal["ce", "lwf"] = Field(
        "ce", description="ce: one-hot CE of the old classifier on the new embedding (the paper); lwf: soft targets "
        "= softmax of the old classifier on the old embedding (OpenBCT --lwf).")
    synthesize: Literal["new-only", "all"] = Field(
        "new-only", description="new-only: real old-head rows for classes the old model knows, synthesized rows "
        "(mean of L2-normalised old embeddings) for new classes (the paper); all: synthesize every row and ignore "
        "the old head (OpenBCT -g, MixBCT, BT^2).")
    label_map: str | None = Field(
        None, description="JSON file {new_class_name: old_class_name} naming which old-head row serves each new "
        "class. Default: classes with identical names share a row.")
    normalize_synthesized: bool = Field(False, description="L2-normalise synthesized rows (MixBCT does; OpenBCT and BT^2 do not).")
    scale_synthesized: bool = Field(
        True, description="Rescale synthesized rows to the mean norm of the real old rows (default: on; unscaled rows "
        "have norm <= 1 beside real rows of norm ~several, so new classes barely register through the old head; "
        "--no-scale-synthesized gives the paper's unscaled rows).")
    normalized_classifier: bool = Field(
        False, description="Score the new embedding with cosine logits influence_scale * cos(f, w) whatever the old "
        "head (OpenBCT's 'normed classifier'). Default: follow the old head: linear -> W f + b, "
        "normface/cosface/arcface -> s * cos(f, w) with the old head's scale and no margin.")
    influence_scale: float = Field(30.0, gt=0, description="Scale s of the cosine logits when normalized_classifier is on (NormFace's 30).")


class L2Config(OldEmbeddingOptions):
    """``l2``: CE + ``l2_weight`` x mean hinge of the new-to-old feature distance."""

    l2_weight: float = Field(10.0, ge=0, description="Weight of the L2 term (MixBCT: 10).")
    l2_threshold: float = Field(0.0, ge=0, description="Hinge threshold th: 0 = L2, 0.2 = MixBCT's weakened L2.")
    l2_form: Literal["norm", "squared"] = Field(
        "norm", description="norm: ||n(o) - n(f)||_2 per sample (MixBCT); squared: mean squared error over "
        "dimensions per sample (OpenBCT's nn.MSELoss).")
    no_ce: bool = Field(False, description="Drop the CE term and train by regression alone (reproduces OpenBCT's L2 baseline).")


class TripletConfig(OldEmbeddingOptions):
    """``triplet``: CE + ``triplet_weight`` x new->old triplet loss."""

    triplet_weight: float = Field(1.0, ge=0, description="Weight of the triplet term (OpenBCT: 1).")
    triplet_margin: float = Field(1.0, ge=0, description="Triplet margin (OpenBCT: nn.TripletMarginLoss default 1.0).")
    normalize_new: bool = Field(
        True, description="L2-normalise the new embedding before distances (old embeddings are always normalised). "
        "False reproduces OpenBCT's un-normalised anchor.")


class ContrastiveConfig(OldEmbeddingOptions):
    """``contrastive``: CE + ``contrastive_weight`` x supervised contrastive loss new -> old."""

    contrastive_weight: float = Field(1.0, ge=0, description="Weight of the contrastive term (OpenBCT: 1).")
    temperature: float = Field(0.05, gt=0, description="Temperature tau of the contrastive softmax (OpenBCT --temp 0.05).")
