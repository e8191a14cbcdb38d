"""compat-pct's plugin module. Kept light: no torch import; methods and losses are lazy references."""

from __future__ import annotations

from compat_core.hookspecs import hookimpl

_CONFIGS = "compat_pct.config"
_METHODS = "compat_pct.methods"
_LOSSES = "compat_pct.losses"
_SHARED = ("Old model with fewer or other classes: distilled on the shared classes only "
           "(--label-map for other names).")


@hookimpl
def compat_register_methods(register):
    register("pct", config=f"{_CONFIGS}:PCTConfig", factory=f"{_METHODS}:PCT",
             summary="PCT focal distillation (Yan et al. 2021): CE + per-sample weighted KL (T^2) or logit-L2 "
                     "distillation from the old model(s). " + _SHARED)
    register("cna", config=f"{_CONFIGS}:CNAConfig", factory=f"{_METHODS}:CNA",
             summary="Contrastive neighbourhood alignment: CE + the new embeddings must find the old model's "
                     "in-batch neighbours (batch gathered under DDP). " + _SHARED)
    register("elodi", config=f"{_CONFIGS}:ELODIConfig", factory=f"{_METHODS}:ELODI",
             summary="ELODI (Zhao et al. 2022): CE + logit difference inhibition against an ensemble of 8 teacher "
                     "runs (repeat --old; --recipe ldi: one old model). " + _SHARED)


@hookimpl
def compat_register_losses(register):
    register("focal_distillation", factory=f"{_LOSSES}:focal_distillation_factory",
             summary="PCT focal distillation: weighted mean of per-sample KL (x T^2) or logit L2.")
    register("ldi", factory=f"{_LOSSES}:ldi_factory",
             summary="Logit difference inhibition: max(|z_new - z_old| - m, 0)^p, per-sample top-k classes.")
    register("cna", factory=f"{_LOSSES}:cna_factory",
             summary="Contrastive neighbourhood alignment of normalised embeddings (teacher's top-k neighbours).")
