"""``compat study run --dry-run``: the plan, what is already done, and a time estimate from a measured step.

The estimate times a few real training steps (forward and backward of the new model's backbone on a
batch of the study's size, plus the old model's forward where a run has one) on this machine and
multiplies by every run's step count. Method-specific extra work (BCT's row fit, FCT's side model)
is not included, so the estimate is a lower bound; the output says so.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from compat_core.study.plan import PlannedRun, plan_pairs, plan_runs
from compat_core.study.runner import run_status
from compat_core.study.spec import StudySpec
from compat_core.tables import add_column


def print_plan(console, spec: StudySpec, study_dir: str | Path, only: list[str] | None) -> None:
    from rich import box
    from rich.table import Table

    from compat_core.study.runner import resolve_runs

    runs = plan_runs(spec, study_dir, only)
    resolved = resolve_runs(runs)  # a bad option shows in the dry run, not an hour into the real one
    table = Table(title=f"study {spec.name}: {len(runs)} runs", box=box.SIMPLE_HEAD, title_justify="left")
    # run names whole on one line (they are what --only and the run folders use); the rest folds
    add_column(table, "run", min_width=max((len(run.name) for run in runs), default=0))
    for column in ("method", "seed", "against", "status"):
        add_column(table, column)
    for run in runs:
        table.add_row(run.name, run.method, str(run.seed), run.against, run_status(run))
    console.print(table)
    pairs = plan_pairs(spec, runs)
    console.print(f"{len(pairs)} {spec.evaluation.task} evaluations on {', '.join(spec.evaluation.splits)}; "
                  f"{len(spec.seeds.old) * len(spec.seeds.new)} seed pairs per method.", highlight=False)
    todo = [run for run in runs if run_status(run) != "done"]
    busy = _busy()
    seconds = estimate_seconds(spec, todo, resolved)
    console.print(f"estimated training time of the {len(todo)} runs left: {_duration(seconds)} on this "
                  f"machine (measured steps x step counts; method-specific extra work not included, so "
                  f"expect more){busy}.", highlight=False)


def estimate_seconds(spec: StudySpec, runs: list[PlannedRun], resolved: dict) -> float:
    """Sum over ``runs`` of steps x the measured seconds per step of their configuration."""
    from compat_core.data import open_dataset
    from compat_core.data.selection import parse_classes

    keep = 1.0 - spec.validation.fraction  # the holdout is not written yet in a dry run
    sizes: dict[str | None, int] = {}
    per_step: dict[tuple, float] = {}
    total = 0.0
    for run in runs:
        common, _ = resolved[run.name]
        if common.classes not in sizes:
            data = open_dataset(spec.data, split="train", image_size=8)
            sizes[common.classes] = len(parse_classes(common.classes, data))
        if _fits_once(run.method):  # embeds a sample with its frozen models, then fits in seconds
            samples = min(sizes[common.classes] * keep, getattr(resolved[run.name][1], "fit_samples", 10000))
            steps = math.ceil(samples / common.batch_size)
            total += steps * measure_step(common, backward=False, cache=per_step)
        else:
            steps = math.ceil(sizes[common.classes] * keep / common.batch_size) * common.epochs
            total += steps * measure_step(common, cache=per_step)
        frozen = [*(run.options.get("old") or []), *([run.options["new"]] if run.options.get("new") else [])]
        for source in frozen:  # old model, teachers, a transformation's reference: each embeds every batch
            old_common, _ = resolved[Path(source).name]
            total += steps * measure_step(old_common, backward=False, cache=per_step)
    return total


def _fits_once(method: str) -> bool:
    from compat_core.plugins import get_host

    return bool(getattr(get_host().methods.lookup(method).get("factory"), "fits_once", False))


def measure_step(common, backward: bool = True, cache: dict | None = None, repeats: int = 3) -> float:
    """Seconds of one training step (or one inference forward) of ``common``'s model, after a warm-up."""
    import torch

    from compat_core.models.embedding import EmbeddingModel, ModelSpec

    key = ("forward" if not backward else "step", common.backbone, common.image_size, common.batch_size,
           common.embedding_dim)
    if cache is not None and key in cache:
        return cache[key]
    spec = ModelSpec.from_options(backbone=common.backbone, embedding_dim=common.embedding_dim,
                                  classes=[str(i) for i in range(10)], head=common.head,
                                  head_scale=common.head_scale, head_margin=common.head_margin,
                                  image_size=common.image_size)
    model = EmbeddingModel(spec)
    images = torch.randint(0, 256, (common.batch_size, 3, common.image_size, common.image_size),
                           dtype=torch.uint8)
    labels = torch.randint(0, 10, (common.batch_size,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    timings = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        if backward:
            out = model(images, labels)
            torch.nn.functional.cross_entropy(out.logits, labels).backward()
            optimizer.step()
            optimizer.zero_grad()
        else:
            with torch.inference_mode():
                model(images)
        timings.append(time.perf_counter() - start)
    seconds = sorted(timings[1:])[len(timings[1:]) // 2]  # the median after the warm-up step
    if cache is not None:
        cache[key] = seconds
    return seconds


def _busy() -> str:
    """A warning when other work was running while the steps were measured (the estimate is then too high)."""
    import os

    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return ""
    cores = os.cpu_count() or 1
    return (f"; the machine was busy while it measured (load {load:.1f} on {cores} cores), so the estimate is "
            f"too high" if load > 0.75 * cores else "")


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
