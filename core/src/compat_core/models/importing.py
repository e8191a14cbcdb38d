"""Import a model trained elsewhere as a compat run directory (``compat import model``).

The checkpoint (``.safetensors``, or a ``.pth`` read with ``weights_only=True``: never unpickled) is matched
against the backbone's own state dict. A common key prefix (``module.``, ``model.``, ``backbone.``...) is
found by itself: the one under which most of the backbone's keys appear. Every backbone tensor must be
there with its shape; the projection and the classifier come from the keys named by
``projection_weights`` / ``head_weights`` (``fc`` means ``fc.weight`` and ``fc.bias``). Tensors left over
are listed: a checkpoint is imported only when all of it is accounted for (``ignore`` names the ones to
leave out on purpose, such as an auxiliary head).

Example:
    >>> request = ImportRequest("resnet18", "resnet18.pth", head="linear", head_weights="fc")  # doctest: +SKIP
    >>> save_model(import_model(request), "runs/imported")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from compat_core.errors import CompatError
from compat_core.models.backbone import create_backbone, read_state_dict
from compat_core.models.embedding import IMAGENET_MEAN, IMAGENET_STD, EmbeddingModel, ModelSpec
from compat_core.models.heads import DEFAULT_SCALE

HEAD_KINDS = ("linear", *DEFAULT_SCALE)

SHOWN = 5  # keys listed in an error


@dataclass
class ImportRequest:
    """What ``compat import model`` was asked (see the module docstring)."""

    backbone: str
    weights: str
    projection_weights: str | None = None
    head: str | None = None
    head_weights: str | None = None
    classes: list[str] | None = None
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    ignore: list[str] = field(default_factory=list)


def import_model(request: ImportRequest) -> EmbeddingModel:
    """An :class:`EmbeddingModel` holding the checkpoint's weights, or a CompatError naming what does not fit."""
    path = Path(request.weights)
    if not path.is_file():
        raise CompatError(f"--weights {request.weights}: no such file. Give a local .safetensors or .pth file.")
    state = read_state_dict(path)
    net = create_backbone(request.backbone)
    own = net.state_dict()
    prefix = common_prefix(list(state), list(own))
    taken: set[str] = set()
    backbone_state = _take(state, {key: prefix + key for key in own}, taken)
    projection = _linear(state, request.projection_weights, prefix, taken, "--projection-weights")
    head = _linear(state, request.head_weights, prefix, taken, "--head-weights") if request.head else None
    _check_fit(request, own, backbone_state, state, taken, prefix)
    spec = _spec(request, projection, head, int(net.num_features), path, prefix)
    model = EmbeddingModel(spec, backbone=net)
    net.load_state_dict(backbone_state)
    if projection is not None:
        model.projection.load_state_dict(projection)
    if head is not None:
        _load_head(model, head, request)
    return model.eval()


def common_prefix(keys: list[str], own: list[str]) -> str:
    """The prefix under which most of ``own`` appears in ``keys`` ("" when they match as they are).

    Example:
        >>> common_prefix(["module.conv.weight", "module.fc.weight"], ["conv.weight"])
        'module.'
    """
    votes: dict[str, int] = {}
    owned = set(own)
    for key in keys:
        for start in [0] + [i + 1 for i, c in enumerate(key) if c == "."]:
            if key[start:] in owned:
                votes[key[:start]] = votes.get(key[:start], 0) + 1
                break
    return max(votes, key=lambda p: (votes[p], -len(p))) if votes else ""


def _take(state: dict, wanted: dict[str, str], taken: set[str]) -> dict[str, torch.Tensor]:
    """``{own key: tensor}`` for the wanted checkpoint keys present in ``state``; marks them taken."""
    found = {own: state[key] for own, key in wanted.items() if key in state}
    taken.update(wanted[own] for own in found)
    return found


def _linear(state: dict, name: str | None, prefix: str, taken: set[str], flag: str) -> dict | None:
    """``{"weight", "bias"?}`` of the layer ``name``: as written, or under the backbone's prefix or a parent of it
    (``module.embed`` beside ``module.backbone.``)."""
    if not name:
        return None
    parents = [prefix[:i + 1] for i, c in enumerate(prefix) if c == "."]  # "module.", "module.backbone."
    for base in [name, *(parent + name for parent in parents)]:
        found = _take(state, {"weight": f"{base}.weight", "bias": f"{base}.bias"}, taken)
        if "weight" in found:
            if found["weight"].dim() != 2:
                raise CompatError(f"{flag} {name}: {base}.weight has shape {tuple(found['weight'].shape)}, not a "
                                  f"linear layer's (out, in).")
            return found
    close = [key for key in state if name.split(".")[-1] in key][:SHOWN]
    raise CompatError(f"{flag} {name}: the checkpoint has no tensor {name}.weight (nor {prefix}{name}.weight)"
                      + (f"; similar keys: {', '.join(close)}" if close else "") + ".")


def _check_fit(request: ImportRequest, own: dict, found: dict, state: dict, taken: set[str], prefix: str) -> None:
    missing = [key for key in own if key not in found]
    mis_shaped = [f"{key} {tuple(found[key].shape)} for {tuple(own[key].shape)}" for key in found
                  if found[key].shape != own[key].shape]
    left = [key for key in state if key not in taken and not any(key.startswith(i) for i in request.ignore)]
    if not (missing or mis_shaped or left):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} backbone tensors missing ({', '.join(missing[:SHOWN])})")
    if mis_shaped:
        parts.append(f"{len(mis_shaped)} of another shape ({', '.join(mis_shaped[:SHOWN])})")
    if left:
        parts.append(f"{len(left)} checkpoint tensors unused ({', '.join(left[:SHOWN])})")
    where = f" under the prefix {prefix!r}" if prefix else ""
    raise CompatError(f"--weights {request.weights} does not fit --backbone {request.backbone}{where}: "
                      f"{'; '.join(parts)}. Check --backbone; import a classifier with --head ... --head-weights "
                      f"NAME and a projection with --projection-weights NAME, or leave tensors out with --ignore "
                      f"PREFIX.")


def _spec(request: ImportRequest, projection, head, feature_dim: int, path: Path, prefix: str) -> ModelSpec:
    embedding_dim = int(projection["weight"].shape[0]) if projection is not None else None
    if projection is not None and projection["weight"].shape[1] != feature_dim:
        raise CompatError(f"--projection-weights {request.projection_weights} takes {projection['weight'].shape[1]} "
                          f"inputs but --backbone {request.backbone} gives {feature_dim} features.")
    classes: list[str] = []
    if head is not None:
        if request.head not in HEAD_KINDS:
            raise CompatError(f"--head {request.head}: use one of {', '.join(HEAD_KINDS)}.")
        count, width = head["weight"].shape
        if width != (embedding_dim or feature_dim):
            raise CompatError(f"--head-weights {request.head_weights} takes {width}-d inputs but the embedding is "
                              f"{embedding_dim or feature_dim}-d.")
        classes = request.classes or [str(c) for c in range(count)]
        if len(classes) != count:
            raise CompatError(f"--classes names {len(classes)} classes but --head-weights {request.head_weights} "
                              f"has {count} rows. Give one class name per line, in the head's order.")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = ModelSpec.from_options(
        backbone=request.backbone, embedding_dim=embedding_dim, classes=classes, head=request.head or "linear",
        head_scale=None, head_margin=None, image_size=request.input_size, method="imported",
        extra={"imported": {"weights": str(path), "sha256": digest, "prefix": prefix}})
    spec.input.update(mean=[float(v) for v in request.mean], std=[float(v) for v in request.std])
    return spec


def _load_head(model: EmbeddingModel, head: dict, request: ImportRequest) -> None:
    target = model.head
    params = dict(target.named_parameters())
    if "bias" in head and not any(name.endswith("bias") for name in params):
        raise CompatError(f"--head {request.head} has no bias, but the checkpoint has {request.head_weights}.bias: "
                          f"a cosine head would ignore it and give other logits. Use --head linear.")
    with torch.no_grad():
        target.weight.copy_(head["weight"])
        if "bias" in head:
            target.bias.copy_(head["bias"])
