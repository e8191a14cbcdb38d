"""The method ``adapter``: fit a map between two frozen spaces in one call (``Method.fits_once``).

The fit pairs: ``--fit-samples`` training images (a seeded random subset) embedded by the old model
(``--old``, or rows of ``--old-features``) and the new model (``--new``, or rows of ``--new-features``),
without augmentation. ``procrustes``, ``affine`` and ``low-rank`` are closed forms
(:mod:`compat_adapter.fits`); ``mlp`` starts from the affine fit and trains a residual MLP on the pairs
with Adam. The record of the fit (pairs, seconds, mean cosine of the mapped vectors to their targets on
the fit pairs and on a 10% holdout of them) is the run's history.

Example:
    >>> method = Adapter(AdapterConfig(new="runs/new", kind="affine"), ctx)  # doctest: +SKIP
    >>> method.fit()["holdout_cosine"]  # doctest: +SKIP
    0.93
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from compat_core.errors import CompatError
from compat_core.features import load_file
from compat_core.lookup import rows_of
from compat_core.methods.base import Method, MethodContext
from compat_core.models.embedding import EmbeddingModel, ModelSpec
from compat_core.old_space import embed_dataset, load_frozen_run
from torch.nn import functional as F

from compat_adapter import fits
from compat_adapter.adapter import AdaptedModel, AdapterSpec, FeatureAdapter, assemble
from compat_adapter.config import AdapterConfig

HOLDOUT = 0.1


class Adapter(Method):
    """A map old -> new (or new -> old) fitted on paired embeddings; the backbones stay frozen."""

    config_class = AdapterConfig
    fits_once = True

    def __init__(self, config: AdapterConfig, ctx: MethodContext):
        super().__init__(config, ctx)
        if not ctx.old_models:
            raise CompatError("`compat train adapter` needs the old space: pass --old RUN, or --old-features F.npz "
                              "(the old model's vectors of training images) when the old model is gone.")
        self.old = ctx.old_model
        if config.new:
            self.new = load_frozen_run(config.new, "--new", ctx.device)
        elif config.new_features:
            self.new = StoredVectors(config.new_features, "--new-features")
        else:
            raise CompatError("`compat train adapter` needs the new space: pass --new RUN, or --new-features F.npz "
                              "(the new model's vectors of training images).")
        source = self.old if config.direction == "old-to-new" else self.new
        if getattr(source, "features_only", False):
            flag = "--old" if source is self.old else "--new"
            self.notes.append(f"no {flag} model: the run maps stored vectors of {source.source} only (`compat "
                              f"features transform`); it cannot embed images")
        for model, flag in ((self.old, "--old"), (self.new, "--new")):
            if not getattr(model, "features_only", False) and not isinstance(model.model, EmbeddingModel):
                raise CompatError(f"{flag} {model.source} is not a plain embedding model (it is a "
                                  f"{type(model.model).__name__}). Pass a run trained by `compat train baseline` or "
                                  f"a backward-compatible method.")
        sizes = {int(m.spec.input["size"]) for m in (self.old, self.new) if not getattr(m, "features_only", False)}
        if sizes and sizes != {ctx.config.image_size}:
            self.notes.append(f"images are read at --image-size {ctx.config.image_size} and resized to the models' "
                              f"{'/'.join(map(str, sorted(sizes)))} px; `compat features extract` reads them at the "
                              f"model's size, so pass --image-size {max(sizes)} to fit on the pixels it sees")
        source, target = (self.old, self.new) if config.direction == "old-to-new" else (self.new, self.old)
        in_dim, out_dim = int(source.embedding_dim), int(target.embedding_dim)
        if config.kind == "low-rank" and config.rank > min(in_dim, out_dim):
            raise CompatError(f"--rank {config.rank} exceeds the smaller of the two dimensions ({in_dim} -> "
                              f"{out_dim}). Use at most {min(in_dim, out_dim)}, or --kind affine.")
        self.adapter = FeatureAdapter(AdapterSpec(
            config.kind, in_dim, out_dim, config.normalize, rank=config.rank if config.kind == "low-rank" else None,
            hidden=config.hidden if config.kind == "mlp" else None)).to(ctx.device)
        self.record: dict[str, Any] = {}

    def forward(self, batch):  # pragma: no cover - the engine calls fit() for fits_once methods
        raise RuntimeError("the adapter fits once; the engine calls fit()")

    def fit(self) -> dict[str, Any]:
        cfg = self.config
        started = time.perf_counter()
        old, new = self._pairs()
        x, y = (old, new) if cfg.direction == "old-to-new" else (new, old)
        if cfg.normalize:
            x, y = F.normalize(x, dim=1), F.normalize(y, dim=1)
        holdout = _holdout(len(x), self.ctx.config.seed)
        train = ~holdout
        xd, yd = x[train].double(), y[train].double()
        if cfg.kind == "procrustes":
            w, b = fits.procrustes(xd, yd)
        elif cfg.kind == "low-rank":
            w, b = fits.reduced_rank(xd, yd, cfg.ridge, cfg.rank)
        else:
            w, b = fits.ridge(xd, yd, cfg.ridge)
        self.adapter.set_map(w, b)
        if cfg.kind == "mlp":
            self._train_residual(x[train], y[train])
        with torch.no_grad():
            mapped = self.adapter(x)
        cosine = F.cosine_similarity(mapped, y, dim=1)
        self.record = {"kind": cfg.kind, "direction": cfg.direction, "pairs": int(train.sum()),
                       "holdout_pairs": int(holdout.sum()), "fit_cosine": float(cosine[train].mean()),
                       "holdout_cosine": float(cosine[holdout].mean()) if holdout.any() else None,
                       "parameters": sum(p.numel() for p in self.adapter.parameters()),
                       "fit_seconds": time.perf_counter() - started}
        squared = ((mapped - y) ** 2).sum(1)
        self.record["holdout_mse"] = float(squared[holdout].mean()) if holdout.any() else None
        return {"loss": float(squared[train].mean()), **self.record}

    def _pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Old and new embeddings of the same images, rows aligned."""
        cfg, data = self.config, self.ctx.data
        read_already = getattr(self.new, "feats", None)  # --new-features without --new: read in __init__
        files = {side: (read_already if side == "new" and read_already is not None else load_file(path, flag))
                 for side, path, flag in (("old", cfg.old_features, "--old-features"),
                                          ("new", cfg.new_features, "--new-features")) if path}
        for side, model, flag in (("old", self.old, "--old-features"), ("new", self.new, "--new-features")):
            if side in files and files[side].features.shape[1] != int(model.embedding_dim):
                raise CompatError(f"{flag} has {files[side].features.shape[1]}-dim features but the {side} model "
                                  f"({model.source}) embeds in {int(model.embedding_dim)} dims. Extract the file "
                                  f"with that model.")
        if len(files) == 2:
            old, new = files["old"], files["new"]
            if len(old.index) != len(new.index) or not np.array_equal(old.index, new.index):
                raise CompatError(f"--old-features {cfg.old_features} ({len(old.index)} rows) and --new-features "
                                  f"{cfg.new_features} ({len(new.index)} rows) do not list the same images in the "
                                  f"same order. Extract both with `compat features extract` on the same --data and "
                                  f"--split.")
        pool = next(iter(files.values())).index if files else np.asarray(data.base_indices, dtype=np.int64)
        rng = np.random.default_rng(self.ctx.config.seed)
        take = min(cfg.fit_samples, len(pool))
        ids = pool[np.sort(rng.choice(len(pool), size=take, replace=False))]
        sides = {}
        for side, model in (("old", self.old), ("new", self.new)):
            if side in files:
                rows, _ = rows_of(files[side].index, ids)
                sides[side] = torch.from_numpy(np.asarray(files[side].features[rows], dtype=np.float32))
                continue
            positions, found = rows_of(np.asarray(data.base_indices, dtype=np.int64), ids)
            if not found.all():
                flag = "--old-features" if "old" in files else "--new-features"
                raise CompatError(f"{flag} lists {int((~found).sum())} images that are not in the training data "
                                  f"(--data {self.ctx.config.data}, --split {self.ctx.config.split}, --classes "
                                  f"{self.ctx.config.classes}). Extract the file on the data the adapter is fitted "
                                  f"on, or pass that data.")
            sides[side] = embed_dataset(model, data.subset(positions), device=self.ctx.device).cpu()
        return sides["old"].to(self.ctx.device), sides["new"].to(self.ctx.device)

    def _train_residual(self, x: torch.Tensor, y: torch.Tensor) -> None:
        cfg = self.config
        generator = torch.Generator().manual_seed(self.ctx.config.seed)
        params = list(self.adapter.parameters())
        optimizer = torch.optim.Adam(params, lr=cfg.fit_lr)
        for _ in range(cfg.fit_epochs):
            order = torch.randperm(len(x), generator=generator).to(x.device)
            for start in range(0, len(x), 256):
                rows = order[start:start + 256]
                out = self.adapter(x[rows])
                loss = ((out - y[rows]) ** 2).sum(1).mean() + cfg.ridge * sum(
                    (p ** 2).sum() for p in params if p.ndim == 2)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

    def export(self) -> AdaptedModel:
        cfg, run = self.config, self.ctx.config
        source, target = (self.old, self.new) if cfg.direction == "old-to-new" else (self.new, self.old)
        source_model = None if getattr(source, "features_only", False) else source.model
        target_spec = _spec(target) or _spec(source) or ModelSpec(
            backbone="stored vectors", embedding_dim=self.adapter.spec.out_dim, num_classes=0, classes=[])
        sources = {"old": None if getattr(self.old, "features_only", False) else self.old.source,
                   "new": _run_of(self.new), "old_features": cfg.old_features,
                   "new_features": cfg.new_features, "old_space": _run_of(self.old)}
        return assemble(source_model, self.adapter, direction=cfg.direction,
                        target=target_spec, method=self.ctx.method_name, sources=sources, fit=self.record,
                        trained_on={"data": run.data, "split": run.split, "classes": run.classes,
                                    "num_images": len(self.ctx.data)},
                        classes=list(getattr(source, "classes", None) or []))


class StoredVectors:
    """The new model when only its vectors of the training images are given (``--new-features`` without
    ``--new``): its dimension and the run that made the file (the space the adapter maps into)."""

    features_only = True

    def __init__(self, path: str, flag: str):
        self.feats = load_file(path, flag)  # kept: the fit reads its rows
        self.source, self.embedding_dim, self.recorded_run = path, int(self.feats.features.shape[1]), self.feats.model


def _spec(model) -> ModelSpec | None:
    return None if getattr(model, "features_only", False) else model.spec


def _run_of(model) -> str | None:
    """The run directory behind ``model``: its own, or the run its feature file records when that run is here
    (provenance of the space the adapter maps into); else None."""
    from compat_core.models.run import is_run_dir

    if not getattr(model, "features_only", False):
        return model.source
    recorded = getattr(model, "recorded_run", "")
    return recorded if recorded and is_run_dir(recorded) else None


def _holdout(n: int, seed: int) -> torch.Tensor:
    """A seeded ~10% of the pairs held out of the fit (none below 20 pairs)."""
    mask = torch.zeros(n, dtype=torch.bool)
    if n >= 20:
        mask[torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))[:max(1, int(n * HOLDOUT))]] = True
    return mask
