"""Backfill orderings and plan files (``compat backfill plan``).

An ordering is registered through the ``compat_register_backfill_orders`` hook; it receives an
:class:`OrderRequest` and returns the index's ids in the order they are to be re-embedded. Core
registers ``random`` and ``distance``; compat-fct registers FastFill's ``uncertainty``.

A plan file is JSON: ``{"format", "index", "order", "seed", "count", "ids_sha256", "ids": [...]}``;
``backfill run`` refuses a plan whose ids are not exactly the index's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compat_core.errors import CompatError

PLAN_FORMAT = "compat-backfill-plan/1"


@dataclass
class OrderRequest:
    """What an ordering may use. ``ids`` are the index's ids, sorted; ``data``/``split`` the gallery images."""

    index: Any  # compat_core.index.store.Index
    ids: np.ndarray
    data: str | None
    split: str
    old: str | None = None
    new: str | None = None
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 256

    def need(self, option: str, why: str) -> str:
        value = getattr(self, option)
        if not value:
            raise CompatError(f"this backfill order needs --{option}: {why}.")
        return value


def random_order(request: OrderRequest) -> np.ndarray:
    """A seeded permutation of the ids (the same for the same seed and ids, on any machine).

    Example:
        >>> random_order(OrderRequest(None, np.arange(5), None, "test", seed=0)).tolist()
        [4, 2, 3, 1, 0]
    """
    return request.ids[np.random.default_rng(request.seed).permutation(len(request.ids))]


def distance_order(request: OrderRequest) -> np.ndarray:
    """Largest distance between the vector the index holds and the new model's first (ties: smaller id first)."""
    from compat_core.backfill.curve import item_distance
    from compat_core.index.store import prepare, vectors_of

    new_run = request.need("new", "the distance order compares every stored vector with the new model's")
    new = embed_ids(new_run, request.ids, data=request.data, split=request.split, device=request.device,
                    batch_size=request.batch_size)
    if new.shape[1] != request.index.dim:
        raise CompatError(f"--new {new_run} embeds in {new.shape[1]} dimensions and the index holds "
                          f"{request.index.dim}: it cannot replace the index's vectors.")
    metric = request.index.manifest["metric"]
    stored = vectors_of(request.index, request.ids)
    return request.ids[np.argsort(-item_distance(stored, prepare(new, metric), metric), kind="stable")]


def embed_ids(run: str, ids: np.ndarray, *, data: str | None, split: str, device: str = "cpu",
              batch_size: int = 256) -> np.ndarray:
    """The embeddings of the images whose dataset indices are ``ids`` (in that order), by ``run``."""
    from compat_core.features import extract, open_model_on

    model, dataset = open_model_on(run, data=data, split=split, device=device)
    positions = positions_of(dataset, ids, f"{data}:{split}")
    return extract(model, dataset.subset(positions), batch_size=batch_size, device=device, model_ref=run,
                   data_ref=str(data), split=split).features


def positions_of(dataset, ids: np.ndarray, source: str) -> np.ndarray:
    """Positions in ``dataset`` of the items whose dataset indices are ``ids``; unknown ids are one error."""
    from compat_core.lookup import rows_of

    rows, ok = rows_of(np.asarray(dataset.base_indices, dtype=np.int64), ids)
    if not np.all(ok):
        missing = ids[~ok]
        raise CompatError(f"{source} holds no images with the dataset indices {missing[:5].tolist()} "
                          f"({len(missing)} of {len(ids)} ids): the index was built on other data. Pass the --data "
                          f"and split the index was built from (`compat index info` names them).")
    return rows


def make_plan(name: str, request: OrderRequest, index_path: str) -> dict[str, Any]:
    """Run the registered ordering ``name`` and check that it returned a permutation of the ids."""
    from compat_core.plugins import get_host

    entry = get_host().backfill_orders.lookup(name)
    ids = np.asarray(entry.get("factory")(request), dtype=np.int64)
    if len(ids) != len(request.ids) or not np.array_equal(np.sort(ids), request.ids):
        raise CompatError(f"the backfill order {name} (from {entry.distribution}) did not return each of the "
                          f"index's {len(request.ids)} ids exactly once. Report this to its authors.")
    return {"format": PLAN_FORMAT, "index": str(index_path), "order": name, "seed": request.seed,
            "old": request.old, "new": request.new, "count": len(ids), "ids_sha256": ids_digest(ids),
            "ids": ids.tolist()}


def ids_digest(ids: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(ids, dtype="<i8").tobytes()).hexdigest()


def read_plan(path: str | Path, index_ids: np.ndarray) -> dict[str, Any]:
    """A plan file whose ids are exactly the index's (as a numpy array under ``"ids"``)."""
    from compat_core.io import read_json

    plan = read_json(path, "Make one with `compat backfill plan --index IDX --out PLAN.json`.")
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT or not isinstance(plan.get("ids"), list):
        raise CompatError(f"{path} is not a {PLAN_FORMAT} file. Make one with `compat backfill plan`.")
    try:
        ids = np.asarray(plan["ids"], dtype=np.int64)
    except (TypeError, ValueError):
        raise CompatError(f"{path}: its ids are not integers. Make the plan again with `compat backfill plan`.") \
            from None
    if ids.ndim != 1 or ids_digest(ids) != plan.get("ids_sha256"):
        raise CompatError(f"{path}: its ids do not match the checksum it records (the file was edited or cut). "
                          f"Make the plan again with `compat backfill plan`.")
    held = np.sort(np.asarray(index_ids, dtype=np.int64))
    if len(ids) != len(held) or not np.array_equal(np.sort(ids), held):
        unknown = np.setdiff1d(ids, held)
        left = np.setdiff1d(held, ids)
        raise CompatError(f"{path} does not cover the index's ids exactly once: {len(unknown)} ids the index does "
                          f"not hold (first {unknown[:5].tolist()}), {len(left)} of its ids missing, "
                          f"{len(ids) - len(np.unique(ids))} repeated. Make the plan for this index with `compat "
                          f"backfill plan --index IDX`.")
    return {**plan, "ids": ids}
