"""``compat eval retrieval``: a query model (or feature file) searched against a gallery one.

Besides CMC top-1/top-5 and mAP over all queries, a result reports:

* ``leave_one_out``: whether each query's own image was removed from its gallery (query and gallery
  embed the same images; otherwise every query finds itself at rank 1);
* ``by_group`` (when the gallery model was trained on fewer classes than the data has): the same
  metrics over the queries of the classes the gallery model saw (``old_classes``) and over the others
  (``new_classes``), always searched against the whole gallery.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import Field

from compat_core.config import Options
from compat_core.errors import CompatError

LEAVE_ONE_OUT = ("auto", "on", "off")
GROUP_METRICS = ("top1", "top5", "mAP")


class SourceOptions(Options):
    """Where features come from and how they are compared; shared by retrieval-style evaluators."""

    data: str | None = Field(None, description="Dataset for run directories (path or built-in name).")
    split: str = Field("test", description="Split to embed.")
    metric: Literal["cosine", "l2"] = Field("cosine", description="Similarity: cosine or (squared) euclidean.")
    align: Literal["auto", "truncate", "zero-pad"] = Field(
        "auto", description="Models of different dimensions: truncate to the shorter, zero-pad the shorter, or "
                            "auto (what the new model's method recorded).")
    leave_one_out: Literal["auto", "on", "off"] = Field(
        "auto", description="Remove each query's own image from its gallery: auto (when both sides are the same "
                            "path, or record the same data, split and indices), on (both sides are the same images "
                            "in the same order), off.")
    batch_size: int = Field(256, ge=1, description="Images per forward pass when extracting.")
    device: str = Field("auto", description="cpu, cuda or auto.")


class RetrievalOptions(SourceOptions):
    query: str = Field(..., description="Query side: run directory or .npz feature file (the new model).")
    gallery: str = Field(..., description="Gallery side: run directory or .npz feature file (the old model).")
    topk_only: int | None = Field(None, ge=1, description="Only CMC top-1/top-K (Recall@K) and mAP@K "
                                  "(Google Landmarks v2), through faiss's exact search with a .npz gallery "
                                  "read memory-mapped: for galleries too large to rank in full.")


def retrieval_between(query, gallery, metric: str = "cosine", align: str = "auto",
                      leave_one_out: str = "auto") -> dict:
    """Retrieval metrics of two :class:`~compat_core.features.FeatureSet` (query side, gallery side).

    Args:
        query: features of the query images (the new model in a cross test).
        gallery: features of the gallery images (the old model in a cross test).
        metric: ``"cosine"`` or ``"l2"``.
        align: how features of different dimensions meet (:func:`~compat_core.features.align_dims`).
        leave_one_out: ``"auto"``, ``"on"`` or ``"off"`` (:func:`resolve_leave_one_out`).

    Returns:
        ``top1``, ``top5``, ``mAP`` (fractions), ``n_query``, ``n_gallery``, ``n_query_with_positive``,
        ``metric``, ``leave_one_out`` (bool) and, when the gallery model was trained on fewer classes
        than the data has, ``by_group``: ``{"old_classes": {...}, "new_classes": {...}}`` with
        ``top1``, ``top5``, ``mAP`` (None when no query of the group has a positive), ``n_query`` and
        ``n_query_with_positive`` each.

    Raises:
        CompatError: ``leave_one_out="on"`` on different images, or no query has a positive.

    Example:
        >>> import numpy as np
        >>> from compat_core.features import FeatureSet
        >>> f = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]], np.float32)
        >>> feats = FeatureSet(f, np.array([0, 0, 1, 1]), np.arange(4))
        >>> r = retrieval_between(feats, feats)  # the same object: leave-one-out
        >>> r["leave_one_out"], r["top1"]
        (True, 1.0)
    """
    from compat_core.features import align_dims

    query_features, gallery_features = align_dims(query, gallery, align)
    exclude_self = resolve_leave_one_out(query, gallery, leave_one_out)
    ap, rank = per_query_retrieval(query_features, query.labels, gallery_features, gallery.labels,
                                   metric=metric, exclude_self=exclude_self)
    result = summarize(ap, rank)
    if result["n_query_with_positive"] == 0:
        raise CompatError("no query has a positive (a gallery item of its class) in the gallery: query and "
                          "gallery must share classes, and with leave-one-out a class needs two images.")
    result.update(n_gallery=len(gallery.labels), metric=metric, leave_one_out=exclude_self)
    old_classes = seen_class_mask(query, gallery)
    if old_classes is not None:
        result["by_group"] = {"old_classes": summarize(ap, rank, old_classes),
                              "new_classes": summarize(ap, rank, ~old_classes)}
    return result


def topk_between(query, gallery, k: int, metric: str = "cosine", align: str = "auto",
                 leave_one_out: str = "auto") -> dict:
    """Top-``k`` metrics (:mod:`compat_core.metrics.topk`) of two feature sets; the gallery's features may be a
    memory map."""
    from compat_core.features import align_dims
    from compat_core.metrics.topk import topk_retrieval

    query_features, gallery_features = align_dims(query, gallery, align)
    exclude_self = resolve_leave_one_out(query, gallery, leave_one_out)
    result = topk_retrieval(query_features, query.labels, gallery_features, gallery.labels, k=k, metric=metric,
                            exclude_self=exclude_self)
    if result["n_query_with_positive"] == 0:
        raise CompatError("no query has a positive (a gallery item of its class) in the gallery: query and "
                          "gallery must share classes, and with leave-one-out a class needs two images.")
    return {**result, "leave_one_out": exclude_self}


def resolve_leave_one_out(query, gallery, mode: str = "auto") -> bool:
    """Whether query ``i`` and gallery item ``i`` are the same image, to be left out of its search.

    ``auto``: the same object (the same path on both sides) or the same data, split and indices
    (:meth:`~compat_core.features.FeatureSet.same_images_as`); ``on``: asserted by the user, checked
    as far as the files allow; ``off``: never. Under ``auto``, files that look like the same images
    but record no provenance get a one-line warning on stderr.

    Raises:
        CompatError: ``on`` with different numbers of rows, indices or labels; an unknown mode.

    Example:
        >>> import numpy as np
        >>> from compat_core.features import FeatureSet
        >>> a = FeatureSet(np.ones((2, 2), np.float32), np.array([0, 1]), np.arange(2), data="digits")
        >>> b = FeatureSet(np.zeros((2, 2), np.float32), np.array([0, 1]), np.arange(2), data="digits")
        >>> resolve_leave_one_out(a, b), resolve_leave_one_out(a, b, "off")
        (True, False)
    """
    if mode not in LEAVE_ONE_OUT:
        raise CompatError(f"leave_one_out must be one of {', '.join(LEAVE_ONE_OUT)}, got {mode!r}.")
    if mode == "off":
        return False
    if mode == "on":
        _check_same_rows(query, gallery)
        return True
    if query is gallery or query.same_images_as(gallery):
        return True
    if _look_alike(query, gallery):
        # Without provenance two files of the same images are indistinguishable from two files of
        # different images with the same labels; the user knows which.
        print(f"compat: warning: query and gallery have the same {len(query.labels)} indices and labels but "
              f"record no data/split, so leave-one-out was not applied; pass --leave-one-out on if they are "
              f"the same images.", file=sys.stderr)
    return False


def _look_alike(query, gallery) -> bool:
    import numpy as np

    no_provenance = not (query.data and gallery.data)
    return (no_provenance and len(query.labels) == len(gallery.labels)
            and np.array_equal(query.index, gallery.index) and np.array_equal(query.labels, gallery.labels))


def _check_same_rows(query, gallery) -> None:
    import numpy as np

    fix = ("Extract both sides with the same --data and --split, or pass --leave-one-out auto (or off) "
           "when query and gallery are different images.")
    if len(query.labels) != len(gallery.labels):
        raise CompatError(f"--leave-one-out on needs query and gallery to be the same images in the same order, "
                          f"but the query has {len(query.labels)} rows and the gallery {len(gallery.labels)}. {fix}")
    for name in ("index", "labels"):
        mismatch = np.flatnonzero(getattr(query, name) != getattr(gallery, name))
        if len(mismatch):
            raise CompatError(f"--leave-one-out on needs query and gallery to be the same images in the same "
                              f"order, but their {name} differ first at row {mismatch[0]}. {fix}")


def seen_class_mask(query, gallery):
    """Boolean mask of the queries whose class (by name) the gallery model was trained on.

    None when the split does not apply: the gallery records no model classes (old feature files),
    the query records no class names, or the gallery model saw every class of the data.

    Example:
        >>> import numpy as np
        >>> from compat_core.features import FeatureSet
        >>> f, labels = np.ones((3, 2), np.float32), np.array([0, 1, 2])
        >>> q = FeatureSet(f, labels, np.arange(3), classes=["a", "b", "c"])
        >>> g = FeatureSet(f, labels, np.arange(3), model_classes=["b"])
        >>> seen_class_mask(q, g).tolist()
        [False, True, False]
    """
    import numpy as np

    seen = set(gallery.model_classes)
    if not seen or not query.classes or set(query.classes) <= seen:
        return None
    if len(query.labels) and (query.labels.min() < 0 or query.labels.max() >= len(query.classes)):
        return None  # labels that name no class: nothing to match by name
    return np.array([name in seen for name in query.classes], dtype=bool)[query.labels]


def per_query_retrieval(query_features, query_labels, gallery_features, gallery_labels, *, metric: str = "cosine",
                        exclude_self: bool = False):
    """Per query: its AP (NaN without a positive) and the number of negatives ranked before its first
    positive (top-k hit when < k), exactly as :func:`~compat_core.metrics.retrieval_metrics` counts them.

    One search yields every average (all queries, each class group), instead of one search per group:
    a subset of queries could not keep leave-one-out's query-to-gallery-row pairing anyway.

    Example:
        >>> import numpy as np
        >>> f = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], np.float32)
        >>> ap, rank = per_query_retrieval(f, np.array([0, 0, 1]), f, np.array([0, 0, 1]), exclude_self=True)
        >>> rank.tolist()  # query 2 has no other item of its class
        [0, 0, 3]
    """
    import torch

    from compat_core.metrics.retrieval import per_query_ranks

    if exclude_self and len(query_features) != len(gallery_features):
        raise CompatError(f"leave-one-out needs as many queries as gallery items, got {len(query_features)} and "
                          f"{len(gallery_features)}.")
    ap, rank = per_query_ranks(torch.from_numpy(query_features), query_labels, torch.from_numpy(gallery_features),
                               gallery_labels, metric=metric, exclude_self=exclude_self)
    return ap.numpy(), rank.numpy()


def summarize(ap, rank, mask=None) -> dict:
    """top-1, top-5 and mAP over the queries of ``mask`` (all by default) that have a positive.

    Example:
        >>> import numpy as np
        >>> summarize(np.array([1.0, 0.5, np.nan]), np.array([0, 1, 3]))
        {'top1': 0.5, 'top5': 1.0, 'mAP': 0.75, 'n_query': 3, 'n_query_with_positive': 2}
    """
    import numpy as np

    mask = np.ones(len(ap), dtype=bool) if mask is None else mask
    answered = mask & ~np.isnan(ap)
    n = int(answered.sum())
    values = {"top1": float(np.mean(rank[answered] < 1)), "top5": float(np.mean(rank[answered] < 5)),
              "mAP": float(np.mean(ap[answered]))} if n else dict.fromkeys(GROUP_METRICS)
    return {**values, "n_query": int(mask.sum()), "n_query_with_positive": n}


def run_labels(sources: list[str], explicit: dict[str, str] | None = None) -> list[str]:
    """Short names of run directories / feature files for tables: explicit names, else the basename
    (a ``.npz`` file without its extension), else ``parent/basename`` where basenames collide.

    Raises:
        CompatError: two sources still share a name; the fix is ``--label``.

    Example:
        >>> run_labels(["runs/a/old", "runs/b/old", "feats/new.npz"])
        ['a/old', 'b/old', 'new']
    """
    explicit = explicit or {}
    labels = {source: explicit.get(source) or _short_name(source) for source in sources}
    counts = Counter(labels.values())
    for source in sources:
        if source not in explicit and counts[labels[source]] > 1:
            labels[source] = _short_name(source, parent=True)
    clash = [name for name, n in Counter(labels.values()).items() if n > 1]
    if clash:
        same = [source for source in sources if labels[source] == clash[0]]
        raise CompatError(f"{' and '.join(same)} would both be called {clash[0]!r} in the tables. Name each run "
                          f"with --label NAME (once per run, in order).")
    return [labels[source] for source in sources]


def _short_name(source: str, parent: bool = False) -> str:
    path = Path(source).resolve()
    name = path.stem if path.suffix == ".npz" else path.name
    return f"{path.parent.name}/{name}" if parent and path.parent.name else name


def same_source(a: str, b: str) -> bool:
    """Whether two paths name the same run or file (``runs/a`` and ``./runs/a/`` do)."""
    return a == b or Path(a).resolve() == Path(b).resolve()


def run_retrieval(options: RetrievalOptions) -> dict:
    from compat_core.engine.distributed import resolve_device
    from compat_core.features import features_of

    device = str(resolve_device(options.device))
    kwargs = dict(data=options.data, split=options.split, batch_size=options.batch_size, device=device)
    query = features_of(options.query, **kwargs)
    same = same_source(options.query, options.gallery)
    mapped = bool(options.topk_only)  # a top-k gallery stays on disk
    gallery = query if same else features_of(options.gallery, **kwargs, mmap=mapped)  # one object: leave-one-out
    if options.topk_only:
        result = topk_between(query, gallery, options.topk_only, options.metric, options.align,
                              options.leave_one_out)
    else:
        result = retrieval_between(query, gallery, options.metric, options.align, options.leave_one_out)
    labels = run_labels([options.query] if same else [options.query, options.gallery])
    query_label, gallery_label = labels[0], labels[-1]
    return {**result, "query": options.query, "gallery": options.gallery, "query_label": query_label,
            "gallery_label": gallery_label}
