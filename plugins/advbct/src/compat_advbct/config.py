"""Options of ``compat train advbct`` (no torch here: the CLI builds flags from them).

Example:
    >>> config = AdvBCTConfig()
    >>> config.theta, config.p2s_weight, config.adv_weight, config.disc_hidden, config.disc_lr
    (0.4, 4.0, 4.0, 100, 0.01)
"""

from __future__ import annotations

from compat_core.config import OldSpaceOptions
from pydantic import Field


class AdvBCTConfig(OldSpaceOptions):
    """``advbct``: CE + p2s_weight x point-to-set term + adv_weight x adversarial term."""

    theta: float = Field(0.4, gt=0, le=2, description="Threshold of the elastic boundary: a class whose old radius "
                         "r_max is below theta may grow towards it, one above may shrink towards it (the paper: "
                         "0.4). Radii of unit vectors lie in [0, 2].")
    p2s_weight: float = Field(4.0, ge=0, description="Weight of the point-to-set term, which pulls new embeddings "
                              "inside their class's boundary around the old class centre (the paper: 4).")
    adv_weight: float = Field(4.0, ge=0, description="Weight of the adversarial term, scaled down linearly over "
                              "the epochs by (E - epoch) / E (the paper: 4).")
    disc_hidden: int = Field(100, ge=1, description="Hidden units of the discriminator Linear(d, h) -> BN -> ReLU "
                             "-> Linear(h, 2) (the paper: 100).")
    disc_lr: float | None = Field(0.01, gt=0, description="Learning rate of the discriminator; none: the run's "
                                  "--lr. It follows the run's --lr schedule like every other parameter. 0.01: "
                                  "chosen on Fashion-MNIST's validation split, where at the run's 0.1 (times the "
                                  "adversarial weight 4) the discriminator's ReLUs die in the first epoch.")
