"""Benchmark of ``compat eval retrieval --topk-only K`` on a gallery read memory-mapped (a script, not a test).

It writes a gallery of ``--gallery`` unit vectors (d = 128, ``--classes`` random labels) and ``--queries``
query vectors as compat feature files under ``--workdir``, then, in one fresh child process:

* ``compat``: :func:`compat_core.evaluators.retrieval.topk_between` on the feature files, the gallery
  memory-mapped (labels, provenance and NaN checks, block-wise conversion, exact faiss search, metrics);
  the process's peak RSS is recorded right after it;
* ``faiss``: faiss's own exact search (``faiss.knn``, inner product) on the same memory-mapped arrays,
  the floor, timed in the same process afterwards.

It prints a line and writes JSON (machine info included) to ``--out``.

Usage:
    python bench/topk.py                                  # 10,000 x 1,000,000, k = 100
    python bench/topk.py --gallery 200000 --queries 2000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

from child import machine, parse_or_run_child, run_child, write_report

DIM = 128
DEFAULT_OUT = Path(__file__).parent / "results" / "topk.json"


def write_data(workdir: Path, n_gallery: int, n_query: int, classes: int) -> tuple[Path, Path]:
    import numpy as np
    from compat_core.features import FeatureSet, save

    rng = np.random.default_rng(0)
    paths = []
    for name, n in (("gallery", n_gallery), ("query", n_query)):
        path = workdir / f"{name}-{n}.npz"
        if not path.is_file():
            x = np.empty((n, DIM), np.float32)
            for start in range(0, n, 2**17):  # in blocks: the whole float64 matrix would double the memory
                block = rng.standard_normal((min(2**17, n - start), DIM)).astype(np.float32)
                x[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
            labels = rng.integers(0, classes, n)
            save(path, FeatureSet(x, labels, np.arange(n), data=f"synthetic-{name}", split="test",
                                  classes=[str(c) for c in range(classes)]))
        paths.append(path)
    return paths[0], paths[1]


def child(spec: dict) -> None:
    import faiss
    import numpy as np
    from compat_core.evaluators.retrieval import topk_between
    from compat_core.features import load

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    query, gallery = load(spec["query"]), load(spec["gallery"], mmap=True)
    result = topk_between(query, gallery, spec["k"], "cosine", "auto", "off")
    ours = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    mapped = load(spec["gallery"], mmap=True).features
    start = time.perf_counter()
    faiss.knn(np.ascontiguousarray(query.features), mapped, spec["k"], metric=faiss.METRIC_INNER_PRODUCT)
    floor = time.perf_counter() - start
    print(json.dumps({"compat_seconds": ours, "faiss_seconds": floor, "ratio": ours / floor,
                      "peak_rss_bytes_after_compat": peak, "rss_before_bytes": rss_before,
                      "faiss_threads": faiss.omp_get_max_threads(), "metrics": result}))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("-k", type=int, default=100)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/compat-bench-topk"))
    args = parse_or_run_child(parser, argv, child, DEFAULT_OUT)
    if args is None:
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    gallery, query = write_data(args.workdir, args.gallery, args.queries, args.classes)
    spec = {"gallery": str(gallery), "query": str(query), "k": args.k}
    load_before = os.getloadavg()[0]
    result = run_child(__file__, spec)
    report = {"machine": machine() | {"load_average_before": load_before}, "n_gallery": args.gallery,
              "n_query": args.queries, "dim": DIM, "classes": args.classes, "k": args.k,
              "gallery_file_bytes": gallery.stat().st_size, **result}
    print(f"{args.queries} x {args.gallery}, k {args.k}: compat {result['compat_seconds']:.1f} s, faiss.knn "
          f"{result['faiss_seconds']:.1f} s, ratio {result['ratio']:.2f}, peak RSS "
          f"{result['peak_rss_bytes_after_compat'] / 2**30:.2f} GiB")
    write_report(args.out, report)


if __name__ == "__main__":
    main()
