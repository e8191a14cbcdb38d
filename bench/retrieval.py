"""Benchmark of ``compat_core.metrics.retrieval_metrics`` (a script, not a test).

For Q = G in ``--sizes`` (d = 128, random unit features) and each class count in ``--classes``, it
times, each in a fresh child process whose peak RSS is recorded:

* ``metrics``: ``retrieval_metrics(query, labels, gallery, labels)`` (exact CMC and mAP);
* ``matmul``: the bare similarity product in the same chunks (``q_chunk @ g.T`` for every chunk,
  nothing else), the floor any exact method pays. It is timed twice: as written (a fresh result per
  chunk, which pays page faults once a chunk outgrows malloc's 32 MiB mmap threshold) and into one
  reused buffer; the ratio uses the faster of the two;
* ``full_sort`` (sizes up to ``--sort-max``): sorting every score row and reading AP and CMC off the
  sorted labels, the textbook approach (ties ignored), for orientation.

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
    import torch
    from compat_core.metrics import retrieval

    return retrieval._auto_chunk_size(len(gallery_labels), int(torch.bincount(gallery_labels).max()))


def _run_metrics(query, query_labels, gallery, gallery_labels) -> dict:
    from compat_core.metrics import retrieval_metrics

    return retrieval_metrics(query, query_labels, gallery, gallery_labels)


def _run_matmul(query, query_labels, gallery, gallery_labels) -> dict:
    import torch

    rows = _chunk_rows(gallery_labels)
    with torch.inference_mode():
        for start in range(0, len(query), rows):
            query[start:start + rows] @ gallery.T
        # The same product into a reused buffer, timed separately (see the module docstring).
        start_reused = time.perf_counter()
        out = torch.empty(rows, len(gallery))
        for start in range(0, len(query), rows):
            chunk = query[start:start + rows]
            torch.mm(chunk, gallery.T, out=out[:len(chunk)])
    return {"chunk_rows": rows, "reused_buffer_seconds": time.perf_counter() - start_reused}


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


_TASKS = {"metrics": _run_metrics, "matmul": _run_matmul, "full_sort": _run_full_sort}


def child(spec: dict) -> None:
    """Run one task on fresh data and print one JSON line: seconds, peak RSS, task output."""
    import torch

    data = _data(spec["n"], spec["classes"])
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    output = _TASKS[spec["task"]](*data)
    seconds = time.perf_counter() - start
    if "reused_buffer_seconds" in output:  # the task timed two variants back to back
        output["as_written_seconds"] = seconds - output["reused_buffer_seconds"]
        seconds = min(output["as_written_seconds"], output["reused_buffer_seconds"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    print(json.dumps({"seconds": seconds, "peak_rss_bytes": peak, "rss_before_bytes": rss_before,
                      "threads": torch.get_num_threads(), "output": output}))


# ----------------------------------------------------------------------------- parent process


def _measure(task: str, n: int, n_classes: int, repeat: int) -> dict:
    """The fastest of ``repeat`` fresh child processes (others share this machine), all times kept."""
    spec = json.dumps({"task": task, "n": n, "classes": n_classes})
    runs = []
    for _ in range(repeat):
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
        lines.append(f"{r['n']:>7} {r['classes']:>7} {r['metrics']['seconds']:>10.1f} "
                     f"{r['matmul']['seconds']:>9.1f} {r['ratio_to_matmul']:>6.2f} {sort:>11} "
                     f"{r['metrics']['peak_rss_bytes'] / 2**20:>12.0f} {r['metrics']['output']['mAP']:>8.5f} "
                     f"{r['metrics']['output']['top1']:>7.4f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--sort-max", type=int, default=20_000, help="largest size for the full-sort variant")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement up to --repeat-max")
    parser.add_argument("--repeat-max", type=int, default=20_000, help="larger sizes run once")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return

    machine = _machine()
    results = []
    for n in args.sizes:
        for n_classes in args.classes:
            entry = {"n": n, "dim": DIM, "classes": n_classes}
            for task in ("matmul", "metrics") + (("full_sort",) if n <= args.sort_max else ()):
                entry[task] = _measure(task, n, n_classes, args.repeat if n <= args.repeat_max else 1)
                print(f"  n={n} classes={n_classes} {task}: {entry[task]['seconds']:.1f} s", flush=True)
            entry["ratio_to_matmul"] = entry["metrics"]["seconds"] / entry["matmul"]["seconds"]
            if "full_sort" in entry:
                entry["full_sort_ratio_to_matmul"] = entry["full_sort"]["seconds"] / entry["matmul"]["seconds"]
            results.append(entry)
    report = {"machine": machine | {"load_average_at_end": list(os.getloadavg())}, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(_table(results))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
