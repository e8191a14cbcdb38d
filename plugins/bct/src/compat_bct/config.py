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
        "all", description="all: one row per training class built from the old model's embeddings, the old "
        "head unused (OpenBCT -g, MixBCT, BT^2); new-only: the old head's rows for the classes the old model knows "
        "plus synthesized rows for new classes (the paper).")
    label_map: str | None = Field(
        None, description="JSON file {new_class_name: old_class_name} naming which old-head row serves each new "
        "class, with --synthesize new-only. Default: classes with identical names share a row.")
    normalize_synthesized: bool = Field(False, description="L2-normalise synthesized rows (MixBCT does; OpenBCT and BT^2 do not).")
    scale_synthesized: bool = Field(
        True, description="With --synthesize new-only: rescale synthesized rows to the mean norm of the real old rows "
        "before any fit (matters for linear logits, where unscaled rows of norm <= 1 beside longer real "
        "rows barely register; --no-scale-synthesized gives the paper's unscaled rows).")
    fit_synthesized: bool = Field(
        True, description="Fit the synthesized rows (and their biases under linear logits) by softmax regression on "
        "the old model's embeddings of the training data, real rows frozen, starting from the class means, so that "
        "the old classifier labels the old model's own embeddings correctly. --no-fit-synthesized "
        "keeps the class means (the paper), which can claim an old class's region when the old model embeds "
        "unseen classes near it.")
    fit_weight_decay: float = Field(
        1e-3, ge=0, description="L2 penalty on fitted rows under linear logits (cosine logits ignore row norms), "
        "keeping them a few times the real rows' norm; 0 lets separable classes grow without bound.")
    normalized_classifier: bool = Field(
        True, description="Score the new embedding with cosine logits influence_scale * cos(f, w) whatever the old "
        "head (OpenBCT's 'normed classifier'). --no-normalized-classifier follows the old head: "
        "linear -> W f + b, normface/cosface/arcface -> s * cos(f, w) with the old head's scale and no margin.")
    influence_scale: float = Field(
        4.0, gt=0, description="Scale s of the cosine logits of normalized_classifier; 4 gives a soft softmax "
        "that keeps new embeddings near the old class regions (NormFace's 30 separated them off the old gallery).")


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
