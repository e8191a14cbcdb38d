"""compat-mixbct's plugin module. Kept light: no torch import; the method is a lazy reference."""

from __future__ import annotations

from compat_core.hookspecs import hookimpl


@hookimpl
def compat_register_methods(register):
    register("mixbct", config="compat_mixbct.config:MixBCTConfig", factory="compat_mixbct.methods:MixBCT",
             summary="MixBCT (Liang et al. 2023): in each batch a share of the credible samples (nearest their "
                     "class mean in the old space) have their new embeddings replaced by their normalised old "
                     "features before the classification loss.")
