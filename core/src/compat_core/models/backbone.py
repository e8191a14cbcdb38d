"""Backbones: images (B, 3, H, W) -> pooled features (B, F). Never downloads weights."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from compat_core.errors import CompatError


def create_timm_backbone(name: str, **kwargs) -> nn.Module:
    """Create a timm model without classifier and without pretrained weights.

    Example:
        >>> net = create_timm_backbone("test_resnet")
        >>> net(torch.zeros(2, 3, 32, 32)).shape[0]
        2
    """
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:5]
        hint = f" Similar names: {', '.join(close)}." if close else ""
        raise CompatError(f"--backbone {name!r} is neither a registered backbone nor a timm model.{hint} "
                          f"List timm names with `python -c 'import timm; print(timm.list_models())'`.")
    return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)


def create_backbone(name: str, weights: str | None = None) -> nn.Module:
    """A backbone by registered name, else by timm name; optionally loads a local weights file."""
    from compat_core.plugins import get_host

    registry = get_host().backbones
    if name in registry and name != "timm":
        net = registry.lookup(name).get("factory")()
    else:
        net = registry.lookup("timm").get("factory")(name)
    if not hasattr(net, "num_features"):
        raise CompatError(f"backbone {name!r} has no `num_features` attribute; its plugin must set it.")
    if weights:
        load_backbone_weights(net, weights)
    return net


def load_backbone_weights(net: nn.Module, path: str) -> None:
    """Load a local ``.safetensors`` or ``.pth`` file (never unpickled: ``weights_only=True``)."""
    file = Path(path)
    if not file.is_file():
        raise CompatError(f"--backbone-weights {path}: no such file. Give a local .safetensors or .pth file.")
    state = read_state_dict(file)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = net.state_dict()
    state = {k: v for k, v in state.items() if k in own}  # drop the checkpoint's classifier and extras
    missing = [k for k in own if k not in state]
    mismatched = [k for k, v in state.items() if v.shape != own[k].shape]
    if missing or mismatched:
        bad = (missing + mismatched)[:3]
        raise CompatError(f"--backbone-weights {path} does not fit the backbone: {len(missing)} missing and "
                          f"{len(mismatched)} mis-shaped tensors (e.g. {', '.join(bad)}). Check --backbone.")
    net.load_state_dict(state, strict=False)


def read_state_dict(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CompatError(f"{file} could not be read as plain tensors ({type(exc).__name__}). compat never "
                          f"unpickles arbitrary objects: re-save it as a state_dict or .safetensors.") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise CompatError(f"{file} holds no state_dict. Save the model's state_dict() instead.")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
