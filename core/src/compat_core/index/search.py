"""Searching an index (the serving path): the query model's compatibility with what the index holds is
checked from provenance, then faiss returns the top-k ids, and with labels the top-k metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compat_core.errors import CompatError
from compat_core.index.store import Index, prepare
from compat_core.metrics.topk import scores_from_hits

MAX_LINKS = 32  # old_model links followed from the query run (a chain of generations)


def lineage(run: str) -> dict[str, str]:
    """Fingerprint -> run of ``run`` and of every run it was trained against, following ``old_model`` links."""
    from compat_core.models.run import is_run_dir, old_model_links
    from compat_core.provenance import fingerprint

    found: dict[str, str] = {}
    todo = [run]
    while todo and len(found) < MAX_LINKS:
        current = todo.pop()
        if not current or not is_run_dir(current):
            continue
        mark = fingerprint(current)
        if mark in found:
            continue
        found[mark] = current
        todo.extend(old_model_links(current))
    return found


def check_compatible(query, index: Index, force: bool = False) -> str:
    """How the query vectors relate to the index's: ``same`` (the same model), ``target`` (the model whose space
    the index's vectors were transformed into, e.g. by FCT), ``trained`` (the query model was trained against
    it, directly or through earlier generations) or ``forced``; else a CompatError."""
    held = {m.get("fingerprint") for m in index.models}
    if query.fingerprint and query.fingerprint in held:
        return "same"
    targets = {(m.get("embeds_into") or {}).get("fingerprint") for m in index.models} - {None}  # FCT galleries
    if query.fingerprint and query.fingerprint in targets:
        return "target"
    held |= targets
    ancestors = lineage(query.model) if query.model else {}
    if held & set(ancestors):
        return "trained"
    if force:
        return "forced"
    stored = ", ".join(f"{m.get('fingerprint') or 'unknown'} ({m.get('run') or '-'})" for m in index.models)
    mine = f"{query.fingerprint or 'unknown'} ({query.model or '-'})"
    raise CompatError(f"the query model {mine} was not trained to be compatible with the model the index holds "
                      f"({stored}): neither is it that model nor was it trained against it (its --old links), so its "
                      f"vectors live in another space and the results would mean nothing. Query with that model or "
                      f"a model trained with --old pointing at it, or pass --force if you know better.")


def aligned(vectors: np.ndarray, dim: int, policy: str, source: str) -> np.ndarray:
    if vectors.shape[1] == dim:
        return vectors
    if policy == "truncate" and vectors.shape[1] > dim:
        return vectors[:, :dim]
    if policy == "zero-pad" and vectors.shape[1] < dim:
        return np.pad(vectors, ((0, 0), (0, dim - vectors.shape[1])))
    raise CompatError(f"{source}: the query vectors have {vectors.shape[1]} dimensions and the index {dim}, and the "
                      f"query model records no alignment that fits (dim_policy {policy or 'none'}). Query with a "
                      f"model of dimension {dim}.")


def search(index: Index, query, k: int = 10, *, force: bool = False, source: str = "query") -> dict[str, Any]:
    """Top-``k`` ids and scores of every query vector, and with labels CMC top-1 / top-k and mAP@k.

    A query set made of the index's own items (same data, split and ids) leaves each query's own item out.
    mAP@k follows the Google Landmarks v2 convention: AP@k = sum over the top k of P(i) rel(i) / min(n_pos, k).
    """
    relation = check_compatible(query, index, force)
    vectors = prepare(aligned(query.features, index.dim, query.dim_policy, source), index.manifest["metric"])
    own = (query.data == index.manifest.get("data") and query.split == index.manifest.get("split")
           and len(query.index) == len(index.ids) and np.array_equal(np.sort(query.index), np.sort(index.ids)))
    scores, ids = index.faiss_index.search(vectors, k + 1 if own else k)
    if own:  # drop each query's own item, keep k
        keep = ids != query.index[:, None]
        ids = np.stack([row[mask][:k] for row, mask in zip(ids, keep, strict=True)])
        scores = np.stack([row[mask][:k] for row, mask in zip(scores, keep, strict=True)])
    result = {"k": k, "metric": index.manifest["metric"], "relation": relation, "leave_one_out": bool(own),
              "n_query": len(vectors), "query_ids": query.index.tolist(), "ids": ids.tolist(),
              "scores": np.round(scores, 6).tolist()}
    if len(query.labels) and query.classes and index.manifest.get("classes") == query.classes:
        result.update(topk_metrics(ids, query.labels, index, k, own))
    return result


def topk_metrics(ids: np.ndarray, labels: np.ndarray, index: Index, k: int, own: bool) -> dict[str, float]:
    """CMC top-1 and top-k (recall@k) and mAP@k of the returned ids against the index's labels."""
    order = np.argsort(index.ids)
    position = np.searchsorted(index.ids[order], np.where(ids < 0, index.ids[order][0], ids))
    found = np.where(ids < 0, -1, index.labels[order][position])  # faiss pads with -1 when it has fewer than k
    hits = found == labels[:, None]
    positives = np.bincount(index.labels, minlength=int(max(labels.max(initial=0), index.labels.max(initial=0)) + 1))
    return scores_from_hits(hits, positives[labels] - (1 if own else 0), k)


def query_features(source: str, *, data: str | None, split: str, device: str = "cpu"):
    """The query side: a feature file, or a run directory embedded on ``data``/``split``."""
    from compat_core.features import features_of

    if not source.endswith(".npz") and not Path(source).exists():
        raise CompatError(f"--query {source}: no such run directory or feature file.")
    return features_of(source, data=data, split=split, device=device)
