"""Old models: frozen, in eval mode, evaluated under inference mode."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from compat_core.errors import CompatError
from compat_core.models.embedding import EmbeddingModel


class OldModel:
    """A frozen :class:`EmbeddingModel`. Not an ``nn.Module`` on purpose: holding one as an attribute of
    a method never puts its weights into the optimizer, the checkpoint or DDP.

    Outputs are computed under ``torch.inference_mode`` and cloned, so they can be used as targets in
    losses that autograd differentiates.
    """

    def __init__(self, model: EmbeddingModel, source: str):
        self.model = model.eval()
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.source = source

    @property
    def spec(self):
        return self.model.spec

    @property
    def classes(self) -> list[str]:
        return self.model.spec.classes

    @property
    def embedding_dim(self) -> int:
        return self.model.embedding_dim

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device) -> OldModel:
        self.model.to(device)
        return self

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = self.model.embed(images)
        return out.clone()

    def forward(self, images: torch.Tensor):
        with torch.inference_mode():
            out = self.model(images)
        return type(out)(out.embedding.clone(), None if out.logits is None else out.logits.clone())

    __call__ = forward

    @property
    def classifier(self) -> nn.Module | None:
        return self.model.head


def load_old_model(source: str, device: str | torch.device = "cpu") -> OldModel:
    """Load an old model from a run directory, or through a plugin's ``compat_load_old_model``."""
    from compat_core.models.run import is_run_dir, load_model
    from compat_core.plugins import get_host

    if is_run_dir(source):
        return OldModel(load_model(source), source).to(device)
    model = get_host().load_old_model(source)
    if model is not None:
        return OldModel(model, source).to(device)
    if Path(source).exists():
        raise CompatError(f"--old {source} is not a compat run (no model.json and model.safetensors). "
                          f"Pass a run directory written by `compat train`.")
    raise CompatError(f"--old {source}: no such run directory, and no plugin knows this reference. "
                      f"Train the old model first with `compat train baseline --out {source} ...`.")
