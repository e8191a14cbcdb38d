"""Benchmark: a new model whose classifier has 100,000 classes (MS1M-scale), trained on one process and under
DDP (gloo, 2 processes) on the CPU (a script, not a test).

Each configuration runs ``--steps`` optimizer steps of compat's own pieces (``EmbeddingModel`` with
``--backbone`` and a 512-d embedding, the ``--head`` classifier with ``--classes`` rows, SGD with momentum and
weight decay, cross-entropy; under DDP the model is wrapped in ``DistributedDataParallel`` exactly as the
engine does) on random 32 x 32 images with labels spread over every class, in a fresh process whose peak RSS
is recorded. The baseline, run in the same invocation, is the same model with a 1,000-class head: the
ratios show what the large head itself costs per step. Writes JSON to ``--out``.

Usage:
    python bench/large_head.py                     # 100,000 and 1,000 classes, 1 and 2 processes
    python bench/large_head.py --steps 5 --head arcface
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

from child import machine, parse_or_run_child, run_child

DEFAULT_OUT = Path(__file__).parent / "results" / "large_head.json"


def worker(rank: int, world: int, spec: dict, port: int, results) -> None:
    import torch
    import torch.nn.functional as F
    from compat_core.models.embedding import EmbeddingModel, ModelSpec

    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    classes = [str(c) for c in range(spec["classes"])]
    model = EmbeddingModel(ModelSpec.from_options(backbone=spec["backbone"], embedding_dim=512, classes=classes,
                                                  head=spec["head"], head_scale=None, head_margin=None, image_size=32))
    module = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(rank)
    batch = spec["batch"] // world
    times = []
    for _ in range(spec["steps"] + 1):  # the first step (allocations, DDP buckets) is not timed
        images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, generator=generator)
        targets = torch.randint(0, spec["classes"], (batch,), generator=generator)
        start = time.perf_counter()
        out = module(images, targets)
        loss = F.cross_entropy(out.logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    if world > 1:
        torch.distributed.destroy_process_group()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    head = sum(p.numel() for p in model.head.parameters())
    results.put({"rank": rank, "seconds_per_step": sum(times[1:]) / spec["steps"], "peak_rss_bytes": peak,
                 "head_parameters": head, "finite": bool(torch.isfinite(loss))})


def child(spec: dict) -> None:
    import torch.multiprocessing as mp

    queue = mp.get_context("spawn").SimpleQueue()
    if spec["world"] == 1:
        worker(0, 1, spec, 0, queue)
    else:
        mp.start_processes(worker, args=(spec["world"], spec, 29500 + os.getpid() % 1000, queue),
                           nprocs=spec["world"], start_method="spawn")
    rows = [queue.get() for _ in range(spec["world"])]
    print(json.dumps({"seconds_per_step": max(r["seconds_per_step"] for r in rows),
                      "peak_rss_bytes_per_process": max(r["peak_rss_bytes"] for r in rows),
                      "head_parameters": rows[0]["head_parameters"], "finite": all(r["finite"] for r in rows)}))


def measure(spec: dict) -> dict:
    return run_child(__file__, spec, env={"OMP_NUM_THREADS": "1"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=100_000)
    parser.add_argument("--baseline-classes", type=int, default=1_000)
    parser.add_argument("--backbone", default="test_resnet")
    parser.add_argument("--head", default="arcface")
    parser.add_argument("--batch", type=int, default=128, help="global batch")
    parser.add_argument("--steps", type=int, default=10)
    args = parse_or_run_child(parser, None, child, DEFAULT_OUT)
    if args is None:
        return
    rows = []
    for world in (1, 2):
        for classes in (args.baseline_classes, args.classes):
            spec = {"classes": classes, "world": world, "backbone": args.backbone, "head": args.head,
                    "batch": args.batch, "steps": args.steps}
            rows.append({**spec, **measure(spec)})
    print(f"{args.backbone}, 512-d, {args.head} head, global batch {args.batch}, {args.steps} steps")
    print(f"{'processes':>9}{'classes':>10}{'s/step':>10}{'x baseline':>12}{'peak RSS/proc GiB':>19}")
    for row in rows:
        base = next(r for r in rows if r["world"] == row["world"] and r["classes"] == args.baseline_classes)
        row["ratio_to_baseline"] = row["seconds_per_step"] / base["seconds_per_step"]
        print(f"{row['world']:>9}{row['classes']:>10}{row['seconds_per_step']:>10.3f}{row['ratio_to_baseline']:>12.2f}"
              f"{row['peak_rss_bytes_per_process'] / 2**30:>19.2f}")
    report = {"benchmark": "large_head", "machine": machine(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
