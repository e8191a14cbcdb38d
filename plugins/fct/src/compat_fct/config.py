"""Option models of ``fct`` and ``fastfill`` (no torch here: the CLI builds flags from them).

Every field becomes a ``--flag`` of ``compat train METHOD`` (``side_info`` -> ``--side-info``) and can
also come from ``--config`` or ``--set``. The old model is the common ``--old RUN``.

Example:
    >>> FCTConfig(new="runs/new").mixer_width
    2048
    >>> FastFillConfig(new="runs/new").uncertainty_weight
    0.5
"""

from __future__ import annotations

from typing import Literal

from compat_core.config import MethodConfig
from pydantic import Field

Similarity = Literal["mse", "l1", "cosine"]


class FCTConfig(MethodConfig):
    """``fct``: train h(old embedding, side info) -> new embedding; old, new and side-info models frozen."""

    # The paper trains the transformation with Adam at 5e-4, weight decay 2^-15; with compat's common
    # SGD at 0.1, FastFill's uncertainty term diverged (NaN) on Fashion-MNIST.
    common_defaults = {"optimizer": "adamw", "lr": 5e-4, "weight_decay": 3.0517578125e-05}

    new: str = Field(..., description="Run directory of the new model (frozen): its embedding of each training "
                     "image is the target of the transformation.")
    side_info: str | None = Field(
        None, description="Run directory of a side-information model (frozen; any compat run, e.g. one trained "
        "on other data). Default (none): the old embedding is fed in its place, as in the original code.")
    old_features: str | None = Field(
        None, description="Optional .npz of old-model features of the training data (`compat features extract "
        "--model OLD --data DATA --split train`), looked up by sample index instead of running the old model. "
        "Needs --augment none (the features are of un-augmented images).")
    similarity: Similarity = Field(
        "mse", description="Per-sample distance to the new embedding: mse (mean squared error over dims, the "
        "papers'), l1 (mean absolute error) or cosine (1 - cos).")
    mixer_width: int = Field(2048, ge=1, description="Width of the mixer's hidden layers (original: 2048).")
    mixer_layers: int = Field(2, ge=1, description="Hidden linear+BatchNorm+ReLU layers of the mixer (original: 2).")
    old_hidden: int | None = Field(None, ge=1, description="Hidden width of the old-embedding branch (default: 2 x old dim).")
    side_hidden: int | None = Field(None, ge=1, description="Hidden width of the side-info branch (default: 2 x side-info dim).")
    branch_dim: int | None = Field(None, ge=1, description="Output width of each branch (default: 2 x new dim).")
    freeze_bn_second_half: bool = Field(
        True, description="Train the second half of the epochs with BatchNorm statistics frozen (eval mode), as "
        "the original's switch_mode_to_eval.")


class FastFillConfig(FCTConfig):
    """``fastfill``: FCT's transformation + an uncertainty head, trained with FastFill's loss."""

    uncertainty: bool = Field(
        True, description="Learn a per-sample uncertainty sigma (log-variance) and weight each sample's "
        "loss by exp(-sigma)/2 and add uncertainty_weight x sigma; it orders the backfill (`compat eval backfill --order "
        "uncertainty`).")
    similarity_weight: float = Field(1.0, ge=0, description="mu_sim: weight of the similarity term (FastFill: 1).")
    discriminative_weight: float = Field(
        1.0, ge=0, description="mu_disc: weight of the cross-entropy of the new model's frozen classifier on the "
        "transformed embedding (FastFill: 1).")
    uncertainty_weight: float = Field(0.5, ge=0, description="mu_u: weight of the sigma regulariser (FastFill: 0.5).")
    disc_label_smoothing: float = Field(
        0.1, ge=0, lt=1, description="Label smoothing of the discriminative term (FastFill: 0.1; 0 = plain CE).")
