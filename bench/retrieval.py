"""Benchmark of ``compat_core.metrics.retrieval_metrics`` (a script, not a test).

For Q = G in ``--sizes`` (d = 128, random unit features) and each class count in ``--classes``, it
times, in one fresh child process per case (whose peak RSS is recorded), alternately ``--repeat`` times:

* ``matmul``: the bare similarity product in the same chunks (``torch.mm(q_chunk, g.T, out=buffer)`` for
  every chunk, nothing else), the floor any exact method pays;
* ``metrics``: ``retrieval_metrics(query, labels, gallery, labels)`` (exact CMC and mAP);

and reports the ratio of the fastest of each, measured in the same process. ``full_sort`` (sizes up to
``--sort-max``, its own process): sorting every score row and reading AP and CMC off the sorted labels,
the textbook approach (ties ignored), for orientation.

It prints a table and writes JSON (machine info included) to ``--out``.

Usage:
    python bench/retrieval.py                       # 20k and 100k, 10 and 1000 classes
    python bench/retrieval.py --sizes 20000 --classes 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from child import parse_or_run_child

DIM = 128
DEFAULT_OUT = Path(__file__).parent / "results" / "retrieval.json"


# ------------------------------------------------------------------------------ child process


def _data(n: int, n_classes: int):
    import torch

    generator = torch.Generator().manual_seed(n * 1000 + n_classes)
    query = torch.nn.functional.normalize(torch.randn(n, DIM, generator=generator), dim=1)
    gallery = torch.nn.functional.normalize(torch.randn(n, DIM, generator=generator), dim=1)
    query_labels = torch.randint(0, n_classes, (n,), generator=generator)
    gallery_labels = torch.randint(0, n_classes, (n,), generator=generator)
    return query, query_labels, gallery, gallery_labels


def _chunk_rows(gallery_labels) -> int:
    """The chunk size ``retrieval_metrics`` picks by itself for this gallery."""
    from compat_core.metrics import retrieval

    return retrieval._auto_chunk_size(len(gallery_labels))


def _run_pair(query, query_labels, gallery, gallery_labels, repeat: int = 1) -> dict:
    """The bare chunked product and the metrics, alternately, in this process."""
    import torch
    from compat_core.metrics import retrieval_metrics

    retrieval_metrics(query[:10], query_labels[:10], gallery[:1000], gallery_labels[:1000])  # load the kernel
    rows = _chunk_rows(gallery_labels)
    out = torch.empty(rows, len(gallery))
    matmul, metrics, result = [], [], {}
    for _ in range(repeat):
        start = time.perf_counter()
        with torch.inference_mode():
            for lo in range(0, len(query), rows):
                chunk = query[lo:lo + rows]
                torch.mm(chunk, gallery.T, out=out[:len(chunk)])
        matmul.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = retrieval_metrics(query, query_labels, gallery, gallery_labels)
        metrics.append(time.perf_counter() - start)
    return {"chunk_rows": rows, "matmul_seconds": matmul, "metrics_seconds": metrics, "metrics": result}


def _run_full_sort(query, query_labels, gallery, gallery_labels) -> dict:
    """AP and CMC from fully sorted rows (ties broken arbitrarily by the sort)."""
    import torch

    rows = _chunk_rows(gallery_labels)
    ap_sum, top1, top5, answered = 0.0, 0, 0, 0
    with torch.inference_mode():
        for start in range(0, len(query), rows):
            scores = query[start:start + rows] @ gallery.T
            order = torch.sort(scores, dim=1, descending=True).indices
            hits = gallery_labels[order] == query_labels[start:start + rows, None]
            n_pos = hits.sum(1)
            ranks = torch.arange(1, hits.shape[1] + 1)
            precision = torch.cumsum(hits, 1) / ranks
            has = n_pos > 0
            ap_sum += float(((precision * hits).sum(1)[has] / n_pos[has]).sum())
            first = hits.float().argmax(1)
            top1 += int((first[has] < 1).sum())
            top5 += int((first[has] < 5).sum())
            answered += int(has.sum())
    return {"mAP": ap_sum / answered, "top1": top1 / answered, "top5": top5 / answered}


_TASKS = {"pair": _run_pair, "full_sort": _run_full_sort}


def child(spec: dict) -> None:
    """Run one task on fresh data and print one JSON line: seconds, peak RSS, task output."""
    import torch

    data = _data(spec["n"], spec["classes"])
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    extra = {"repeat": spec["repeat"]} if spec["task"] == "pair" else {}
    output = _TASKS[spec["task"]](*data, **extra)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    print(json.dumps({"seconds": seconds, "peak_rss_bytes": peak, "rss_before_bytes": rss_before,
                      "threads": torch.get_num_threads(), "output": output}))


# ----------------------------------------------------------------------------- parent process


def _measure(task: str, n: int, n_classes: int, repeat: int) -> dict:
    """One child process (``pair``: its alternating repeats inside), or the fastest of ``repeat`` children."""
    spec = json.dumps({"task": task, "n": n, "classes": n_classes, "repeat": repeat})
    runs = []
    for _ in range(repeat if task != "pair" else 1):
        load_before = os.getloadavg()[0]
        done = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{task} n={n} classes={n_classes} failed:\n{done.stderr}")
        # 1-minute load averages around the run: other processes on this machine slow it down.
        runs.append(json.loads(done.stdout.strip().splitlines()[-1])
                    | {"load_average_1min": [load_before, os.getloadavg()[0]]})
    best = min(runs, key=lambda run: run["seconds"])
    return best | {"all_seconds": [run["seconds"] for run in runs],
                   "max_peak_rss_bytes": max(run["peak_rss_bytes"] for run in runs)}


def _machine() -> dict:
    import torch

    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "load_average_at_start": list(os.getloadavg())}


def _table(results: list[dict]) -> str:
    head = (f"{'Q=G':>7} {'classes':>7} {'metrics s':>10} {'matmul s':>9} {'ratio':>6} "
            f"{'full sort s':>11} {'peak RSS MiB':>12} {'mAP':>8} {'top1':>7}")
    lines = [head, "-" * len(head)]
    for r in results:
        sort = f"{r['full_sort']['seconds']:.1f}" if "full_sort" in r else "-"
        pair = r["pair"]["output"]
        lines.append(f"{r['n']:>7} {r['classes']:>7} {min(pair['metrics_seconds']):>10.1f} "
                     f"{min(pair['matmul_seconds']):>9.1f} {r['ratio_to_matmul']:>6.2f} {sort:>11} "
                     f"{r['pair']['peak_rss_bytes'] / 2**20:>12.0f} {pair['metrics']['mAP']:>8.5f} "
                     f"{pair['metrics']['top1']:>7.4f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--sort-max", type=int, default=20_000, help="largest size for the full-sort variant")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement up to --repeat-max")
    parser.add_argument("--repeat-max", type=int, default=100_000, help="larger sizes run once")
    args = parse_or_run_child(parser, argv, child, DEFAULT_OUT)
    if args is None:
        return

    machine = _machine()
    results = []
    for n in args.sizes:
        for n_classes in args.classes:
            entry = {"n": n, "dim": DIM, "classes": n_classes}
            for task in ("pair",) + (("full_sort",) if n <= args.sort_max else ()):
                entry[task] = _measure(task, n, n_classes, args.repeat if n <= args.repeat_max else 1)
                print(f"  n={n} classes={n_classes} {task}: {entry[task]['seconds']:.1f} s", flush=True)
            pair = entry["pair"]["output"]
            entry["ratio_to_matmul"] = min(pair["metrics_seconds"]) / min(pair["matmul_seconds"])
            if "full_sort" in entry:
                entry["full_sort_ratio_to_matmul"] = entry["full_sort"]["seconds"] / min(pair["matmul_seconds"])
            results.append(entry)
    report = {"machine": machine | {"load_average_at_end": list(os.getloadavg())}, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(_table(results))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
