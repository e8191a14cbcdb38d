"""Options of ``compat train bt2`` (no torch here: the CLI builds flags from them).

Example:
    >>> c = BT2Config(new_prime="runs/new")
    >>> c.lambda1, c.lambda2, c.lambda3, c.add_dim, c.scale_c
    (1.0, 10.0, 5.0, 32, 2.0)
"""

from __future__ import annotations

from compat_core.config import MethodConfig
from pydantic import Field


class BT2Config(MethodConfig):
    """``bt2``: CE + lambda2 BCT influence + lambda3 (1 - cos(old, bct)) + lambda1 (1 - cos(new', v))."""

    new_prime: str = Field(..., description="Run directory of the independently trained new model (new'), frozen; "
                           "its embedding dimension is d, the new model's --embedding-dim.")
    lambda1: float = Field(1.0, ge=0, description="Weight of 1 - cos(new'(x), v): keep the new model's own "
                           "feature close to the independent new model's (the paper's 1).")
    lambda2: float = Field(10.0, ge=0, description="Weight of the BCT influence loss: CE of n(bct) against the old "
                           "class means, not re-normalised, no scale (the paper's 10).")
    lambda3: float = Field(5.0, ge=0, description="Weight of 1 - cos(old(x), bct) (the paper's 5).")
    add_dim: int = Field(32, ge=0, description="a: the extra dimensions of the deployed embedding, d + a (the "
                         "paper's 32); at most the old dimension.")
    grow: bool = Field(False, description="Count a over the old embedding instead of over d: the deployed size "
                       "is d_old + a, so in a chain (the old model a BT^2 model of d + a dims) every generation "
                       "gets a new extra dimensions; the same as the default when d_old = d.")
    scale_c: float = Field(2.0, gt=0, description="C: the new feature enters the basis transformation as C * v "
                           "(the paper's 2); the deployed embedding's norm is sqrt(1 + C^2).")
    old_features: str | None = Field(None, description="Optional .npz of old-model features of the training data, "
                                     "by dataset index (needs --augment none); default: the old model on each batch.")
