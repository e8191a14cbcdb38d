"""``compat index build|search|info``: a faiss vector index with provenance on every vector."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Vector indexes (faiss) with the provenance of every vector.", no_args_is_help=True)


@app.command("build")
def build(
    features: Annotated[str, typer.Option("--features", help="Feature file (.npz) of the gallery, from `compat "
                                                             "features extract`.")],
    out: Annotated[str, typer.Option("--out", help="Index folder to write.")],
    kind: Annotated[str, typer.Option("--kind", help="flat (exact), ivf or hnsw.")] = "flat",
    metric: Annotated[str, typer.Option("--metric", help="cosine or l2.")] = "cosine",
) -> None:
    """Build an index of a feature file: ids are the items' dataset indices; the manifest records the data,
    the classes and the fingerprint of the model that made every vector."""
    from pathlib import Path

    from compat_core.errors import CompatError
    from compat_core.features import load, require_file
    from compat_core.index import store
    from compat_core.io import check_writable_folder

    if not features.endswith(".npz"):
        raise CompatError(f"--features {features} is not a feature file (.npz). Make one with `compat features "
                          f"extract --model RUN --data DATA --split SPLIT --out {features}.npz`.")
    require_file(features, "--features")
    if Path(out).exists() and any(Path(out).iterdir()) and not (Path(out) / store.MANIFEST_FILE).is_file():
        raise CompatError(f"--out {out} exists and is not an index folder. Choose a new or empty folder.")
    check_writable_folder(out, "--out")
    index = store.build(load(features), kind=kind, metric=metric, source=features)
    store.write(index, out)
    Console(stderr=True, highlight=False).print(f"wrote {out}: {index.manifest['count']} vectors, "
                                                f"{index.manifest['dim']}-d, {kind}, {metric}", markup=False)


@app.command("search")
def search(
    index_dir: Annotated[str, typer.Argument(help="Index folder.")],
    query: Annotated[str, typer.Option("--query", help="Query side: a run directory (embedded on --data/--split) "
                                                       "or a feature file.")],
    data: Annotated[str | None, typer.Option("--data", help="Dataset of the queries (with a run directory).")] = None,
    split: Annotated[str, typer.Option("--split", help="Split of the queries.")] = "test",
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="Results per query.")] = 10,
    force: Annotated[bool, typer.Option("--force", help="Search even when the query model was not trained to "
                                                        "be compatible with the index's.")] = False,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "auto",
    json_out: Annotated[str | None, typer.Option("--json", help="Write ids, scores and metrics as JSON (- : "
                                                                "standard output).")] = None,
) -> None:
    """Search the index with a model's query vectors: the query model must be the index's model or one trained
    against it (its --old links); with labels, CMC top-1, top-k and mAP@k."""
    import json

    from compat_core.engine.distributed import resolve_device
    from compat_core.index import store
    from compat_core.index.search import query_features
    from compat_core.index.search import search as run_search
    from compat_core.io import check_writable, write_json

    if json_out and json_out != "-":
        check_writable(json_out, "--json")
    index = store.read(index_dir)
    feats = query_features(query, data=data, split=split, device=str(resolve_device(device)))
    result = run_search(index, feats, k, force=force, source=query)
    console = Console(stderr=json_out == "-", highlight=False)
    how = {"same": "the index's own model", "trained": "a model trained against the index's model",
           "target": "the model whose space the index's vectors were transformed into",
           "older": "a model that newer vectors of the index were trained against",
           "forced": "a model of unknown compatibility (--force)"}[result["relation"]]
    console.print(f"{result['n_query']} queries by {how}, top {k} of {index.manifest['count']}"
                  + (" (each query's own item left out)" if result["leave_one_out"] else ""), markup=False)
    metrics = {key: result[key] for key in ("top1", f"top{k}", f"mAP@{k}") if result.get(key) is not None}
    if metrics:
        console.print("  " + "  ".join(f"{key} {100 * value:.2f}" for key, value in metrics.items()) + " (percent)",
                      markup=False)
    if json_out == "-":
        print(json.dumps(result))
    elif json_out:
        write_json(json_out, result)


@app.command("info")
def info(index_dir: Annotated[str, typer.Argument(help="Index folder.")]) -> None:
    """What an index holds: size, dimension, kind, metric, data, and which model made how many vectors."""
    from compat_core.index import store

    console = Console(highlight=False)
    for line in store.describe(store.read(index_dir)):
        console.print(line, markup=False)
