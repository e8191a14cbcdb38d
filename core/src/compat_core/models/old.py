"""Old models: frozen, in eval mode, evaluated under inference mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from compat_core.errors import CompatError
from compat_core.features import require_file
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


class FeaturesOnlyOld:
    """The old model when only its features of the training data are given (``--old-features`` without
    ``--old``), as the MixBCT repository trains: its dimension, classes and fingerprint come from the file.

    Methods that need no more than old embeddings of the training images (``l2``, ``triplet``, ``contrastive``,
    ``nccl``, ``mixbct``, ``bct`` with synthesized rows) train with it; anything else a method asks of it (its
    classifier, running it on images) is one error saying that this method needs the old model itself.
    Its ``source`` is the feature file, which the new run records as its ``old_model``: provenance follows
    the file's recorded fingerprint.
    """

    features_only = True  # OldModel has no such attribute: ``getattr(old, "features_only", False)``

    def __init__(self, path: str, method: str):
        require_file(path, "--old-features")
        with np.load(path, allow_pickle=False) as npz:
            shape = npz["features"].shape if "features" in npz.files else (0, 0)
            self.fingerprint = str(npz["model_fingerprint"]) if "model_fingerprint" in npz.files else ""
            self.recorded_run = str(npz["model"]) if "model" in npz.files else ""
            names = npz["model_classes"] if "model_classes" in npz.files else npz.get("classes", [])
            self._classes = [str(c) for c in names]
        self.source, self.method, self.embedding_dim = str(path), method, int(shape[1])

    @property
    def classes(self) -> list[str]:
        return self._classes

    def to(self, device) -> FeaturesOnlyOld:
        return self

    def _needs_model(self, what: str):
        raise CompatError(f"`compat train {self.method}` needs the old model itself (--old RUN): it uses the old "
                          f"model's {what}, which --old-features {self.source} does not hold. Pass --old too (with "
                          f"--old-features the old embeddings still come from the file).")

    def embed(self, images):
        self._needs_model("forward pass on images")

    forward = __call__ = embed

    @property
    def classifier(self):
        self._needs_model("classifier")

    @property
    def spec(self):
        self._needs_model("specification (model.json)")

    @property
    def model(self):
        self._needs_model("weights")
