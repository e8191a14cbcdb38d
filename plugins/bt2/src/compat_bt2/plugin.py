"""compat-bt2's plugin module. Kept light: no torch import; the method is a lazy reference."""

from __future__ import annotations

from compat_core.hookspecs import hookimpl


@hookimpl
def compat_register_methods(register):
    register("bt2", config="compat_bt2.config:BT2Config", factory="compat_bt2.methods:BT2",
             summary="BT^2 (Zhou et al. 2023): a few extra dimensions through orthogonal basis transformations; "
                     "CE + BCT influence + cosine to the old model (first d_old dims) + cosine to an independent "
                     "new model (--new-prime).")
