"""Benchmark of the BCT family's per-class computations at face scale (a script, not a test).

Synthetic old and new features for ``--classes`` classes (93,000: MS1M-V3's identities) x ``--images``
images each, ``--dim``-d (512), and, each in a fresh child process whose peak RSS is recorded:

* ``read`` (the baseline): one L2 normalisation of the old features, the floor every method pays;
* ``class_means``: core's ``class_means`` (BCT's old prototypes, the synthesized old classifier);
* ``credible_mask``: core's MixBCT denoising (keep ratio 0.9);
* ``unibct_refine``: compat-unibct's ``refined_prototypes`` (row affinity, ``--memory-mb`` 512);
* ``advbct_boundaries``: compat-advbct's ``class_boundaries`` (centres, IQR-filtered radii).

Each time is also given as a ratio to ``read`` measured in the same run, and each peak RSS as the excess
over ``read``'s (which holds the data and torch itself): small excesses show that no step holds a
class x class or sample x sample matrix. It prints a
table and writes JSON (machine info included) to ``--out``.

Usage:
    python bench/prototypes.py                          # 93,000 classes x 8 images x 512-d
    python bench/prototypes.py --classes 10000 --images 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

from child import machine, parse_or_run_child, run_child

DEFAULT_OUT = Path(__file__).parent / "results" / "prototypes.json"
TASKS = ("read", "class_means", "credible_mask", "unibct_refine", "advbct_boundaries")


def _data(classes: int, images: int, dim: int):
    import torch

    generator = torch.Generator().manual_seed(classes * 31 + images)
    labels = torch.arange(classes).repeat_interleave(images)
    centres = torch.randn(classes, dim, generator=generator)
    old = centres[labels] + 0.5 * torch.randn(len(labels), dim, generator=generator)
    new = centres[labels] + 0.5 * torch.randn(len(labels), dim, generator=generator)
    return old, new, labels


def _run(task: str, old, new, labels, classes: int) -> dict:
    import torch

    if task == "read":
        return {"norm": float(torch.nn.functional.normalize(old, dim=1).sum())}
    if task == "class_means":
        from compat_core.old_space import class_means

        means, _ = class_means(old, labels, classes)
        return {"shape": list(means.shape)}
    if task == "credible_mask":
        from compat_core.old_space import credible_mask

        return {"credible": int(credible_mask(old, labels, 0.9).sum())}
    if task == "unibct_refine":
        from compat_unibct.refine import refined_prototypes

        return {"shape": list(refined_prototypes(new, old, labels, classes, memory_mb=512).shape)}
    from compat_advbct.losses import class_boundaries

    _, _, has = class_boundaries(old, labels, classes)
    return {"with_boundary": int(has.sum())}


def child(spec: dict) -> None:
    """One task on fresh data; prints one JSON line: seconds, peak RSS, the data's own bytes, the output."""
    import torch

    torch.set_num_threads(spec["threads"])
    old, new, labels = _data(spec["classes"], spec["images"], spec["dim"])
    data_bytes = (old.numel() + new.numel()) * 4 + labels.numel() * 8
    start = time.perf_counter()
    output = _run(spec["task"], old, new, labels, spec["classes"])
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    print(json.dumps({"seconds": seconds, "peak_rss_bytes": peak, "data_bytes": data_bytes, "output": output}))


def measure(task: str, args) -> dict:
    return run_child(__file__, {"task": task, "classes": args.classes, "images": args.images, "dim": args.dim,
                                "threads": args.threads})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=93000)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    args = parse_or_run_child(parser, None, child, DEFAULT_OUT)
    if args is None:
        return
    results = {task: measure(task, args) for task in TASKS}
    floor = results["read"]["seconds"]
    print(f"{args.classes} classes x {args.images} images x {args.dim}-d, {args.threads} threads")
    print(f"{'task':<20}{'seconds':>10}{'x read':>10}{'peak RSS GiB':>14}{'above read GiB':>16}")
    for task, result in results.items():
        result["ratio_to_read"] = result["seconds"] / floor
        result["peak_above_read_bytes"] = result["peak_rss_bytes"] - results["read"]["peak_rss_bytes"]
        print(f"{task:<20}{result['seconds']:>10.2f}{result['ratio_to_read']:>10.1f}"
              f"{result['peak_rss_bytes'] / 2**30:>14.2f}{result['peak_above_read_bytes'] / 2**30:>16.2f}")
    report = {"benchmark": "prototypes", "classes": args.classes, "images_per_class": args.images, "dim": args.dim,
              "threads": args.threads, "machine": machine(), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
