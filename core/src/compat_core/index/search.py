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
    """Fingerprint -> run of ``run`` and of every run it was trained against, following ``old_model`` links; a
    link to a feature file (a model trained from ``--old-features`` alone) adds the fingerprint the file
    records of the model that made it."""
    from compat_core.models.run import is_run_dir, old_model_links
    from compat_core.provenance import fingerprint

    found: dict[str, str] = {}
    todo = [run]
    while todo and len(found) < MAX_LINKS:
        current = todo.pop()
        if current and current.endswith(".npz") and Path(current).is_file():
            mark = _recorded_fingerprint(current)
            if mark:
                found.setdefault(mark, current)
            continue
        if not current or not is_run_dir(current):
            continue
        mark = fingerprint(current)
        if mark in found:
            continue
        found[mark] = current
        todo.extend(old_model_links(current))
    return found


def _recorded_fingerprint(path: str) -> str:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return str(npz["model_fingerprint"]) if "model_fingerprint" in npz.files else ""
    except (OSError, ValueError):
        return ""


RELATIONS = ("same", "target", "trained", "older")  # in the order one word sums up a mixed index


def check_compatible(query, index: Index, force: bool = False) -> str:
    """How the query vectors relate to the vectors of *every* model the index holds: ``same`` (that model),
    ``target`` (the model whose space its vectors were transformed into, e.g. by FCT), ``trained`` (the query
    model was trained against it, directly or through earlier generations), ``older`` (it was trained against
    the query model: a migration's new vectors queried by the old model); one word for the lot (the first
    of :data:`RELATIONS` that applies to any), or ``forced``. A model of none of these relations, even one
    that made a part of the index only, is a CompatError that names it."""
    ancestors = set(lineage(query.model)) if query.model else set()
    relations, strangers = [], []
    for model, count in _models_with_vectors(index):
        relation = _relation(query.fingerprint, ancestors, model)
        if relation is None:
            strangers.append(f"{model.get('fingerprint') or 'unknown'} ({model.get('run') or '-'}, {count} vectors)")
        relations.append(relation)
    if not strangers:
        return next(r for r in RELATIONS if r in relations) if relations else "same"
    if force:
        return "forced"
    mine = f"{query.fingerprint or 'unknown'} ({query.model or '-'})"
    mixed = " (the index mixes vectors of several models)" if len(relations) > 1 else ""
    raise CompatError(f"the query model {mine} was not trained to be compatible with the model the index holds "
                      f"{', '.join(strangers)}{mixed}: neither is it that model nor was it trained against it (its "
                      f"--old links), so their vectors live in different spaces and the results would mean nothing. "
                      f"Query with that model or a model trained with --old pointing at it, or pass --force if you "
                      f"know better.")


def _models_with_vectors(index) -> list[tuple[dict, int]]:
    """The index's models that made at least one of its vectors, with their counts."""
    codes = getattr(index, "model_of_id", None)
    if codes is None:
        return [(model, 0) for model in index.models]
    counts = np.bincount(codes, minlength=len(index.models))
    return [(model, int(n)) for model, n in zip(index.models, counts, strict=True) if n > 0]


def _relation(fingerprint: str, ancestors: set[str], model: dict) -> str | None:
    held = model.get("fingerprint")
    target = (model.get("embeds_into") or {}).get("fingerprint")
    if fingerprint and fingerprint == held:
        return "same"
    if fingerprint and fingerprint == target:
        return "target"
    if held in ancestors or (target and target in ancestors):
        return "trained"
    if fingerprint and model.get("run") and fingerprint in lineage(model["run"]):
        return "older"
    return None


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
    from compat_core.lookup import rows_of

    rows, held = rows_of(index.ids, ids.ravel())  # faiss pads with -1 (held by none) when it has fewer than k
    found = np.where(held, index.labels[rows], -1).reshape(ids.shape)
    hits = found == labels[:, None]
    positives = np.bincount(index.labels, minlength=int(max(labels.max(initial=0), index.labels.max(initial=0)) + 1))
    return scores_from_hits(hits, positives[labels] - (1 if own else 0), k)


def query_features(source: str, *, data: str | None, split: str, device: str = "cpu"):
    """The query side: a feature file, or a run directory embedded on ``data``/``split``."""
    from compat_core.features import features_of

    if not source.endswith(".npz") and not Path(source).exists():
        raise CompatError(f"--query {source}: no such run directory or feature file.")
    return features_of(source, data=data, split=split, device=device)
