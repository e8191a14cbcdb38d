"""Option models of the BCT-family methods (no torch here: the CLI builds flags from them).

Every field becomes a ``--flag`` of ``compat train METHOD`` (``influence_weight`` ->
``--influence-weight``) and can also come from ``--config`` or ``--set``.

Example:
    >>> BCTConfig(influence_weight=2).influence_weight
    2.0
    >>> BCTConfig(influence_scale="auto").influence_scale, BCTConfig(influence_scale="8").influence_scale
    ('auto', 8.0)
    >>> L2Config().l2_threshold
    0.0
"""

from __future__ import annotations

from typing import Annotated, Literal

from compat_core.config import OldSpaceOptions
from pydantic import Field

# a positive number, "auto" (the scale that keeps s = 4's reachable target probability at 10 classes for
# the old classifier's C rows) or "adacos" (AdaCos's fixed scale)
InfluenceScale = Annotated[float, Field(gt=0)] | Literal["auto", "adacos"]
MaxIter = Annotated[int, Field(ge=1)] | Literal["auto"]
Block = Annotated[int, Field(ge=0)] | Literal["auto"]


# The old-space options (dim_policy, old_features) live in core: every method against the old model has them.
OldEmbeddingOptions = OldSpaceOptions


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
    normalize_rows: bool = Field(
        True, description="With normalized_classifier: normalise the old classifier's rows too (cosine logits). "
        "--no-normalize-rows scores influence_scale * n(f) . w with the rows as they are, BT^2's BCT baseline "
        "(with --no-fit-synthesized, --influence-scale 1, --influence-weight 10, label smoothing 0.1: the "
        "preset bt2-bct-baseline).")
    influence_scale: InfluenceScale = Field(
        "auto", description="Scale s of the cosine logits of normalized_classifier. auto: s = 4 + ln((C - 1) / 9) "
        "for the old classifier's C rows after synthesis, which keeps the best reachable target probability "
        "e^s / (e^s + C - 1) at 0.86, its value at s = 4 with 10 classes (the setting chosen on Fashion-MNIST "
        "validation data; s = 4 exactly for 10 rows, 8.71 for 1,000, 13.24 for 93,000). A number: that s (a fixed "
        "s = 4 leaves 0.05 at 1,000 classes; NormFace's 30 separated new embeddings off the old gallery). adacos: "
        "AdaCos's fixed scale sqrt(2) * ln(C - 1), floored at 1 (3.107 for 10 rows).")
    fit_max_samples: int = Field(
        100_000, ge=1, description="The row fit sees at most this many old embeddings: a seeded stratified "
        "subsample, at least one per class (so at least one per fitted row), the rest in proportion to the class "
        "sizes. Fewer samples than this: all of them, as before (the Fashion-MNIST demo's 60,000).")
    fit_block: Block = Field(
        "auto", description="0: the row fit's exact softmax over all C rows. S: each sample is scored against the rows "
        "of its class's block only (blocks of at most S neighbouring rows: the class-mean rows halved recursively "
        "along their principal direction), N x S x D per L-BFGS evaluation instead of N x C x D, and the fitted rows "
        "are kept only if they label 2,048 random samples, scored over all rows, at least as well as the class means "
        "(restricting the softmax can let rows drift into other blocks' regions). auto: exact while samples x C x D x "
        "1.25 x iterations <= 2e12 multiply-adds (about 4 minutes on one core; the demo is 2e10), else blocks of 128.")
    fit_max_iter: MaxIter = Field(
        "auto", description="At most this many L-BFGS iterations of the row fit (about 1.25 evaluations each), or "
        "auto: 200, fewer for big fits so that iterations x fitted values <= 2.5e9 (10 at least): 200 up to "
        "12.5 million fitted values (1,000 rows x 2,048 dims are 2 million), 52 for 93,000 x 512 (a few minutes "
        "on a 2-core CPU, where 200 would take about 15).")


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
