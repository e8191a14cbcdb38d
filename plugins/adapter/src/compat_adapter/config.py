"""Options of ``compat train adapter`` (no torch here: the CLI builds flags from them).

Example:
    >>> AdapterConfig(new="runs/new").kind, AdapterConfig(new="runs/new").direction
    ('procrustes', 'old-to-new')
"""

from __future__ import annotations

from typing import Literal

from compat_core.config import MethodConfig
from pydantic import Field


class AdapterConfig(MethodConfig):
    """``adapter``: fit a map between the old model's space (``--old``) and the new model's (``--new``)."""

    # Only the mlp kind optimises, on cached embeddings, with its own Adam; the common flags that shape a
    # backbone play no part.
    common_defaults = {"augment": "none"}

    new: str | None = Field(None, description="Run directory of the new model (frozen): the space mapped into "
                            "(old-to-new) or from (new-to-old). Without it, --new-features stands for it.")
    kind: Literal["procrustes", "affine", "low-rank", "mlp"] = Field(
        "procrustes", description="procrustes: orthogonal map, closed form by SVD (Schonemann 1966); affine: "
        "least squares with a ridge; low-rank: the affine map of rank --rank (reduced-rank regression); mlp: the "
        "affine map plus a small residual MLP trained on the pairs.")
    direction: Literal["old-to-new", "new-to-old"] = Field(
        "old-to-new", description="old-to-new: map old embeddings into the new space (transform the old gallery, "
        "as FCT); new-to-old: map new queries into the old space (the gallery is never touched).")
    fit_samples: int = Field(10000, ge=2, description="Training images embedded by both models to fit on "
                             "(a seeded random subset of the training data; all of it when smaller).")
    old_features: str | None = Field(
        None, description="Optional .npz of old-model features (`compat features extract --model OLD`): used "
        "instead of running the old model. Without --old (the old model is gone), the run maps stored vectors "
        "only (`compat features transform`), or serves new queries (new-to-old).")
    new_features: str | None = Field(
        None, description="Optional .npz of new-model features of the same images. With --old-features, "
        "both files must list the same images in the same order; the fit then reads no image. Without --new "
        "(or --old), the run maps stored vectors only.")
    normalize: bool = Field(True, description="Fit on L2-normalised embeddings (cosine retrieval); false: on raw "
                            "embeddings (l2 retrieval).")
    ridge: float = Field(1e-3, ge=0, description="Ridge of the affine, low-rank and mlp kinds: lambda of "
                         "mean ||y - Wx - b||^2 + lambda ||W||^2.")
    rank: int = Field(32, ge=1, description="Rank of the low-rank kind's map.")
    hidden: int = Field(256, ge=1, description="Hidden width of the mlp kind's residual MLP.")
    fit_epochs: int = Field(100, ge=1, description="Passes over the fit pairs of the mlp kind (Adam, batch 256).")
    fit_lr: float = Field(1e-3, gt=0, description="Adam learning rate of the mlp kind.")
