"""Per-epoch validation: one number per epoch in ``history.jsonl`` and, with ``--keep best``, the weights of
the epoch where it was highest.

The validation split is never trained on (choose on validation, report on test): by default it is the
``val`` part of the holdout whose ``train`` part the run trains on (``--split @split.json:train``).
Scoring runs the exported model in eval mode on un-augmented images and draws no random numbers, so a run
with validation ends with exactly the weights of the same run without it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from compat_core.config import TrainConfig, warn
from compat_core.errors import CompatError

HOLDOUT_TRAIN = ":train"


def resolve_val_split(config: TrainConfig) -> str | None:
    """The split spec to validate on, or None.

    Example:
        >>> cfg = TrainConfig(data="digits", out="r", split="@split.json:train")
        >>> resolve_val_split(cfg)
        '@split.json:val'
        >>> resolve_val_split(TrainConfig(data="digits", out="r"))  # no holdout: no validation by default
    """
    spec = config.val_split
    if spec is None or spec.strip().lower() == "none":
        return None
    if spec == "auto":
        split = config.split.strip()
        if split.startswith("@") and split.endswith(HOLDOUT_TRAIN):
            return split[: -len(HOLDOUT_TRAIN)] + ":val"
        return None
    return spec


class EpochValidator:
    """Scores the model being trained on the validation split after every epoch.

    Args:
        config: the run's options (``val_split``, ``val_metric``, ``keep``, data, classes).
        old_models: the run's old models (the first one is the gallery of ``old-top1`` / ``old-mAP``).

    Example:
        >>> validator = EpochValidator(cfg, ctx.old_models)  # doctest: +SKIP
        >>> validator(method.export())  # doctest: +SKIP
        {'split': '@split.json:val', 'metric': 'accuracy', 'value': 0.912}
    """

    def __init__(self, config: TrainConfig, old_models: list[Any]):
        self.split = resolve_val_split(config)
        self.metric = config.val_metric
        if self.split is None:
            if config.keep == "best":
                raise CompatError("--keep best keeps the epoch with the best validation metric, but this run has no "
                                  "validation split. Train on a holdout part (--split @split.json:train, made by "
                                  "`compat data split DATA --validation 0.1 --out split.json`) or pass --val-split.")
            if config.val_metric != "auto":
                warn(f"--val-metric {config.val_metric} is ignored: this run has no validation split (--val-split)")
            return
        if self.metric.startswith("old-") and not old_models:
            raise CompatError(f"--val-metric {self.metric} compares new queries with the old model's gallery, but "
                              f"this run has no --old. Pass --old RUN, or use --val-metric accuracy or top1.")
        from compat_core.data import open_dataset
        from compat_core.data.selection import parse_classes

        self.data = parse_classes(config.classes, open_dataset(config.data, split=self.split,
                                                               image_size=config.image_size))
        if len(self.data) < 2:
            raise CompatError(f"--val-split {self.split} holds {len(self.data)} image(s) of the trained classes; "
                              f"validation needs more. Make the holdout with a larger --validation.")
        self.labels = np.asarray(self.data.labels)
        self.old_model = old_models[0] if old_models else None
        self._old_gallery: torch.Tensor | None = None

    @property
    def enabled(self) -> bool:
        return self.split is not None

    @torch.no_grad()
    def __call__(self, model) -> dict[str, Any]:
        """``{"split", "metric", "value"}`` of ``model`` (an exported model with ``embed``)."""
        from compat_core.old_space import embed_dataset

        metric = self.metric
        if metric == "auto":
            metric = "accuracy" if getattr(model, "head", None) is not None else "top1"
        embeddings = embed_dataset(model, self.data)
        if metric == "accuracy":
            value = self._accuracy(model, embeddings)
        else:
            value = self._retrieval(model, embeddings, metric)
        return {"split": self.split, "metric": metric, "value": value}

    def _accuracy(self, model, embeddings: torch.Tensor) -> float:
        if getattr(model, "head", None) is None:
            raise CompatError("--val-metric accuracy needs a classifier head, and this method's model has none. "
                              "Use --val-metric top1 or old-top1.")
        predicted = model.classify(embeddings).argmax(1).cpu().numpy()
        model_classes = list(model.spec.classes)
        names = np.asarray(self.data.classes, dtype=object)[self.labels]
        return float(np.mean(np.asarray(model_classes, dtype=object)[predicted] == names))

    def _retrieval(self, model, embeddings: torch.Tensor, metric: str) -> float:
        from compat_core.evaluators.retrieval import per_query_retrieval, summarize

        query = embeddings.float().cpu()
        if metric.startswith("old-"):
            gallery = self._old()
            query = self._aligned(model, query, gallery.shape[1])
            exclude_self = False
        else:
            gallery, exclude_self = query, True
        ap, rank = per_query_retrieval(query.numpy(), self.labels, gallery.numpy(), self.labels,
                                       exclude_self=exclude_self)
        return float(summarize(ap, rank)["top1" if metric.endswith("top1") else "mAP"])

    def _old(self) -> torch.Tensor:
        if self._old_gallery is None:  # the old model is frozen: its gallery is embedded once
            from compat_core.old_space import embed_dataset

            self._old_gallery = embed_dataset(self.old_model, self.data).float().cpu()
        return self._old_gallery

    def _aligned(self, model, query: torch.Tensor, old_dim: int) -> torch.Tensor:
        from compat_core.old_space import align_dim

        if query.shape[1] == old_dim:
            return query
        policy = getattr(getattr(model, "spec", None), "dim_policy", None)
        if policy is None:
            raise CompatError(f"--val-metric {self.metric}: the new embedding has {query.shape[1]} dimensions and "
                              f"the old one {old_dim}, and the method records no alignment. Use --val-metric top1.")
        return align_dim(query, old_dim, policy)
