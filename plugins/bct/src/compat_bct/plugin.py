"""compat-bct's plugin module. Kept light: no torch import; methods and losses are lazy references."""

from __future__ import annotations

from compat_core.hookspecs import hookimpl

_CONFIGS = "compat_bct.config"
_METHODS = "compat_bct.methods"
_LOSSES = "compat_bct.losses"


@hookimpl
def compat_register_methods(register):
    register("bct", config=f"{_CONFIGS}:BCTConfig", factory=f"{_METHODS}:BCT",
             summary="BCT (Shen et al. 2020): CE + lambda * influence loss through the old classifier "
                     "(synthesized from old embeddings and fitted to them by default).")
    register("l2", config=f"{_CONFIGS}:L2Config", factory=f"{_METHODS}:L2",
             summary="CE + w * L2 regression of normalised new onto old embeddings (hinge threshold: weakened L2).")
    register("triplet", config=f"{_CONFIGS}:TripletConfig", factory=f"{_METHODS}:Triplet",
             summary="CE + new->old triplet loss with the hardest in-batch old negative.")
    register("contrastive", config=f"{_CONFIGS}:ContrastiveConfig", factory=f"{_METHODS}:Contrastive",
             summary="CE + supervised contrastive loss from new embeddings to old embeddings.")


@hookimpl
def compat_register_losses(register):
    register("bct_influence", factory=f"{_LOSSES}:influence_factory",
             summary="BCT influence loss: CE of the old classifier's logits on the new embedding.")
    register("bct_lwf_influence", factory=f"{_LOSSES}:lwf_influence_factory",
             summary="LwF variant of the influence loss: old classifier's softmax on old embeddings as soft targets.")
    register("l2_compat", factory=f"{_LOSSES}:l2_compat_factory",
             summary="Mean hinge of ||n(old) - n(new)|| (or its squared form) above a threshold.")
    register("triplet_new_to_old", factory=f"{_LOSSES}:triplet_factory",
             summary="Triplet: new anchor, old positive, hardest old negative of another class in the batch.")
    register("supcon_new_to_old", factory=f"{_LOSSES}:supcon_factory",
             summary="Supervised contrastive loss from new to old embeddings (temperature tau).")


@hookimpl
def compat_register_presets(register):
    register("bt2-bct-baseline", path="compat_bct:presets/bt2-bct-baseline.yaml",
             summary="BT^2's BCT baseline for `compat train bct`: n(f) . W with unnormalised old class means, "
                     "alpha 10, label smoothing 0.1")
