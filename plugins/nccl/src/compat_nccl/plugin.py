"""compat-nccl's plugin module. Kept light: no torch import; the method and loss are lazy references."""

from __future__ import annotations

from compat_core.hookspecs import hookimpl


@hookimpl
def compat_register_methods(register):
    register("nccl", config="compat_nccl.config:NCCLConfig", factory="compat_nccl.methods:NCCL",
             summary="NCCL (Wu et al. 2022): CE + each new embedding (and its logits) contrasted with a queue of "
                     "old embeddings of its class, weighted by old-old similarity (the queue is gathered under DDP).")


@hookimpl
def compat_register_losses(register):
    register("neighbourhood_contrastive", factory="compat_nccl.losses:neighbourhood_contrastive_factory",
             summary="-(1/B) sum_i 1/|P_i| sum_{k in P_i} w_ik log softmax_k(a_i . key_k / tau), P_i: same-label keys.")
