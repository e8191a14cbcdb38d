"""``compat eval retrieval``: a query model (or feature file) searched against a gallery one."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from compat_core.config import Options


class SourceOptions(Options):
    """Where features come from and how they are compared; shared by retrieval-style evaluators."""

    data: str | None = Field(None, description="Dataset for run directories (path or built-in name).")
    split: str = Field("test", description="Split to embed.")
    metric: Literal["cosine", "l2"] = Field("cosine", description="Similarity: cosine or (squared) euclidean.")
    align: Literal["auto", "truncate", "zero-pad"] = Field(
        "auto", description="Models of different dimensions: truncate to the shorter, zero-pad the shorter, or "
                            "auto (what the new model's method recorded).")
    batch_size: int = Field(256, ge=1, description="Images per forward pass when extracting.")
    device: str = Field("auto", description="cpu, cuda or auto.")


class RetrievalOptions(SourceOptions):
    query: str = Field(..., description="Query side: run directory or .npz feature file (the new model).")
    gallery: str = Field(..., description="Gallery side: run directory or .npz feature file (the old model).")


def retrieval_between(query, gallery, metric: str = "cosine", align: str = "auto") -> dict:
    """Metrics of two :class:`~compat_core.features.FeatureSet`; leave-one-out when they embed the
    same images; dimensions aligned by ``align`` when they differ."""
    import torch

    from compat_core.features import align_dims
    from compat_core.metrics.retrieval import retrieval_metrics

    query_features, gallery_features = align_dims(query, gallery, align)
    same = query.same_images_as(gallery)
    result = retrieval_metrics(torch.from_numpy(query_features), torch.from_numpy(query.labels),
                               torch.from_numpy(gallery_features), torch.from_numpy(gallery.labels),
                               metric=metric, exclude_self=same)
    result["leave_one_out"] = same
    return result


def run_retrieval(options: RetrievalOptions) -> dict:
    from compat_core.engine.distributed import resolve_device
    from compat_core.features import features_of

    device = str(resolve_device(options.device))
    kwargs = dict(data=options.data, split=options.split, batch_size=options.batch_size, device=device)
    query = features_of(options.query, **kwargs)
    gallery = query if options.gallery == options.query else features_of(options.gallery, **kwargs)
    result = retrieval_between(query, gallery, options.metric, options.align)
    return {**result, "query": options.query, "gallery": options.gallery}
