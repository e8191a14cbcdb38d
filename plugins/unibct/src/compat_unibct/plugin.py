"""compat-unibct's plugin module. Kept light: no torch import; the method and loss are lazy references."""

from __future__ import annotations

from compat_core.hookspecs import hookimpl


@hookimpl
def compat_register_methods(register):
    register("unibct", config="compat_unibct.config:UniBCTConfig", factory="compat_unibct.methods:UniBCT",
             summary="UniBCT (Zhang et al. 2022): CE, then from the first refinement epoch CE of the normalised "
                     "new embedding against old-feature class prototypes refined by label propagation over the "
                     "new model's neighbourhoods.")


@hookimpl
def compat_register_losses(register):
    register("prototype_propagation", factory="compat_unibct.refine:refined_prototypes",
             summary="p_c = mean_rows((1 - lambda)(I - lambda S)^-1 F_old), S = softmax(F_new F_new^T / tau), "
                     "diagonal excluded; one linear solve per class, batched, memory-bounded.")
