"""Option models of the compat-pct methods (no torch here: the CLI builds flags from them).

Every field becomes a ``--flag`` of ``compat train METHOD`` (``kd_weight`` -> ``--kd-weight``) and
can also come from ``--config`` or ``--set``. Names follow the original code's flags
(``--kd_filter``, ``--filter-base``, ``--li_margin`` ...) where one exists.

Example:
    >>> PCTConfig().kd_filter, ELODIConfig().kd_filter, ELODIConfig().ldi_topk
    ('old_correct', 'all_pass', 10)
"""

from __future__ import annotations

from typing import Any, Literal

from compat_core.config import MethodConfig
from pydantic import Field, model_validator

KDFilter = Literal["all_pass", "old_correct", "neg_flip", "new_incorrect"]


class DistillationOptions(MethodConfig):
    """Shared by ``pct``, ``cna`` and ``elodi``: the teacher, the per-sample focal weights and how the
    distillation term is mixed with the cross-entropy."""

    kd_weight: float = Field(1.0, ge=0, description="lambda: weight of the distillation term (original --kd_loss_weight).")
    mixing: Literal["alpha", "sum"] = Field(
        "alpha", description="alpha: total = alpha * lambda * distillation + (1 - alpha) * CE (the original's "
        "--kd_alpha form); sum: total = CE + lambda * distillation.")
    alpha: float = Field(0.9, ge=0, le=1, description="alpha of mixing=alpha (original --kd_alpha).")
    kd_filter: KDFilter = Field(
        "old_correct", description="Which samples get the extra focal weight: all_pass (every sample), old_correct "
        "(the old model is right), neg_flip (old right and the current new model wrong), new_incorrect (the current "
        "new model is wrong). Weight per sample = filter_base + filter_scale * indicator.")
    filter_base: float = Field(1.0, ge=0, description="Base weight of every sample (original --filter-base; PCT's alpha).")
    filter_scale: float = Field(5.0, ge=0, description="Extra weight of the filtered samples (original --filter-scale; PCT's beta).")
    teacher_weights: list[float] = Field(
        default_factory=list, description="Weights of the --old models of an ensemble teacher, in --old order "
        "(default: equal). The teacher's logits are sum_k w_k z_k / sum_k w_k.")
    label_map: str | None = Field(
        None, description="JSON {new class: old class} when the old model's class names differ. Default: classes match "
        "by name. An old model with fewer (or other) classes is distilled on the shared classes only: logits are "
        "restricted to them and samples of other classes get no logit distillation.")


class PCTConfig(DistillationOptions):
    """``pct``: CE + focal distillation of the new logits towards the old model's (Yan et al., CVPR 2021)."""

    kd_weight: float = Field(0.1, ge=0, description="lambda: weight of the distillation term (original "
                             "--kd_loss_weight; the paper's ImageNet recipe: 1 with alpha 0.9).")
    mixing: Literal["alpha", "sum"] = Field(
        "sum", description="sum: total = CE + lambda * FD (compat default: the paper's alpha 0.9, lambda 1 were tuned "
        "for 1000 classes, and CE + 0.1 FD keeps their balance on 10); alpha: total = alpha * lambda * FD + "
        "(1 - alpha) * CE (the original's --kd_alpha form).")

    kd_mode: Literal["kl", "l2"] = Field(
        "kl", description="kl: T^2 * KL(softmax(z_old / T) || softmax(z_new / T)); l2: mean squared logit difference.")
    temperature: float = Field(100.0, gt=0, description="T of kd_mode=kl (original README: 100; argparse default 5).")


class CNAConfig(DistillationOptions):
    """``cna``: CE + contrastive neighbourhood alignment of normalised embeddings."""

    kd_weight: float = Field(0.1, ge=0, description="lambda: weight of the CNA term (compat default; the original "
                             "recipe does not say).")
    mixing: Literal["alpha", "sum"] = Field(
        "sum", description="sum: total = CE + lambda * CNA (compat default: alpha-mixing at 0.9 with tau 0.01 "
        "diverged at lr 0.1); alpha: total = alpha * lambda * CNA + (1 - alpha) * CE.")
    kd_filter: KDFilter = Field("old_correct", description=DistillationOptions.model_fields["kd_filter"].description)
    filter_scale: float = Field(0.0, ge=0, description="Extra weight of the filtered samples (original README for CNA: 0).")
    cna_temperature: float = Field(0.05, gt=0, description="tau of the new model's similarity softmax (original "
                                   "argparse default 0.05; its README suggests 0.01).")
    cna_neighbors: int = Field(1, ge=1, description="k: the teacher's k nearest neighbours in the batch are the positives.")
    cna_form: Literal["out", "in"] = Field(
        "out", description="out: mean over positives of -log softmax (the original default); in: -log of the summed "
        "softmax mass of the positives.")


# The two settings of `elodi` (option -> value); fields the user does not give take the recipe's value.
RECIPES: dict[str, dict[str, float | int]] = {
    # ELODI (ensemble distillation): the authors' README command for it, --kd_alpha 0.8 --li_margin 0.0,
    # 8 teacher checkpoints, and LDI on the top-K classes (K = 10, the README's --li_compute_topk 10)
    "elodi": {"alpha": 0.8, "ldi_margin": 0.0, "ldi_topk": 10, "min_teachers": 8},
    # single-teacher LDI: the README's LDI command, --kd_alpha 0.5 --li_margin 0.5, all classes
    "ldi": {"alpha": 0.5, "ldi_margin": 0.5, "ldi_topk": 0, "min_teachers": 1},
}


class ELODIConfig(DistillationOptions):
    """``elodi``: CE + logit difference inhibition (LDI) against an ensemble of teachers (ELODI, the
    default) or one old model (``recipe="ldi"``).

    Example:
        >>> ELODIConfig().alpha, ELODIConfig().min_teachers, ELODIConfig(recipe="ldi").alpha
        (0.8, 8, 0.5)
        >>> ELODIConfig(recipe="ldi", ldi_margin=0.2).ldi_margin  # a value given wins over the recipe
        0.2
    """

    recipe: Literal["elodi", "ldi"] = Field(
        "elodi", description="elodi: the ELODI paper's ensemble distillation (alpha 0.8, margin 0, top-10 classes, "
        "at least 8 --old teachers: models of the new architecture trained with other seeds); ldi: LDI with a "
        "single teacher, the deployed old model (alpha 0.5, margin 0.5, all classes, 1 teacher). Options given "
        "explicitly override the recipe's values.")
    alpha: float = Field(0.8, ge=0, le=1, description="alpha of mixing=alpha (ELODI: 0.8; --recipe ldi: 0.5).")
    kd_filter: KDFilter = Field("all_pass", description=DistillationOptions.model_fields["kd_filter"].description)
    filter_base: float = Field(0.0, ge=0, description="Base weight of every sample (original default 0).")
    filter_scale: float = Field(1.0, ge=0, description="Extra weight of the filtered samples (original default 1).")
    ldi_p: float = Field(2.0, ge=1, description="p of the LDI penalty max(|z_new - z_old| - m, 0)^p (original --li_p).")
    ldi_margin: float = Field(0.0, ge=0, description="Margin m below which logit differences are free (ELODI: 0; "
                              "--recipe ldi: 0.5).")
    ldi_exclude_gt: bool = Field(True, description="Leave the ground-truth class out of the penalty (the original always does).")
    ldi_p_norm: bool = Field(False, description="(sum_c penalty)^(1/p) per sample instead of the mean over classes (original --li_use_p_norm).")
    ldi_topk: int = Field(10, ge=0, description="Penalise only each sample's k highest-scoring classes other than the "
                          "ground truth (ELODI: 10; --recipe ldi: 0 = all classes). With 11 classes or fewer, k = 10 "
                          "is every class but the ground truth.")
    ldi_topk_by: Literal["new", "old"] = Field("new", description="Whose logits pick the top-k classes: the new model's (the original's intent) or the teacher's.")
    min_teachers: int = Field(8, ge=1, description="Fewest --old teacher runs accepted (ELODI: an ensemble of 8; "
                              "--recipe ldi: 1). Fewer is an error, so that a missing --old is not silently a "
                              "different method.")

    @model_validator(mode="before")
    @classmethod
    def _apply_recipe(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        recipe = values.get("recipe") or "elodi"
        defaults = RECIPES.get(getattr(recipe, "value", recipe), {})  # an unknown recipe fails on its own field
        return {**{k: v for k, v in defaults.items() if values.get(k) is None}, **{
            k: v for k, v in values.items() if v is not None or k not in defaults}}
