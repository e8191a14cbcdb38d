"""Benchmark of ``compat_bct.row_fit`` at face-recognition size (a script, not a test).

The row fit of ``compat train bct`` (softmax regression of the synthesized old-classifier rows on the
old model's training embeddings, L-BFGS, at most 200 iterations = 250 evaluations) costs, per
evaluation, N x R x D multiply-adds for N embeddings, R rows, D dims. This script measures the pieces
at R = 93,000 rows x D = 512 on synthetic features (``--per-class`` samples per class around random
unit class centres), each stage in a fresh child process whose peak RSS is recorded:

* ``full_eval``: one evaluation (loss + gradient) of the exact full softmax on ``--probe`` samples
  against all R rows, extrapolated linearly in N (the chunks are independent) to every sample and
  to the one-per-class subsample, and to 250 evaluations. Labelled as extrapolations;
* ``small_fit``: whole fits at a reduced size (``--small-rows`` rows of ``--small-dim`` dims, where
  few dimensions keep the classes from being separable and the class means from being right),
  exact full softmax against the block form (``--block``): seconds, L-BFGS evaluations used, and the
  per-row accuracy over *all* rows of both results (does the bounded form fit as well?). The class
  centres there come in groups of 20 near one another, so that neighbouring classes compete;
* ``bounded``: the bounded fit's pieces at full size: the stratified subsample (``--max-samples``),
  the class means, :func:`compat_bct.row_sampling.row_blocks`, two bare evaluations of the block
  softmax, the guard's probe (2,048 samples scored over all rows; done before and after the fit),
  and ``--probe-iter`` real L-BFGS iterations (its own passes over the 47.6M row values count too),
  whose seconds per evaluation bound the fit with ``--fit-max-iter auto`` and with 200.

It prints a summary and writes JSON (machine info included) to ``--out``.

Usage:
    nice -n 15 python bench/row_fit.py
    nice -n 15 python bench/row_fit.py --rows 20000 --stages full_eval small_fit
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

DEFAULT_OUT = Path(__file__).parent / "results" / "row_fit.json"
MAX_EVALUATIONS = 250  # torch.optim.LBFGS: max_eval = 1.25 x max_iter, and compat's max_iter is 200


# ------------------------------------------------------------------------------ child process


def _data(rows: int, dim: int, per_class: int, seed: int = 0, group: int = 0, noise: float = 1.2):
    """``per_class`` samples of each class: its unit centre plus noise of norm ~``noise``. With
    ``group``, the centres come in groups of that many around shared directions (neighbours that compete)."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(rows, dim, generator=gen)
    if group:
        shared = torch.randn(-(-rows // group), dim, generator=gen)
        centres = 0.5 * centres + shared.repeat_interleave(group, dim=0)[:rows]
    centres = F.normalize(centres, dim=1)
    labels = torch.arange(rows).repeat(per_class)
    features = centres[labels] + noise * torch.randn(len(labels), dim, generator=gen) / dim ** 0.5
    return features, labels


def _means(features, labels, rows):
    from compat_bct.old_classifier import class_means

    return class_means(features, labels, rows)[0]


def _timed(fn):
    """``(result, wall seconds)``; the CPU seconds of the last call are kept in ``CPU_SECONDS``."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    CPU_SECONDS.append(time.process_time() - cpu)
    return out, time.perf_counter() - start


CPU_SECONDS: list[float] = []  # per timed call, in order: contention shows as wall >> cpu / threads


def _full_eval(args) -> dict:
    import torch
    from compat_bct.row_fit import RowFitObjective

    features, labels = _data(args.rows, args.dim, 1)
    keep = torch.randperm(args.rows, generator=torch.Generator().manual_seed(1))[:args.probe]
    weight = _means(features, labels, args.rows)
    objective = RowFitObjective(features[keep], labels[keep], weight, torch.zeros(args.rows),
                                torch.ones(args.rows, dtype=torch.bool), kind="cosine", scale=4.0)
    seconds = [_timed(objective)[1] for _ in range(2)]
    per_sample = min(seconds) / args.probe
    every = args.rows * args.per_class
    return {"rows": args.rows, "dim": args.dim, "probe_samples": args.probe, "seconds_per_evaluation": seconds,
            "lbfgs_history_100_gib": 2 * 100 * args.rows * args.dim * 4 / 2**30,  # computed, not allocated
            "extrapolated": {
                "seconds_per_evaluation_all_samples": per_sample * every, "all_samples": every,
                "seconds_per_evaluation_one_per_class": per_sample * args.rows,
                "hours_250_evaluations_all_samples": per_sample * every * MAX_EVALUATIONS / 3600,
                "hours_250_evaluations_one_per_class": per_sample * args.rows * MAX_EVALUATIONS / 3600}}


def _small_fit(args) -> dict:
    import torch
    from compat_bct.row_fit import RowFitObjective, fit_rows, row_accuracy
    from compat_bct.row_sampling import row_blocks

    rows = args.small_rows
    features, labels = _data(rows, args.small_dim, args.small_per_class, seed=2, group=20, noise=args.small_noise)
    weight, bias, free = _means(features, labels, rows), torch.zeros(rows), torch.ones(rows, dtype=torch.bool)
    calls = {"n": 0}
    original = RowFitObjective.__call__

    def counting(self):
        calls["n"] += 1
        return original(self)

    RowFitObjective.__call__ = counting
    out = {"rows": rows, "dim": args.small_dim, "samples": len(labels),
           "class_means_accuracy": float(row_accuracy(features, labels, weight, bias, "cosine", 4.0).mean())}
    variants = [("full", None)] + [(f"blocks_{size}", row_blocks(weight, size))
                                   for size in (args.small_block, rows // 2)]
    for name, blocks in variants:
        calls["n"] = 0
        (w, b), seconds = _timed(lambda c=blocks: fit_rows(features, labels, weight, bias, free, kind="cosine",
                                                         scale=4.0, blocks=c))
        out[name] = {"seconds": seconds, "evaluations": calls["n"],
                     "accuracy_all_rows": float(row_accuracy(features, labels, w, b, "cosine", 4.0).mean())}
    RowFitObjective.__call__ = original
    return out


def _bounded(args) -> dict:
    import torch
    from compat_bct.row_fit import PROBE_SAMPLES, RowFitObjective, fit_rows, lbfgs_history, sample_hits
    from compat_bct.row_sampling import row_blocks, stratified_subsample

    (features, labels), t_data = _timed(lambda: _data(args.rows, args.dim, args.per_class, seed=4))
    subset, t_subsample = _timed(lambda: stratified_subsample(labels, args.max_samples, 0))
    weight, t_means = _timed(lambda: _means(features, labels, args.rows))
    blocks, t_blocks = _timed(lambda: row_blocks(weight, args.block))
    objective, t_layout = _timed(lambda: RowFitObjective(
        features[subset], labels[subset], weight, torch.zeros(args.rows), torch.ones(args.rows, dtype=torch.bool),
        kind="cosine", scale=4.0, blocks=blocks))
    seconds = [_timed(objective)[1] for _ in range(2)]
    del objective
    probe = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))[:PROBE_SAMPLES]
    _, t_probe = _timed(lambda: sample_hits(features[probe], labels[probe], weight, torch.zeros(args.rows), "cosine",
                                            4.0))
    # a few real L-BFGS iterations: the optimizer's own passes over the rows count too
    calls, original = {"n": 0}, RowFitObjective.__call__

    def counting(self):
        calls["n"] += 1
        return original(self)

    RowFitObjective.__call__ = counting
    _, t_fit = _timed(lambda: fit_rows(features[subset], labels[subset], weight, torch.zeros(args.rows),
                                       torch.ones(args.rows, dtype=torch.bool), kind="cosine", scale=4.0,
                                       blocks=blocks, max_iter=args.probe_iter))
    RowFitObjective.__call__ = original
    per_evaluation = t_fit / max(calls["n"], 1)
    return {"rows": args.rows, "dim": args.dim, "samples": len(labels), "fit_samples": len(subset),
            "block": args.block, "blocks": len(blocks), "largest_block": max(len(b) for b in blocks),
            "lbfgs_history": lbfgs_history(args.rows * args.dim),
            "seconds_make_data": t_data, "seconds_subsample": t_subsample, "seconds_class_means": t_means,
            "seconds_row_blocks": t_blocks, "seconds_objective_setup": t_layout,
            "seconds_per_bare_evaluation": seconds, "seconds_probe_all_rows": t_probe,
            "lbfgs_iterations": args.probe_iter, "lbfgs_evaluations": calls["n"], "seconds_lbfgs": t_fit,
            "seconds_per_evaluation_in_lbfgs": per_evaluation}


STAGES = {"full_eval": _full_eval, "small_fit": _small_fit, "bounded": _bounded}


def _child(stage: str, args) -> None:
    import torch

    # On a machine shared with another job, every multi-threaded op waits for its second thread to be
    # scheduled (row_blocks at 4,650 rows: 12.4 s with 2 threads, 0.08 s with 1): measure with --threads.
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result = STAGES[stage](args)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["threads"] = torch.get_num_threads()
    result["cpu_seconds_of_timed_calls"] = CPU_SECONDS
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result))


# ------------------------------------------------------------------------------ parent


def _run_stage(stage: str, argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", stage, *argv], capture_output=True, text=True,
                          check=False)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _summary(results: dict, rows: int, dim: int) -> dict:
    """Estimated wall time of one bounded fit at full size, from the measured pieces: setup, the probe
    before and after, and 1.25 evaluations per L-BFGS iteration (torch's cap) at the measured cost."""
    from compat_bct.row_fit import resolve_max_iter

    bounded = results.get("bounded", {})
    if "seconds_per_evaluation_in_lbfgs" not in bounded:
        return {}
    fixed = (bounded["seconds_subsample"] + bounded["seconds_class_means"] + bounded["seconds_row_blocks"]
             + bounded["seconds_objective_setup"] + 2 * bounded["seconds_probe_all_rows"])
    out = {"seconds_setup_and_two_probes": fixed}
    for name, iterations in (("auto", resolve_max_iter("auto", rows * dim)), ("200", 200)):
        evaluations = 1.25 * iterations
        out[f"max_iter_{name}"] = {"iterations": iterations, "evaluations_at_most": evaluations,
                                   "estimated_seconds_at_most": fixed + evaluations
                                   * bounded["seconds_per_evaluation_in_lbfgs"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=93_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--per-class", type=int, default=5)
    parser.add_argument("--probe", type=int, default=400, help="samples of the full-softmax evaluation")
    parser.add_argument("--small-rows", type=int, default=400)
    parser.add_argument("--small-block", type=int, default=64, help="block size of the small fit")
    parser.add_argument("--small-noise", type=float, default=1.0, help="noise norm of the small fit's samples")
    parser.add_argument("--small-dim", type=int, default=16, help="dims of the small fit (low: not separable)")
    parser.add_argument("--small-per-class", type=int, default=20)
    parser.add_argument("--block", type=int, default=128, help="--fit-block of the bounded fit")
    parser.add_argument("--probe-iter", type=int, default=3, help="L-BFGS iterations timed at full size")
    parser.add_argument("--max-samples", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the measuring processes")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", choices=list(STAGES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args)
        return
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
            if k not in ("stages", "out", "child")]
    previous = json.loads(args.out.read_text())["results"] if args.out.is_file() else {}
    results = {k: v for k, v in previous.items() if k in STAGES and k not in args.stages}  # kept from before
    for stage in args.stages:
        print(f"== {stage}", flush=True)
        results[stage] = _run_stage(stage, argv)
        print(json.dumps(results[stage], indent=1), flush=True)
    results["summary"] = _summary(results, args.rows, args.dim)
    print(json.dumps(results["summary"], indent=1))
    report = {"bench": "row_fit", "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                              "python": platform.python_version(),
                                              "load_average_at_end": os.getloadavg()},
              "settings": {k: v for k, v in vars(args).items() if k not in ("out", "child")}, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
