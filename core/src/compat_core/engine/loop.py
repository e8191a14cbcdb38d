"""The training loop shared by every method.

The engine owns the optimizer, schedule, AMP, gradient clipping, seeding, checkpoint/resume,
logging and DDP; a method only turns a batch into named loss terms.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compat_core.config import MethodConfig, TrainConfig, dump_resolved
from compat_core.engine import checkpoint as ckpt
from compat_core.engine.batches import Augmenter, BatchPlan, iterate
from compat_core.engine.distributed import DistInfo, init_distributed, resolve_device, shutdown_distributed
from compat_core.engine.reporting import Reporter, SilentReporter
from compat_core.engine.rundir import BEST, RunDir, prepare_run_dir, unstarted
from compat_core.engine.schedule import lr_factor
from compat_core.engine.validation import EpochValidator
from compat_core.errors import CompatError
from compat_core.io import append_line, check_writable_folder, write_atomic, write_json, write_text
from compat_core.methods.base import Batch, Method, MethodContext
from compat_core.runs import read_history


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``kept_previous``: an --overwrite run stopped before its first checkpoint, so
    the run it was to replace is kept unchanged."""

    def __init__(self, kept_previous: bool = False):
        super().__init__()
        self.kept_previous = kept_previous


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict[str, Any]]


def train(method_name: str, config: TrainConfig, options: MethodConfig, *, resume: bool = False,
          overwrite: bool = False, reporter: Reporter | None = None) -> TrainResult:
    """Train ``method_name`` with validated configs and write the run directory.

    Example:
        >>> from compat_core.methods.baseline import BaselineConfig
        >>> cfg = TrainConfig(data="digits", out="runs/old", backbone="test_resnet", epochs=1)
        >>> train("baseline", cfg, BaselineConfig())  # doctest: +SKIP
    """
    reporter = reporter or Reporter()
    device = resolve_device(config.device)
    dist_info = init_distributed(device)
    if not dist_info.is_main:  # one progress display, from rank 0
        reporter.close()
        reporter = SilentReporter()
    if dist_info.enabled and device.type == "cuda":
        device = torch.device(f"cuda:{dist_info.local_rank}")
    try:
        return _Trainer(method_name, config, options, device, dist_info, reporter).run(resume, overwrite)
    finally:
        reporter.close()
        shutdown_distributed(dist_info)


class _Trainer:
    def __init__(self, method_name, config, options, device, dist_info: DistInfo, reporter):
        self.method_name, self.config, self.options = method_name, config, options
        self.device, self.dist, self.reporter = device, dist_info, reporter
        self.resolved_yaml = dump_resolved(method_name, config, options)

    # -- set-up ------------------------------------------------------------------------------
    def run(self, resume: bool, overwrite: bool) -> TrainResult:
        cfg = self.config
        if resume and unstarted(Path(cfg.out)):  # killed before its first checkpoint: nothing to resume
            self.reporter.note(f"{cfg.out} stopped before its first epoch finished; training it from the start")
            resume = False
        if cfg.batch_size % self.dist.world_size:
            raise CompatError(f"--batch-size {cfg.batch_size} is not divisible by the {self.dist.world_size} "
                              f"processes. Use a multiple of {self.dist.world_size}.")
        # Validate every input, the method's own included, before touching --out: bad input must not
        # cost an existing run.
        if self.dist.is_main:
            check_writable_folder(cfg.out, "--out")
        data = self._load_data()
        old_models = self._load_old_models()
        self.validator = EpochValidator(cfg, old_models)
        self.plan = BatchPlan(len(data), cfg.batch_size, cfg.seed, self.dist.world_size, self.dist.rank)
        total = cfg.epochs * self.plan.steps_per_epoch
        torch.manual_seed(cfg.seed)
        ctx = MethodContext(config=cfg, data=data, old_models=old_models, device=self.device,
                            method_name=self.method_name, world_size=self.dist.world_size, rank=self.dist.rank,
                            steps_per_epoch=self.plan.steps_per_epoch, total_steps=total, resumed=resume)
        self.method = self._build_method(ctx)
        self.folder = RunDir(Path(cfg.out), Path(cfg.out), resume)
        if self.dist.is_main:
            self.folder = prepare_run_dir(cfg.out, self.resolved_yaml, resume=resume, overwrite=overwrite,
                                          inputs=(*cfg.old, cfg.data))
        self.dist.barrier()
        self.run_dir = self.folder.write
        if getattr(self.method, "fits_once", False):
            return self._fit_once()
        self.optimizer = self._build_optimizer()
        self.lr_at = lambda step: lr_factor(step, total_steps=total, steps_per_epoch=self.plan.steps_per_epoch,
                                            config=cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_at)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and self.device.type == "cuda")
        start_epoch, history = self._restore() if resume else (0, [])
        if (not resume or self.folder.extends_from) and self.dist.is_main:
            write_text(self.run_dir / "config.yaml", self.resolved_yaml)
        self.data, self.history = data, history
        self.best = max((r["val"]["value"] for r in history if "val" in r), default=None)
        self.reporter.start(run_dir=str(self.folder.path), method=self.method_name, epochs=cfg.epochs,
                            start_epoch=start_epoch, steps_per_epoch=self.plan.steps_per_epoch,
                            num_images=len(data), device=str(self.device))
        self._notes(start_epoch)
        try:
            for epoch in range(start_epoch, cfg.epochs):
                self._train_epoch(epoch)
        except BaseException as exc:
            if not self.folder.staged:
                raise
            self.folder.abandon()
            if isinstance(exc, KeyboardInterrupt):
                raise TrainingInterrupted(kept_previous=True) from None
            raise
        if self.dist.is_main:
            self._save_final_model()
        self.dist.barrier()
        return TrainResult(self.folder.path, self.history)

    def _fit_once(self) -> TrainResult:
        """A method that fits itself in one call (``Method.fits_once``): no optimizer, no epochs, nothing to
        resume (a killed fit starts again, and seeds make it end the same)."""
        if self.dist.enabled:
            raise CompatError(f"`compat train {self.method_name}` fits in one process; run it without torchrun.")
        self.reporter.note(f"fitting {self.method_name} -> {self.folder.path} on {self.device}")
        for note in getattr(self.method, "notes", ()):
            self.reporter.note(note)
        started = time.perf_counter()
        try:
            write_text(self.run_dir / "config.yaml", self.resolved_yaml)  # a killed fit is then `unstarted`
            fit = dict(self.method.fit())
            record = {"epoch": 1, "epochs": 1, "loss": {"total": float(fit.pop("loss"))}, "fit": fit,
                      "seconds": time.perf_counter() - started}
            append_line(self.run_dir / "history.jsonl", json.dumps(record))
            from compat_core.models.run import save_model

            save_model(self.method.export(), self.run_dir)
        except BaseException:
            self.folder.abandon()
            raise
        self.folder.commit()
        self.history = [record]
        return TrainResult(self.folder.path, self.history)

    def _notes(self, start_epoch: int) -> None:
        cfg = self.config
        for note in getattr(self.method, "notes", ()):
            self.reporter.note(note)
        if self.folder.extends_from:
            self.reporter.note(f"extending the run from {self.folder.extends_from} to {cfg.epochs} epochs: the "
                               f"learning rate now follows the {cfg.epochs}-epoch schedule, so epoch {start_epoch + 1} "
                               f"starts at lr {self.optimizer.param_groups[0]['lr']:.4g} (an uninterrupted "
                               f"{cfg.epochs}-epoch run would differ in its first {self.folder.extends_from})")
        if self.folder.staged:
            self.reporter.note(f"the run in {cfg.out} is replaced once this run's first epoch is saved; until then "
                               f"it stays as it is")
        if cfg.old and getattr(self.method, "uses_old_model", None) is False and self.dist.is_main:
            from compat_core.config import warn

            warn(f"--old {', '.join(cfg.old)} is ignored: {self.method_name} trains without an old model")

    def _load_data(self):
        from compat_core.data import open_dataset
        from compat_core.data.selection import parse_classes

        cfg = self.config
        data = parse_classes(cfg.classes, open_dataset(cfg.data, split=cfg.split, image_size=cfg.image_size))
        counts = np.bincount(np.asarray(data.labels), minlength=len(data.classes))
        empty = [data.classes[c] for c in np.flatnonzero(counts == 0)]
        if empty:  # a class the head must learn without one image: its logit and prototypes mean nothing
            raise CompatError(f"the training data ({cfg.data}, split {cfg.split}, classes {cfg.classes or 'all'}) has "
                              f"no image of {len(empty)} of its {len(data.classes)} classes ({', '.join(empty[:5])}"
                              f"{', ...' if len(empty) > 5 else ''}). Choose classes that have images in this split "
                              f"(--classes), or remove the empty classes from the data.")
        if len(data) < self.dist.world_size:
            raise CompatError(f"the training data has {len(data)} images, fewer than the processes. Check --classes.")
        return data

    def _load_old_models(self) -> list:
        from compat_core.models.old import FeaturesOnlyOld, load_old_model

        features = getattr(self.options, "old_features", None)
        if not self.config.old and features:  # the old model's features, without the model (MixBCT's way)
            return [FeaturesOnlyOld(features, self.method_name)]
        return [load_old_model(source, self.device) for source in self.config.old]

    def _build_method(self, ctx: MethodContext) -> Method:
        from compat_core.plugins import get_host

        factory = get_host().methods.lookup(self.method_name).get("factory")
        method = factory(self.options, ctx).to(self.device)
        self.module = method
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # buffers DDP must not broadcast from rank 0 before every forward (a queue every process fills
            # identically, state synchronised once per epoch instead)
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(method, unbroadcast_buffers(method))
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.module = DistributedDataParallel(method, device_ids=ids,
                                                  find_unused_parameters=method.find_unused_parameters)
        return method

    def _build_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        groups = self.method.param_groups(cfg.lr, cfg.weight_decay)
        if not any(g["params"] for g in groups):
            raise CompatError(f"method {self.method_name} has nothing to train (no parameter requires grad).")
        for group in groups:
            group.setdefault("initial_lr", group["lr"])
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _restore(self) -> tuple[int, list[dict[str, Any]]]:
        state = ckpt.load_checkpoint(self.run_dir, self.device)
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        epoch = int(state["epoch"])
        # the lr of the next step, from the schedule of this run's --epochs (equal to the saved one unless the
        # run is extended: then the finished run's last lr, about 0 at the end of a cosine, must not carry on)
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs, strict=True):
            group["lr"] = base * self.lr_at(self.scheduler.last_epoch)
        history = read_history(self.run_dir / "history.jsonl", strict=False)[:epoch]
        if self.dist.is_main:  # drop lines of an epoch that was running when the run was killed
            write_text(self.run_dir / "history.jsonl", "".join(json.dumps(r) + "\n" for r in history))
        return epoch, history

    # -- the loop ----------------------------------------------------------------------------
    def _train_epoch(self, epoch: int) -> None:
        cfg, plan = self.config, self.plan
        self.method.train()
        self.method.on_epoch_start(epoch)
        if self.dist.enabled:
            self._sync_epoch_buffers()
        batches = plan.global_batches(epoch)
        augment = Augmenter(cfg.augment, cfg.image_size, cfg.seed)
        draws = augment.draws(epoch, len(batches), plan.batch_size)
        local = [b[plan.local(b)].numpy() for b in batches]
        averages = StepAverages()
        start, seen = time.perf_counter(), 0
        for step, (images, labels, indices) in enumerate(iterate(self.data, local, cfg.workers)):
            shifts, flips = draws[step]
            part = plan.local(batches[step])
            images = augment(images.to(self.device, non_blocking=True), shifts[part], flips[part])
            batch = Batch(images, labels.to(self.device), indices.to(self.device), epoch=epoch,
                          step=epoch * plan.steps_per_epoch + step)
            terms = {name: torch.as_tensor(value).detach() for name, value in self._step(batch).items()}
            averages.add(terms)
            seen += len(batch) * self.dist.world_size
            values = {k: float(v) for k, v in terms.items()}
            if not self._all_finite(values["total"]):
                self._fail_nan(epoch, step)
            self.reporter.step(epoch, step, len(batches), values, seen / max(time.perf_counter() - start, 1e-9))
        seconds = time.perf_counter() - start
        # over the global batch, as one process would log it, not this rank's share
        means = averages.means(self.dist if self.dist.enabled else None)
        self.method.on_epoch_end(epoch)
        scalars = set(getattr(self.method, "scalars", ()))
        record = {"epoch": epoch + 1, "epochs": cfg.epochs, "lr": self.optimizer.param_groups[0]["lr"],
                  "loss": {k: v for k, v in means.items() if k not in scalars},
                  "images_per_sec": seen / seconds, "seconds": seconds}
        if scalars & set(means):
            record["scalars"] = {k: v for k, v in means.items() if k in scalars}
        warnings = [str(w) for w in self.method.epoch_warnings(epoch, means)]
        if warnings:
            record["warnings"] = warnings
        kept = None
        if self.dist.is_main:
            self._validate(record)
            self._save_checkpoint(epoch + 1)
            append_line(self.run_dir / "history.jsonl", json.dumps(record))
            if self.folder.staged:  # the new run has a checkpoint: now it replaces the previous one
                kept = self.folder.commit()
                self.run_dir = self.folder.path
        self.history.append(record)
        self.dist.barrier()
        self.reporter.epoch_end(record)
        for line in record.get("warnings", ()):
            self.reporter.warning(line)
        if kept:
            self.reporter.note(f"replaced the previous run in {self.run_dir}; kept the files it did not write: "
                               f"{', '.join(kept)}")

    def _validate(self, record: dict[str, Any]) -> None:
        """Score the epoch on the validation split; with --keep best, save the weights of a new best."""
        if not self.validator.enabled:
            return
        record["val"] = self.validator(self.method.export())
        if self.best is None or record["val"]["value"] > self.best:
            self.best = record["val"]["value"]
            record["val"]["best"] = True
            if self.config.keep == "best":
                from compat_core.models.run import save_model

                save_model(self.method.export(), self.run_dir / BEST)

    def _save_final_model(self) -> None:
        from compat_core.models.run import SPEC, WEIGHTS, save_model

        save_model(self.method.export(), self.run_dir)
        if self.config.keep != "best" or not (self.run_dir / BEST / WEIGHTS).is_file():
            return
        best = next(r for r in reversed(self.history) if r.get("val", {}).get("best"))
        spec = json.loads((self.run_dir / BEST / SPEC).read_text())
        spec.setdefault("extra", {})["kept_epoch"] = {"epoch": best["epoch"], "metric": best["val"]["metric"],
                                                      "split": best["val"]["split"], "value": best["val"]["value"]}
        write_atomic(self.run_dir / WEIGHTS, lambda tmp: shutil.copyfile(self.run_dir / BEST / WEIGHTS, tmp))
        write_json(self.run_dir / SPEC, spec)
        self.reporter.note(f"kept the weights of epoch {best['epoch']} (val {best['val']['metric']} "
                           f"{best['val']['value']:.4f}), the best of {len(self.history)}")

    def _step(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        with torch.autocast(self.device.type, dtype=amp_dtype, enabled=cfg.amp):
            terms = self.module(batch)
        if "total" not in terms:
            raise RuntimeError(f"method {self.method_name} returned no 'total' loss term")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms["total"]).backward()
        if cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.method.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return terms

    def _sync_epoch_buffers(self) -> None:
        """Rank 0's value of each ``Method.synced_buffers`` entry, once per epoch, after ``on_epoch_start``."""
        buffers = dict(self.method.named_buffers())
        for name in getattr(self.method, "synced_buffers", ()):
            torch.distributed.broadcast(buffers[name], src=0)

    def _all_finite(self, loss: float) -> bool:
        """Whether every process's loss is finite, so all processes stop together on NaN."""
        finite = math.isfinite(loss)
        if self.dist.enabled:
            flag = torch.tensor([0.0 if finite else 1.0], device=self.device)
            torch.distributed.all_reduce(flag)
            finite = flag.item() == 0.0
        return finite

    def _save_checkpoint(self, epochs_done: int) -> None:
        ckpt.save_checkpoint(self.run_dir, {
            "epoch": epochs_done, "method": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "rng": ckpt.rng_state()})

    def _fail_nan(self, epoch: int, step: int) -> None:
        kept = (f"the last good checkpoint (after epoch {epoch}) is kept in {self.run_dir / 'checkpoint'}"
                if epoch else "no checkpoint was written yet")
        raise CompatError(f"the loss became NaN or infinite at epoch {epoch + 1}, step {step + 1}; {kept}. "
                          f"Lower --lr, add --grad-clip 5, or check the data, then retry.")


class StepAverages:
    """Per-name sums and step counts of the values a method returns, so that a term missing on some steps
    (or on some processes) is averaged over the steps that produced it."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._pending: dict[str, torch.Tensor] = {}

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for name, value in terms.items():
            previous = self._pending.get(name)
            self._pending[name] = value.float() if previous is None else previous + value.float()
            self.counts[name] = self.counts.get(name, 0) + 1

    def means(self, dist_info: DistInfo | None = None) -> dict[str, float]:
        """``sum / count`` per name; with ``dist_info``, over every process (names may differ by process)."""
        sums = {k: v for k, v in self._pending.items()}
        counts = dict(self.counts)
        if dist_info is not None:
            names: list[list[str]] = [[] for _ in range(dist_info.world_size)]
            torch.distributed.all_gather_object(names, sorted(sums))
            union = sorted(set().union(*names))
            device = next(iter(sums.values())).device if sums else torch.device("cpu")
            stacked = torch.stack([torch.stack([sums.get(k, torch.zeros((), device=device)).reshape(()).float(),
                                                torch.tensor(float(counts.get(k, 0)), device=device)])
                                   for k in union])
            torch.distributed.all_reduce(stacked)
            return {k: float(total) / float(count) for k, (total, count) in zip(union, stacked.tolist(), strict=True)
                    if count > 0}
        return {k: float(v) / counts[k] for k, v in sums.items()}


def unbroadcast_buffers(method: Method) -> list[str]:
    """The method's ``local_buffers`` and ``synced_buffers``, checked against its named buffers."""
    names = [*getattr(method, "local_buffers", ()), *getattr(method, "synced_buffers", ())]
    known = dict(method.named_buffers())
    unknown = [name for name in names if name not in known]
    if unknown:
        raise RuntimeError(f"method {type(method).__name__} declares buffer {unknown[0]!r} in local_buffers or "
                           f"synced_buffers, but has no such buffer (its buffers: {', '.join(known) or 'none'}).")
    return names

