"""Evaluation metrics: exact, memory-bounded retrieval scores (CMC top-k and mAP) for embeddings.

Names are resolved lazily, so importing this package does not import torch.

Example:
    >>> from compat_core.metrics import retrieval_metrics
    >>> scores = retrieval_metrics(query, query_labels, gallery, gallery_labels)  # doctest: +SKIP
    >>> scores["top1"], scores["mAP"]  # doctest: +SKIP
"""

_EXPORTS = {"retrieval_metrics": "retrieval", "per_query_ranks": "retrieval"}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"compat_core.metrics.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
