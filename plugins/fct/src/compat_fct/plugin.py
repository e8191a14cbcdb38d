"""compat-fct's plugin module. Kept light: no torch import; everything heavy is a lazy reference."""

from __future__ import annotations

from compat_core.hookspecs import hookimpl

_CONFIGS = "compat_fct.config"
_METHODS = "compat_fct.methods"
_LOSSES = "compat_fct.losses"
_EVALUATOR = "compat_fct.evaluator"


@hookimpl
def compat_register_methods(register):
    register("fct", config=f"{_CONFIGS}:FCTConfig", factory=f"{_METHODS}:FCT",
             summary="FCT (Ramanujan et al. 2022): train h(old emb, side info) -> new emb; exports old+side+h as a "
                     "gallery model.")
    register("fastfill", config=f"{_CONFIGS}:FastFillConfig", factory=f"{_METHODS}:FastFill",
             summary="FastFill (Jaeckle et al. 2023): FCT + uncertainty head, new-classifier CE; orders backfilling.")


@hookimpl
def compat_register_backfill_orders(register):
    register("uncertainty", factory="compat_fct.gallery:uncertainty_order",
             summary="FastFill: the items whose transformed vectors are least certain first (--old: the "
                     "fastfill run).")


@hookimpl
def compat_register_losses(register):
    register("fct_similarity", factory=f"{_LOSSES}:fct_loss_factory",
             summary="FCT: batch mean of the per-sample distance (mse, l1 or 1-cos) of h to the new embedding.")
    register("fastfill", factory=f"{_LOSSES}:fastfill_loss_factory",
             summary="FastFill: mean of exp(-sigma)/2 (mu_sim l_sim + mu_disc CE_eps) + mu_u sigma.")


@hookimpl
def compat_register_evaluators(register):
    register("backfill", config=f"{_EVALUATOR}:BackfillOptions", run=f"{_EVALUATOR}:run_backfill",
             render=f"{_EVALUATOR}:render_backfill",
             summary="Backfilling curve: the transformed-old gallery replaced by new embeddings step by step "
                     "(random, uncertainty or distance order); CMC/mAP per step and AUC.")


@hookimpl
def compat_register_commands(app):
    from compat_fct.commands import build_app

    app.add_typer(build_app(), name="fct")
