"""``compat backfill run``: re-embed an index's items with the new model, in plan order, committing one
batch at a time (see :mod:`compat_core.backfill.journal` for what a commit is and why a kill loses
nothing), and measure the **real** backfill curve: new-model queries against the live, mixed index.

Batches end at multiples of ``batch`` and at every evaluation cut-off ``floor(i n / S)`` (S = 1 /
``eval_every``: the same cut-offs as ``compat eval backfill --steps S``), so a point is measured on
exactly the items the simulated curve has replaced. The boundaries are fixed when the migration starts;
a resume keeps them, which is why an interrupted migration ends with the same vectors as one that ran
through.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compat_core.backfill import journal
from compat_core.backfill.curve import area_under_curves, cutoffs
from compat_core.errors import CompatError


@dataclass
class BackfillRun:
    """The options of one ``compat backfill run``."""

    index: str
    model: str
    plan: str
    data: str | None = None
    batch: int = 2000
    eval_every: float | None = None
    queries: str | None = None
    k: int = 10
    resume: bool = False
    force: bool = False
    device: str = "cpu"


def boundaries(n: int, batch: int, eval_every: float | None) -> list[int]:
    """Commit boundaries: 0, multiples of ``batch``, the evaluation cut-offs, and ``n``.

    Example:
        >>> boundaries(10, 4, 0.5)
        [0, 4, 5, 8, 10]
    """
    points = set(range(0, n, batch)) | {n} | set(eval_cutoffs(n, eval_every))
    return sorted(points)


def eval_cutoffs(n: int, eval_every: float | None) -> list[int]:
    if not eval_every:
        return []
    return cutoffs(n, max(1, round(1 / eval_every))).tolist()


def run(options: BackfillRun, say=print) -> dict[str, Any]:
    """Run (or resume) the migration to its end; return the curve (empty without ``eval_every``)."""
    from compat_core.backfill.orders import read_plan
    from compat_core.index import store

    store.read(options.index)  # a folder that is no index is refused before anything is written into it
    with journal.locked(options.index, "compat backfill run"):
        index = store.read(options.index)  # again, under the lock: what another process committed counts
        model, dataset, positions, plan, state = _prepare(index, options, read_plan)
        options.eval_every, options.k = state.get("eval_every"), int(state.get("k") or options.k)
        options.queries = state.get("queries", options.queries)  # a resume measures what the start measured
        n, bounds = len(plan["ids"]), state["boundaries"]
        batches = journal.committed(options.index)
        done = journal.done_count(state, len(batches))
        queries = _queries(options, model, index) if options.eval_every else None
        wanted = set(eval_cutoffs(n, options.eval_every))
        if queries is not None and done in wanted and done not in journal.curve_points(options.index):
            _measure(options, queries, done, n)
        if done:
            say(f"resuming: {done} of {n} items already re-embedded ({len(batches)} batches committed)")
        _embed_and_commit(options, model, dataset, positions, plan["ids"], bounds, len(batches), queries, wanted,
                          index.manifest["metric"])
        points = journal.curve_points(options.index)
    return _curve(points, wanted, n, options.k)


def _prepare(index, options: BackfillRun, read_plan):
    """Model, dataset, plan positions and journal of the migration, starting it when none is in progress."""
    from compat_core.backfill.orders import positions_of
    from compat_core.models.run import is_run_dir, load_model
    from compat_core.provenance import fingerprint

    if not is_run_dir(options.model):
        raise CompatError(f"--model {options.model} is not a compat run directory. Pass the new model's run.")
    model = load_model(options.model, options.device).eval()
    if model.embedding_dim != index.dim:
        raise CompatError(f"--model {options.model} embeds in {model.embedding_dim} dimensions but the index holds "
                          f"{index.dim}-d vectors: its vectors cannot replace the index's. Build a new index from "
                          f"its features (`compat features extract` + `compat index build`) instead.")
    mark = fingerprint(options.model)
    _check_compatible(index, options, mark)
    plan = read_plan(options.plan, index.ids)
    state = _journal(index, options, plan, mark)
    from compat_core.data import open_dataset

    data = options.data or index.manifest.get("data")
    dataset = open_dataset(data, split=index.manifest.get("split") or "test", image_size=model.spec.input["size"])
    positions = positions_of(dataset, plan["ids"], f"--data {data} (split {index.manifest.get('split')})")
    return model, dataset, positions, plan, state


def _check_compatible(index, options: BackfillRun, mark: str) -> None:
    """The new model must embed into the space the index's queries use: the index's model or one trained against it."""
    from types import SimpleNamespace

    from compat_core.index.search import check_compatible

    original = index.models if not journal.in_progress(index.manifest) else index.models[:-1]
    view = SimpleNamespace(models=original)  # every model the index held before the migration
    check_compatible(SimpleNamespace(fingerprint=mark, model=options.model), view, options.force)


def _journal(index, options: BackfillRun, plan: dict[str, Any], mark: str) -> dict[str, Any]:
    """The journal of the migration in progress (checked against this run), or a new one."""
    if journal.in_progress(index.manifest):
        state = journal.read_journal(options.index)
        if not options.resume:
            raise CompatError(f"{options.index}: a migration is already in progress ({state['plan']['order']} order, "
                              f"model {state['model']['run']}). Continue it with `compat backfill run ... --resume`, "
                              f"or undo it with `compat backfill rollback {options.index}`.")
        if state["plan"]["ids_sha256"] != plan["ids_sha256"] or state["model"]["fingerprint"] != mark:
            raise CompatError(f"{options.index}: the migration in progress uses another plan or model (model "
                              f"{state['model']['fingerprint']} from {state['model']['run']}; this run: {mark}). "
                              f"Resume it with the same --plan and --model, or roll it back first.")
        if state.get("state") == "finalizing":
            raise CompatError(f"{options.index}: the migration is being finalised. Run `compat backfill finalize "
                              f"{options.index}` again to complete it.")
        return state
    if options.batch < 1 or (options.eval_every is not None and not 0 < options.eval_every <= 1):
        raise CompatError("--batch must be at least 1 and --eval-every a fraction in (0, 1].")
    bounds = boundaries(len(plan["ids"]), options.batch, options.eval_every)
    return journal.start(index, plan, {"fingerprint": mark, "run": str(options.model)}, bounds,
                         {"eval_every": options.eval_every, "k": options.k, "queries": options.queries})


def _embed_and_commit(options, model, dataset, positions, ids, bounds, first, queries, wanted, metric: str) -> None:
    import torch

    from compat_core.engine.batches import iterate
    from compat_core.index.store import prepare
    from compat_core.progress import track

    spans = [(bounds[b], bounds[b + 1]) for b in range(first, len(bounds) - 1)]
    batches = [positions[a:b] for a, b in spans]
    label = f"re-embed {Path(options.index).name} with {Path(options.model).name}"
    images = iterate(dataset, batches)
    with torch.inference_mode():
        for number, ((a, b), (pixels, _, base)) in enumerate(
                track(zip(spans, images, strict=True), bounds[-1] - bounds[first], label, unit="items",
                      weights=[b - a for a, b in spans]), start=first):
            began = time.perf_counter()
            vectors = prepare(model(pixels.to(options.device)).embedding.float().cpu().numpy(), metric)
            if not np.array_equal(base.numpy(), ids[a:b]):
                raise CompatError("the dataset returned other images than the plan asked for; report this bug.")
            journal.commit(options.index, number, ids[a:b], vectors, a, b, time.perf_counter() - began)
            journal.failpoint(f"backfill-after-commit:{number}")
            if queries is not None and b in wanted:
                _measure(options, queries, b, len(ids))


def _queries(options: BackfillRun, model, index):
    """The new model's query features: a feature file, a split of the index's data, or the index's own split."""
    from compat_core.features import extract, features_of
    from compat_core.provenance import fingerprint

    source = options.queries
    if source and source.endswith(".npz"):
        return features_of(source, data=None, split="")
    from compat_core.data import open_dataset

    data, split = options.data or index.manifest.get("data"), source or index.manifest.get("split")
    dataset = open_dataset(data, split=split, image_size=model.spec.input["size"])
    feats = extract(model, dataset, device=options.device, model_ref=str(options.model), data_ref=str(data),
                    split=split)
    feats.data = index.manifest.get("data")  # the same images as the index's when the split is its own
    feats.fingerprint = fingerprint(options.model)
    return feats


def _measure(options: BackfillRun, queries, done: int, n: int) -> None:
    """Search the live index (read from disk, as any client would) and append the point to the curve."""
    import json

    from compat_core.index import store
    from compat_core.index.search import search
    from compat_core.io import append_line

    live = store.read(options.index)
    result = search(live, queries, options.k, force=True, source="queries")
    point = {"backfilled": done, "fraction": done / max(n, 1),
             **{key: result.get(key) for key in ("top1", "top5", f"mAP@{options.k}")}}
    append_line(journal.folder_of(options.index) / journal.CURVE, json.dumps(point))


def _curve(points: dict[int, dict[str, Any]], wanted: set[int], n: int, k: int) -> dict[str, Any]:
    cuts = sorted(c for c in wanted if c in points)
    if not cuts:
        return {}
    keys = [key for key in ("top1", "top5", f"mAP@{k}") if points[cuts[0]].get(key) is not None]
    curves = {key: [points[c][key] for c in cuts] for key in keys}
    fractions = [c / max(n, 1) for c in cuts]
    return {"fractions": fractions, "backfilled": cuts, "curves": curves, "auc": area_under_curves(fractions, curves),
            "k": k, "n_gallery": n}


def finalize(index_dir: str) -> dict[str, Any]:
    """Make a complete migration the index: one model, the old vectors and the journal gone.

    The journal is marked ``finalizing`` first (no rollback after that point); the new base files hold
    the live vectors, so a reader that still sees the old manifest and applies the batches on top gets
    the same index: a kill at any point is completed by running finalize again.
    """
    from compat_core.index import store

    with journal.locked(index_dir, "compat backfill finalize"):
        index = store.read(index_dir)
        if not journal.in_progress(index.manifest):
            raise CompatError(f"{index_dir}: no migration in progress, nothing to finalise.")
        state = journal.read_journal(index_dir)
        done = journal.done_count(state, len(journal.committed(index_dir)))
        total = int(state["boundaries"][-1])
        if done < total:
            raise CompatError(f"{index_dir}: only {done} of {total} items are re-embedded. Finish the migration "
                              f"with `compat backfill run ... --resume`, or undo it with `compat backfill rollback "
                              f"{index_dir}`.")
        journal.mark(index_dir, state, "finalizing")
        final = _final_index(index, state)
        store.write(final, index_dir)
        journal.clear(index_dir)
    return final.manifest


def _final_index(index, state: dict[str, Any]):
    """The live vectors in a fresh index of the same kind, in id order, all from the new model."""
    from compat_core.index import store

    ids = np.sort(index.ids)
    vectors = store.vectors_of(index, ids)
    m = index.manifest
    faiss_index = store.new_faiss_index(m["dim"], len(ids), m["kind"], m["metric"], vectors)
    faiss_index.add_with_ids(vectors, ids)
    labels = index.labels[store.positions(index, ids)]
    manifest = {key: value for key, value in m.items() if key != "backfill"}
    manifest["models"] = [m["models"][int(state["model_code"])]]
    manifest["backfilled_from"] = {"models": m["models"][:-1], "order": state["plan"]["order"],
                                   "finalized": time.strftime("%Y-%m-%d %H:%M:%S")}
    return store.Index(index.path, faiss_index, ids, labels, np.zeros(len(ids), np.int64), manifest)


def status(index_dir: str) -> dict[str, Any]:
    """Fraction done, rate over the last batches, time left, and whether a process holds the migration."""
    from compat_core.io import read_json

    manifest = read_json(Path(index_dir) / "manifest.json", f"{index_dir} is not a compat index.")
    if not isinstance(manifest, dict) or not journal.in_progress(manifest):
        return {"state": "none", "index": str(index_dir)}
    state = journal.read_journal(index_dir)
    files = journal.committed(index_dir)
    done, total = journal.done_count(state, len(files)), int(state["boundaries"][-1])
    recent = [journal.read_batch(f) for f in files[-20:]]
    rate = None
    if len(recent) > 1:  # items committed after the first of these batches, over the wall time since it
        items = sum(int(b["span"][1] - b["span"][0]) for b in recent[1:])
        rate = items / max(float(recent[-1]["time"][0] - recent[0]["time"][0]), 1e-9)
    elif recent:
        rate = int(recent[0]["span"][1] - recent[0]["span"][0]) / max(float(recent[0]["time"][1]), 1e-9)
    return {"state": state.get("state", "running") if done < total or state.get("state") == "finalizing"
            else "complete", "index": str(index_dir), "done": done, "total": total, "fraction": done / max(total, 1),
            "batches": len(files), "rate": rate, "seconds_left": (total - done) / rate if rate else None,
            "order": state["plan"]["order"], "model": state["model"], "held_by": journal.holder(index_dir)}
