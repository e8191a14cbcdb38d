"""The exported FCT run: "old model + side-info model + transformation" as one gallery model.

``TransformedModel(images)`` = h(phi_old(images), psi(images)) in the new model's space, so
``compat eval retrieval --query NEW --gallery FCT_RUN`` measures new/transformed-old directly, and
``compat features extract --model FCT_RUN`` writes transformed gallery features.

The run directory is self-contained: ``model.safetensors`` holds the three parts' weights under the
prefixes ``old.``, ``side_info.`` (absent without side information) and ``transformation.``;
``model.json`` holds the parts' specs under ``extra.fct`` and names :func:`load_transformed_run` as its
loader (``compat_core.models.run`` calls it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from compat_core.errors import CompatError
from compat_core.models.embedding import EmbeddingModel, ModelOutput, ModelSpec
from compat_core.models.run import WEIGHTS, read_run_json, run_loader
from torch import nn

from compat_fct.transformation import Transformation, TransformationSpec

LOADER = "compat_fct.transformed:load_transformed_run"


class TransformedModel(nn.Module):
    """Old model + optional side-info model + transformation; embeds images into the new space.

    Without a side-info model, the old embedding is the side input too (the original's fallback).

    Example:
        >>> model = load_transformed_run("runs/fct")  # doctest: +SKIP
        >>> model(images).embedding.shape  # doctest: +SKIP
        torch.Size([8, 128])
    """

    run_loader = LOADER
    head = None

    def __init__(self, old: EmbeddingModel, side_info: EmbeddingModel | None, transformation: Transformation,
                 spec: ModelSpec):
        super().__init__()
        self.old, self.side_info, self.transformation, self.spec = old, side_info, transformation, spec

    @classmethod
    def assemble(cls, old: EmbeddingModel, side_info: EmbeddingModel | None, transformation: Transformation, *,
                 method: str, sources: dict[str, Any], new_classes: list[str], trained_on: dict[str, Any]
                 ) -> TransformedModel:
        """Build the exported model and its spec from trained parts."""
        size = max(m.spec.input["size"] for m in (old, side_info) if m is not None)
        fct = {"old": old.spec.to_json(), "side_info": None if side_info is None else side_info.spec.to_json(),
               "transformation": transformation.spec.to_json(), "sources": sources, "new_classes": new_classes}
        spec = ModelSpec(backbone=f"fct({old.spec.backbone})", embedding_dim=transformation.spec.new_dim,
                         num_classes=0, classes=[], head={"type": "none"}, input={**old.spec.input, "size": size},
                         method=method, trained_on=trained_on, old_model=sources.get("old"),
                         embeds_into=sources.get("new"),
                         feature_dim=transformation.spec.new_dim, extra={"fct": fct})
        return cls(old, side_info, transformation, spec)

    @property
    def embedding_dim(self) -> int:
        return self.transformation.spec.new_dim

    @property
    def has_uncertainty(self) -> bool:
        return self.transformation.uncertainty_head is not None

    @property
    def transformation_inputs(self) -> list[tuple[str, int]]:
        """The vectors ``transform_embeddings`` takes: old embeddings, and side-info ones when trained with them."""
        spec = self.transformation.spec
        return [("old", spec.old_dim)] + ([] if self.side_info is None else [("side_info", spec.side_dim)])

    def transform_embeddings(self, old: torch.Tensor, side: torch.Tensor | None = None) -> torch.Tensor:
        """h(old, side) of stored vectors (without side information, the old embedding stands in for it)."""
        return self.transformation(old, old if side is None else side).embedding

    def embed_with_uncertainty(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        old = self.old.embed(images)
        side = old if self.side_info is None else self.side_info.embed(images)
        out = self.transformation(old, side)
        return out.embedding, out.sigma

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed_with_uncertainty(images)[0]

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> ModelOutput:
        return ModelOutput(self.embed(images), None)

    def classify(self, embedding: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        raise RuntimeError("a transformed-old model has no classifier head")


@run_loader
def load_transformed_run(run_dir: str | Path, device: str = "cpu") -> TransformedModel:
    """Rebuild a :class:`TransformedModel` from an FCT / FastFill run directory."""
    run_dir = Path(run_dir)
    fct = fct_section(run_dir)
    old = EmbeddingModel(ModelSpec.from_json(fct["old"]))
    side = None if fct.get("side_info") is None else EmbeddingModel(ModelSpec.from_json(fct["side_info"]))
    transformation = Transformation(TransformationSpec.from_json(fct["transformation"]))
    model = TransformedModel(old, side, transformation, ModelSpec.from_json(read_run_json(run_dir)))
    _load_state(model, run_dir)
    return model.to(device).eval()


def load_transformation(run_dir: str | Path, device: str = "cpu") -> tuple[Transformation, dict[str, Any]]:
    """Only the transformation of an FCT run (for transforming feature files), and its ``extra.fct``."""
    run_dir = Path(run_dir)
    fct = fct_section(run_dir)
    transformation = Transformation(TransformationSpec.from_json(fct["transformation"]))
    _load_state(transformation, run_dir, prefix="transformation.")
    return transformation.to(device).eval(), fct


def is_fct_run(run_dir: Path) -> bool:
    """False only for a run another plugin loads (its model.json names a loader that is not FCT's): such a run
    may map stored vectors itself (an adapter). Plain and broken runs count as FCT runs, so that
    :func:`fct_section` names what is wrong with them."""
    if not (run_dir / "model.json").is_file():
        return True
    data = read_run_json(run_dir)
    return "fct" in data.get("extra", {}) or data.get("loader") in (None, LOADER)


def fct_section(run_dir: Path) -> dict[str, Any]:
    """``extra.fct`` of a run's model.json; a clear error for a run that is not an FCT run."""
    if not (run_dir / "model.json").is_file() or not (run_dir / WEIGHTS).is_file():
        raise CompatError(f"{run_dir} is not a compat run directory (needs model.json and {WEIGHTS}). Pass the "
                          f"--out folder of `compat train fct` or `compat train fastfill`.")
    fct = read_run_json(run_dir).get("extra", {}).get("fct")
    if not isinstance(fct, dict) or "transformation" not in fct or "old" not in fct:
        raise CompatError(f"{run_dir} is not an FCT run (its model.json has no extra.fct section). Pass the --out "
                          f"folder of `compat train fct` or `compat train fastfill`.")
    return fct


def _load_state(module: nn.Module, run_dir: Path, prefix: str = "") -> None:
    from safetensors.torch import load_file

    state = load_file(str(run_dir / WEIGHTS))
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CompatError(f"{run_dir / WEIGHTS} does not match its model.json ({len(missing)} missing, "
                          f"{len(unexpected)} unexpected tensors). Retrain, or restore both files together.")
