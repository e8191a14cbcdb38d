"""The embedding model: preprocessing + backbone + optional projection + optional classifier head."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from compat_core.models.backbone import create_backbone
from compat_core.models.heads import build_head, head_settings

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODEL_FORMAT = "compat-model/1"


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model; stored as ``model.json`` beside the weights."""

    backbone: str
    embedding_dim: int | None
    num_classes: int
    classes: list[str]
    head: dict[str, Any] = field(default_factory=lambda: {"type": "linear"})
    input: dict[str, Any] = field(default_factory=lambda: {
        "size": 32, "channels": 3, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)})
    method: str = "baseline"
    trained_on: dict[str, Any] = field(default_factory=dict)
    old_model: list[str] | str | None = None
    feature_dim: int | None = None
    #: How this model meets an old model of another embedding dimension (``truncate`` | ``zero-pad``),
    #: set by the method that trained it against that old model; evaluators align the same way.
    dim_policy: str | None = None
    #: The run whose embedding space this model's outputs live in, when that is not its own: FCT's
    #: transformation maps old embeddings into its new model's space. Indexes use it to let that new
    #: model query (and backfill) a gallery of transformed vectors.
    embeds_into: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = MODEL_FORMAT

    @classmethod
    def from_options(cls, *, backbone: str, embedding_dim: int | None, classes: list[str], head: str,
                     head_scale: float | None, head_margin: float | None, image_size: int,
                     **kwargs: Any) -> ModelSpec:
        return cls(backbone=backbone, embedding_dim=embedding_dim or None, num_classes=len(classes),
                   classes=list(classes), head=head_settings(head, head_scale, head_margin),
                   input={"size": image_size, "channels": 3, "mean": list(IMAGENET_MEAN),
                          "std": list(IMAGENET_STD)}, **kwargs)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {"format": data.pop("format"), **data}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        extra = dict(known.get("extra") or {})
        if "dim_policy" in extra:  # runs written before dim_policy was a field kept it in extra
            known.setdefault("dim_policy", extra.pop("dim_policy"))
            known["extra"] = extra
        return cls(**known)


class ModelOutput(NamedTuple):
    embedding: torch.Tensor
    logits: torch.Tensor | None


class Preprocess(nn.Module):
    """uint8 images (B, 3, H, W) -> normalized float at the model's own input size."""

    def __init__(self, size: int, mean, std):
        super().__init__()
        self.size = size
        self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(std).view(1, -1, 1, 1)), persistent=False)
        self.register_buffer("shift", torch.tensor(mean).view(1, -1, 1, 1) / torch.tensor(std).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return x * self.scale - self.shift


class EmbeddingModel(nn.Module):
    """Backbone + projection + head. ``embed`` gives the deployed embedding (not normalized);
    ``classify`` gives logits, with the head's margin when targets are passed.

    Example:
        >>> spec = ModelSpec(backbone="test_resnet", embedding_dim=16, num_classes=3, classes=["a", "b", "c"])
        >>> model = EmbeddingModel(spec)
        >>> out = model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
        >>> out.embedding.shape, out.logits.shape
        (torch.Size([2, 16]), torch.Size([2, 3]))
    """

    def __init__(self, spec: ModelSpec, backbone: nn.Module | None = None, backbone_weights: str | None = None):
        super().__init__()
        self.spec = spec
        self.preprocess = Preprocess(spec.input["size"], spec.input["mean"], spec.input["std"])
        self.backbone = backbone if backbone is not None else create_backbone(spec.backbone, backbone_weights)
        spec.feature_dim = int(self.backbone.num_features)
        if spec.embedding_dim:
            self.projection: nn.Module = nn.Linear(spec.feature_dim, spec.embedding_dim)
        else:
            self.projection = nn.Identity()
        self.head = build_head(spec.head["type"], self.embedding_dim, spec.num_classes, spec.head.get("scale"),
                               spec.head.get("margin")) if spec.num_classes else None

    @property
    def embedding_dim(self) -> int:
        return int(self.spec.embedding_dim or self.spec.feature_dim)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.projection(self.backbone(self.preprocess(images)))

    def classify(self, embedding: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        if self.head is None:
            raise RuntimeError("this model has no classifier head")
        return self.head(embedding, targets)

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> ModelOutput:
        embedding = self.embed(images)
        logits = self.classify(embedding, targets) if self.head is not None else None
        return ModelOutput(embedding, logits)

    @property
    def classifier_weight(self) -> torch.Tensor | None:
        """Class weights (C, D) of the head, or None without a head."""
        return None if self.head is None else self.head.weight
