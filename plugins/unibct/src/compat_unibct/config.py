"""Options of ``compat train unibct`` (no torch here: the CLI builds flags from them).

Example:
    >>> UniBCTConfig().refine_epochs, UniBCTConfig().lam, UniBCTConfig().tau
    ([10, 20], 0.9, 0.05)
"""

from __future__ import annotations

from typing import Literal

from compat_core.config import OldSpaceOptions
from pydantic import Field


class UniBCTConfig(OldSpaceOptions):
    """``unibct``: CE, plus (from the first refinement epoch) CE against refined old-feature prototypes."""

    refine_epochs: list[int] = Field(
        [10, 20], description="Epochs (0-based) at whose start the prototypes are rebuilt from the current model. "
        "The epochs before the first are the warm-up: CE only (the original: warm-up 10, refinement at 10 and "
        "20). Each must lie inside the run (< --epochs).")
    lam: float = Field(0.9, gt=0, lt=1, description="lambda of the propagation P = (1 - lambda)(I - lambda S)^-1 "
                       "(the paper's 0.9).")
    tau: float = Field(0.05, gt=0, description="Temperature of the affinity S = softmax(F_new F_new^T / tau) "
                       "(the paper's 0.05).")
    affinity: Literal["row", "column"] = Field(
        "row", description="Which way S is normalised: row (each sample's refined old feature is a convex mix of "
        "its new-space neighbours', so the prototype moves) or column (softmax over dim 0, as the "
        "original code: the mean of the refined features is then exactly the plain class mean, see the README).")
    weight: float = Field(1.0, ge=0, description="Weight of the compatibility term (the original: 1).")
    scale: float = Field(1.0, gt=0, description="Scale s of the prototype logits s * n(f) . p_c (the original: 1, "
                         "no scale; prototypes are not normalised).")
    memory_mb: int = Field(512, ge=16, description="Bound on the affinity matrices held at once while refining; "
                           "classes too large for it are solved iteratively, block by block.")
