"""Building, writing and reading index folders (:mod:`compat_core.index`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compat_core.errors import CompatError
from compat_core.io import write_atomic, write_json

FORMAT = "compat-index/1"
KINDS = ("flat", "ivf", "hnsw")
METRICS = ("cosine", "l2")
FAISS_FILE, ITEMS_FILE, MANIFEST_FILE = "index.faiss", "items.npz", "manifest.json"


def faiss_module():
    """faiss, or an error that says how to install it (the ``index`` extra of compat-core)."""
    try:
        import faiss
    except ImportError:
        raise CompatError("compat index needs faiss. Install it with `pip install 'compat-core[index]'` "
                          "(faiss-cpu).") from None
    return faiss


@dataclass
class Index:
    """An index folder in memory: the faiss index, the items and the manifest."""

    path: Path
    faiss_index: Any
    ids: np.ndarray
    labels: np.ndarray
    model_of_id: np.ndarray
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def models(self) -> list[dict[str, Any]]:
        return self.manifest["models"]

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])


def prepare(vectors: np.ndarray, metric: str) -> np.ndarray:
    """float32, contiguous, and L2-normalised for the cosine metric (searched by inner product)."""
    from compat_core.metrics.topk import prepare as prepare_for_faiss

    return prepare_for_faiss(vectors, metric)


def new_faiss_index(dim: int, count: int, kind: str, metric: str, vectors: np.ndarray):
    """An empty faiss index of ``kind`` (trained when it needs training), wrapped to store our ids."""
    faiss = faiss_module()
    inner = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    if kind == "flat":
        base = faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)
    elif kind == "ivf":
        lists = max(1, min(int(np.sqrt(count)), count // 39 or 1))  # faiss wants about 39 points per list
        quantizer = faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)
        base = faiss.IndexIVFFlat(quantizer, dim, lists, inner)
        base.train(vectors)
        base.nprobe = min(lists, 8)
    else:
        base = faiss.IndexHNSWFlat(dim, 32, inner)
    return faiss.IndexIDMap2(base)


def build(feats, *, kind: str = "flat", metric: str = "cosine", source: str = "") -> Index:
    """An index of ``feats`` (a :class:`~compat_core.features.FeatureSet`): ids are its dataset indices."""
    if kind not in KINDS or metric not in METRICS:
        raise CompatError(f"--kind {kind} / --metric {metric}: use --kind {'|'.join(KINDS)} and --metric "
                          f"{'|'.join(METRICS)}.")
    if len(np.unique(feats.index)) != len(feats.index):
        raise CompatError(f"{source}: its rows repeat dataset indices, which are the index's ids. Extract the "
                          f"features again with `compat features extract`.")
    vectors = prepare(feats.features, metric)
    index = new_faiss_index(vectors.shape[1], len(vectors), kind, metric, vectors)
    index.add_with_ids(vectors, feats.index.astype(np.int64))
    model = {"fingerprint": feats.fingerprint, "run": feats.model, "transformation": None, **space_of(feats.model)}
    manifest = {"format": FORMAT, "kind": kind, "metric": metric, "dim": int(vectors.shape[1]),
                "count": int(index.ntotal), "data": feats.data, "split": feats.split,
                "classes": list(feats.classes), "models": [model], "features": str(source)}
    return Index(Path(), index, feats.index.astype(np.int64), feats.labels.astype(np.int64),
                 np.zeros(len(vectors), dtype=np.int64), manifest)


def space_of(run: str) -> dict[str, Any]:
    """``{"transformation": ..., "embeds_into": {run, fingerprint}}`` for a run whose outputs live in another run's
    space (an FCT transformation: ``embeds_into`` of its model.json), else ``{}``."""
    from compat_core.models.run import is_run_dir, read_spec
    from compat_core.provenance import fingerprint

    if not run or not is_run_dir(run):
        return {}
    target = read_spec(run).embeds_into
    if not target or not is_run_dir(target):
        return {}
    return {"transformation": read_spec(run).method, "embeds_into": {"run": target, "fingerprint": fingerprint(target)}}


def write(index: Index, folder: str | Path) -> Path:
    """Write the index folder: the faiss file and the items first, the manifest (which vouches for them) last."""
    faiss = faiss_module()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / FAISS_FILE, lambda tmp: faiss.write_index(index.faiss_index, str(tmp)))

    def items(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, ids=index.ids, labels=index.labels, model_of_id=index.model_of_id)

    write_atomic(folder / ITEMS_FILE, items)
    write_json(folder / MANIFEST_FILE, {**index.manifest, "count": int(index.faiss_index.ntotal)})
    index.path = folder
    return folder


def read(folder: str | Path) -> Index:
    """Read an index folder; a folder whose parts do not belong together is one clear error."""
    from compat_core.io import read_json, read_npz

    folder = Path(folder)
    if not (folder / MANIFEST_FILE).is_file():
        raise CompatError(f"{folder} is not a compat index (no {MANIFEST_FILE}). Build one with `compat index build "
                          f"--features F.npz --out {folder}`.")
    manifest = read_json(folder / MANIFEST_FILE, "Rebuild the index with `compat index build`.")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CompatError(f"{folder / MANIFEST_FILE} is not a {FORMAT} manifest. Rebuild the index.")
    items = read_npz(folder / ITEMS_FILE, ("ids", "labels", "model_of_id"), what="index item table",
                     unreadable_fix="Rebuild the index with `compat index build`.",
                     missing_fix="Rebuild the index with `compat index build`.")
    faiss = faiss_module()
    try:
        index = faiss.read_index(str(folder / FAISS_FILE))
    except RuntimeError as exc:
        raise CompatError(f"{folder / FAISS_FILE} cannot be read by faiss ({str(exc).splitlines()[0][:160]}). "
                          f"Rebuild the index.") from None
    count, dim = int(manifest.get("count", -1)), int(manifest.get("dim", -1))
    if index.ntotal != count or index.d != dim or len(items["ids"]) != count:
        raise CompatError(f"{folder}: the manifest describes {count} vectors of dimension {dim}, but "
                          f"{FAISS_FILE} holds {index.ntotal} of dimension {index.d} and {ITEMS_FILE} "
                          f"{len(items['ids'])} ids: the files do not belong together. Rebuild the index.")
    result = Index(folder, index, items["ids"].astype(np.int64), items["labels"].astype(np.int64),
                   items["model_of_id"].astype(np.int64), manifest)
    if isinstance(manifest.get("backfill"), dict):  # a migration in progress: its committed batches are live
        from compat_core.backfill.journal import apply_committed

        apply_committed(result)
    return result


def positions(index: Index, ids: np.ndarray) -> np.ndarray:
    """Rows of the item table holding ``ids``; ids the index does not hold are one error."""
    from compat_core.lookup import rows_of

    rows, ok = rows_of(index.ids, ids)
    if not np.all(ok):
        raise CompatError(f"{index.path}: it holds no vectors for the ids {np.asarray(ids)[~ok][:5].tolist()} "
                          f"({int((~ok).sum())} of {len(ids)}).")
    return rows


def vectors_of(index: Index, ids: np.ndarray) -> np.ndarray:
    """The stored vectors of ``ids`` (in that order), as float32."""
    faiss = faiss_module()
    base = faiss.downcast_index(index.faiss_index.index)
    if isinstance(base, faiss.IndexIVF):
        base.make_direct_map()  # IVF lists can only be read back by id through a direct map
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    return index.faiss_index.reconstruct_batch(ids) if len(ids) else np.zeros((0, index.dim), np.float32)


def replace_vectors(index: Index, ids: np.ndarray, vectors: np.ndarray, model_code: int) -> None:
    """Replace the vectors of ``ids`` (already prepared for the metric) and record which model made them.

    A flat index removes and adds in place. faiss's id map cannot remove from IVF or HNSW indexes (their
    internal numbering does not close up), so those are refilled from every vector, keeping the trained
    coarse quantizer: the same lists as before the replacement.
    """
    faiss = faiss_module()
    rows = positions(index, ids)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if isinstance(faiss.downcast_index(index.faiss_index.index), faiss.IndexFlat):
        index.faiss_index.remove_ids(faiss.IDSelectorBatch(ids))
        index.faiss_index.add_with_ids(vectors, ids)
    else:
        every = np.sort(index.ids)
        table = vectors_of(index, every)
        table[np.searchsorted(every, ids)] = vectors
        refilled = faiss.clone_index(index.faiss_index)
        refilled.reset()
        refilled.add_with_ids(table, every)
        index.faiss_index = refilled
    index.model_of_id[rows] = model_code


def describe(index: Index) -> list[str]:
    """Lines for ``compat index info``."""
    m = index.manifest
    lines = [f"{index.path}: {m['count']} vectors, {m['dim']}-d, {m['kind']} index, {m['metric']} metric",
             f"data: {m.get('data') or '-'} (split {m.get('split') or '-'}), {len(m.get('classes', []))} classes"]
    counts = np.bincount(index.model_of_id, minlength=len(index.models))
    if isinstance(m.get("backfill"), dict):
        code = int(m["backfill"]["model_code"])
        lines.append(f"migration in progress: {int(counts[code])} of {m['count']} vectors re-embedded "
                     f"({100 * counts[code] / max(m['count'], 1):.1f}%); see `compat backfill status`")
    for code, model in enumerate(index.models):
        via = f", through {model['transformation']}" if model.get("transformation") else ""
        lines.append(f"model {code}: fingerprint {model.get('fingerprint') or 'unknown'} ({model.get('run') or '-'}"
                     f"{via}): {int(counts[code])} vectors")
    return lines


def manifest_json(index: Index) -> str:
    return json.dumps(index.manifest, indent=2)
