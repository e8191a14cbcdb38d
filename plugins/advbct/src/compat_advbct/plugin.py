"""compat-advbct's plugin module. Kept light: no torch import; the method and losses are lazy references."""

from __future__ import annotations

from compat_core.hookspecs import hookimpl


@hookimpl
def compat_register_methods(register):
    register("advbct", config="compat_advbct.config:AdvBCTConfig", factory="compat_advbct.methods:AdvBCT",
             summary="AdvBCT (Pan et al. 2023): CE + point-to-set loss against elastic per-class boundaries of the "
                     "old embeddings + an adversarial discriminator (gradient reversal) between new and old features.")


@hookimpl
def compat_register_losses(register):
    register("point_to_set", factory="compat_advbct.losses:point_to_set_factory",
             summary="mean over samples outside their class's boundary of ||n(f_i) - mu_y|| - R_y (0 when none is).")
