"""Options of ``compat train mixbct`` (no torch here: the CLI builds flags from them).

Example:
    >>> MixBCTConfig().mix_ratio, MixBCTConfig().keep_ratio
    (0.3, 0.9)
"""

from __future__ import annotations

from compat_core.config import OldSpaceOptions
from pydantic import Field


class MixBCTConfig(OldSpaceOptions):
    """``mixbct``: CE of the new head on a batch whose credible rows are partly the old features."""

    mix_ratio: float = Field(0.3, ge=0, le=1, description="Share of each (per-process) batch whose new embeddings are "
                             "replaced by their normalised old features, drawn among the credible samples (the "
                             "original: 0.3, i.e. 38 of 128).")
    keep_ratio: float = Field(0.9, gt=0, le=1, description="Keep ratio T of the denoising: per class, the ceil(T n_c) "
                        "samples whose old features lie nearest their class mean are credible (the original's "
                        "README calls T a threshold; it is a ratio).")
    column_normalize: bool = Field(False, description="Normalise each dimension of the row-normalised old features "
                                   "over the training set before the denoising (the original code does).")
    credible: str | None = Field(None, description="A mask from `compat features denoise` (.npz, by dataset index) "
                                 "instead of denoising the old features of the training data when training starts.")
