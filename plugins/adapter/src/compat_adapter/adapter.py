"""The adapter and the run it exports: "source model + map" as one embedding model.

:class:`FeatureAdapter` maps embeddings of one space into another: ``linear(x)`` (full, or as the two
factors of a low-rank map), plus a residual MLP for the ``mlp`` kind, after L2-normalising ``x`` when
fitted on normalised embeddings. :class:`AdaptedModel` puts the source model in front of it:
``old model + map`` is a gallery model in the new space (``old-to-new``, as FCT's), ``new model + map``
a query model in the old space (``new-to-old``). Its ``model.json`` names the target run as
``embeds_into``, so indexes let it query (and backfill) vectors of that space. Without a source model
(fitted from the old model's stored vectors alone) the run transforms stored features only
(``compat features transform``).

Weights: ``source.`` (the frozen source model, absent without one) and ``adapter.``; ``extra.adapter``
in ``model.json`` holds the adapter's shape, the direction, the source model's spec and the fit record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from compat_core.errors import CompatError
from compat_core.models.embedding import EmbeddingModel, ModelOutput, ModelSpec
from compat_core.models.run import WEIGHTS, read_run_json, run_loader
from torch import nn
from torch.nn import functional as F

LOADER = "compat_adapter.adapter:load_adapted_run"


@dataclass
class AdapterSpec:
    kind: str
    in_dim: int
    out_dim: int
    normalize: bool = True
    rank: int | None = None
    hidden: int | None = None


class FeatureAdapter(nn.Module):
    """``y = linear(n(x)) [+ mlp(n(x))]``, ``n`` the L2 normalisation when ``spec.normalize``.

    Example:
        >>> adapter = FeatureAdapter(AdapterSpec("affine", 64, 128))
        >>> adapter(torch.randn(4, 64)).shape
        torch.Size([4, 128])
    """

    def __init__(self, spec: AdapterSpec):
        super().__init__()
        self.spec = spec
        if spec.kind == "low-rank":
            self.down = nn.Linear(spec.in_dim, int(spec.rank), bias=False)
            self.up = nn.Linear(int(spec.rank), spec.out_dim)
        else:
            self.linear = nn.Linear(spec.in_dim, spec.out_dim)
        if spec.kind == "mlp":
            self.residual = nn.Sequential(nn.Linear(spec.in_dim, int(spec.hidden)), nn.ReLU(),
                                          nn.Linear(int(spec.hidden), spec.out_dim))
            nn.init.zeros_(self.residual[2].weight)  # starts as the closed-form affine map
            nn.init.zeros_(self.residual[2].bias)

    def set_map(self, w: torch.Tensor, b: torch.Tensor) -> None:
        """Load ``y = x W + b`` (``W``: in x out) into the linear part."""
        with torch.no_grad():
            if self.spec.kind == "low-rank":
                u, s, vh = torch.linalg.svd(w, full_matrices=False)
                r = self.down.out_features
                self.down.weight.copy_((u[:, :r] * s[:r]).T.float())
                self.up.weight.copy_(vh[:r].T.float())
                self.up.bias.copy_(b.float())
            else:
                self.linear.weight.copy_(w.T.float())
                self.linear.bias.copy_(b.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.normalize:
            x = F.normalize(x.float(), dim=1)
        y = self.up(self.down(x)) if self.spec.kind == "low-rank" else self.linear(x)
        return y + self.residual(x) if self.spec.kind == "mlp" else y


class AdaptedModel(nn.Module):
    """Source model + adapter: embeds images into the target space; ``transform_embeddings`` maps stored
    source-space vectors (what ``compat features transform`` calls).

    Example:
        >>> model = load_adapted_run("runs/adapter")  # doctest: +SKIP
        >>> model(images).embedding.shape  # doctest: +SKIP
        torch.Size([8, 128])
    """

    run_loader = LOADER
    head = None

    def __init__(self, source: EmbeddingModel | None, adapter: FeatureAdapter, spec: ModelSpec):
        super().__init__()
        self.source, self.adapter, self.spec = source, adapter, spec

    @property
    def embedding_dim(self) -> int:
        return self.adapter.spec.out_dim

    @property
    def transformation_inputs(self) -> list[tuple[str, int]]:
        """The vectors ``transform_embeddings`` takes: (name, dimension) of the source space."""
        direction = self.spec.extra.get("adapter", {}).get("direction", "old-to-new")
        return [("old" if direction == "old-to-new" else "new", self.adapter.spec.in_dim)]

    def transform_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.adapter(embeddings)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        if self.source is None:
            section = self.spec.extra.get("adapter", {})
            raise CompatError(f"this adapter run was fitted from stored vectors of "
                              f"{section.get('sources', {}).get('old_features')} without the old model, so it "
                              f"cannot embed images. Map stored vectors with `compat features transform`, or "
                              f"refit with --old RUN.")
        return self.adapter(self.source.embed(images))

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> ModelOutput:
        return ModelOutput(self.embed(images), None)

    def classify(self, embedding: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        raise RuntimeError("an adapter run has no classifier head")


def assemble(source: EmbeddingModel | None, adapter: FeatureAdapter, *, direction: str, target: ModelSpec,
             method: str, sources: dict[str, Any], fit: dict[str, Any], trained_on: dict[str, Any],
             classes: list[str] | None = None) -> AdaptedModel:
    """The exported model and its spec; ``target`` is the spec of the model whose space it embeds into, and
    ``classes`` those of the model whose items it embeds (the old model's for a transformed old gallery), so
    that retrieval against it splits queries into the classes that model saw and the others (``by_group``)."""
    base = source.spec if source is not None else target
    section = {"spec": asdict(adapter.spec), "direction": direction, "fit": fit, "sources": sources,
               "source": None if source is None else source.spec.to_json()}
    name = source.spec.backbone if source is not None else "stored vectors"
    classes = [str(c) for c in classes or []]
    spec = ModelSpec(backbone=f"adapter({name})", embedding_dim=adapter.spec.out_dim, num_classes=len(classes),
                     classes=classes,
                     head={"type": "none"}, input=dict(base.input), method=method, trained_on=trained_on,
                     old_model=sources.get("old") or sources.get("old_features"),
                     embeds_into=sources["new"] if direction == "old-to-new" else sources.get("old_space"),
                     feature_dim=adapter.spec.out_dim, dim_policy=target.dim_policy, extra={"adapter": section})
    return AdaptedModel(source, adapter, spec)


@run_loader
def load_adapted_run(run_dir: str | Path, device: str = "cpu") -> AdaptedModel:
    """Rebuild an :class:`AdaptedModel` from an adapter run directory."""
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    section = read_run_json(run_dir).get("extra", {}).get("adapter")
    if not isinstance(section, dict) or "spec" not in section:
        raise CompatError(f"{run_dir} is not an adapter run (its model.json has no extra.adapter section). Pass "
                          f"the --out folder of `compat train adapter`.")
    source = None if section.get("source") is None else EmbeddingModel(ModelSpec.from_json(section["source"]))
    model = AdaptedModel(source, FeatureAdapter(AdapterSpec(**section["spec"])),
                         ModelSpec.from_json(read_run_json(run_dir)))
    missing, unexpected = model.load_state_dict(load_file(str(run_dir / WEIGHTS)), strict=False)
    if missing or unexpected:
        raise CompatError(f"{run_dir / WEIGHTS} does not match its model.json ({len(missing)} missing, "
                          f"{len(unexpected)} unexpected tensors). Refit, or restore both files together.")
    return model.to(device).eval()
