"""Conformance kit: lets a method plugin test itself the way compat's own plugins do.

Use it from the plugin's test suite::

    # tests/test_conformance.py of a third-party plugin
    import compat_mymethod.plugin
    from compat_core.testing import run_conformance

    def test_conformance(tmp_path):
        run_conformance(compat_mymethod.plugin, "mymethod", tmp_path, needs_old=True)

The checks: the plugin registers cleanly next to core's built-in plugin; its option names do not
clash with the common training options; its config schema round-trips through YAML; one training
step on a tiny model and tiny data gives finite named loss terms with ``total``; a one-epoch run
exports a model that loads and embeds; a two-epoch run killed after its first epoch and resumed ends
with exactly the weights of an uninterrupted one (the method's state survives ``--resume``); the
exported model, written as a run directory and loaded back, embeds as it did in memory, and exports to
ONNX for serving with onnxruntime's embeddings within 1e-4 of compat's; and, opt-in
(``distributed=True`` or ``"exact"``), two gloo processes train it. Everything runs on the CPU in seconds (timm's ``test_resnet`` on scikit-learn's bundled digits).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

from compat_core.config import MethodConfig, TrainConfig, dump_resolved, resolve_config
from compat_core.plugins import PluginHost, PluginInfo, get_host, reset_host

TINY = {"data": "digits", "backbone": "test_resnet", "embedding_dim": 16, "image_size": 16, "epochs": 1,
        "batch_size": 32, "lr": 0.05, "device": "cpu"}


@contextmanager
def plugin_host_with(plugin: Any, distribution: str = "plugin-under-test"):
    """Make ``plugin`` visible to compat (beside every installed plugin) for the duration."""
    previous = get_host()
    host = PluginHost()
    import compat_core.plugin as core_plugin

    host.add_plugin(core_plugin, PluginInfo("core", "compat-core", "test", "compat_core.plugin"))
    if plugin is not core_plugin:
        for info in previous.plugins:  # keep other installed plugins a method may rely on
            if info.loaded and info.distribution not in ("compat-core", distribution):
                module = previous.pm.get_plugin(f"{info.distribution}:{info.name}")
                if module is not None and module is not plugin:
                    host.add_plugin(module, PluginInfo(info.name, info.distribution, info.version, info.entry_point))
        host.add_plugin(plugin, PluginInfo(distribution, distribution, "test", repr(plugin)))
    broken = [p for p in host.plugins if p.error]
    if broken:
        raise AssertionError(f"plugin failed to register: {broken[0].error}")
    reset_host(host)
    try:
        yield host
    finally:
        reset_host(previous)


def check_registration(host: PluginHost, method: str) -> type[MethodConfig]:
    entry = host.methods.lookup(method)
    assert entry.summary, f"method {method!r} needs a one-line summary"
    config_cls = entry.get("config")
    assert issubclass(config_cls, MethodConfig), "the config must subclass compat_core.config.MethodConfig"
    clash = set(config_cls.model_fields) & set(TrainConfig.model_fields)
    assert not clash, f"options clash with the common training options: {sorted(clash)}"
    for name, field in config_cls.model_fields.items():
        assert field.description, f"option {name!r} needs a description (it is the --help text)"
    return config_cls


def check_config_round_trip(method: str, config_cls: type[MethodConfig], tmp_path: Path,
                            options: dict[str, Any] | None = None) -> None:
    common, own = resolve_config(method, config_cls, flags={**TINY, "out": str(tmp_path / "x"), **(options or {})})
    file = tmp_path / f"{method}-config.yaml"
    file.write_text(dump_resolved(method, common, own))
    common2, own2 = resolve_config(method, config_cls, config_file=str(file))
    assert (common2, own2) == (common, own), "config does not survive dump_resolved -> --config"
    config_cls.model_json_schema()


def _build(method: str, common: TrainConfig, own: MethodConfig):
    """``(method module, tiny batch)`` built as the engine builds them."""
    import torch

    from compat_core.data import open_dataset
    from compat_core.data.selection import parse_classes
    from compat_core.methods.base import Batch, MethodContext
    from compat_core.models.old import load_old_model

    data = parse_classes(common.classes, open_dataset(common.data, common.split, common.image_size))
    ctx = MethodContext(config=common, data=data, old_models=[load_old_model(o) for o in common.old],
                        method_name=method, steps_per_epoch=1, total_steps=common.epochs)
    torch.manual_seed(0)
    module = get_host().methods.lookup(method).get("factory")(own, ctx)
    positions = list(range(min(common.batch_size, len(data))))
    batch = Batch(data.load_images(positions), torch.as_tensor(data.labels[positions]),
                  torch.as_tensor(data.base_indices[positions]))
    return module, batch


def check_one_step(method: str, common: TrainConfig, own: MethodConfig) -> dict[str, float]:
    """Build the method as the engine does and run one optimisation step on one tiny batch."""
    import math

    import torch

    module, batch = _build(method, common, own)
    if getattr(module, "fits_once", False):  # fitted in one call, not by steps: the fit's objective is finite
        record = module.fit()
        assert "loss" in record and math.isfinite(float(record["loss"])), f"fit() must return a finite 'loss': {record}"
        return {"total": float(record["loss"])}
    module.train()
    module.on_epoch_start(0)
    optimizer = torch.optim.SGD(module.param_groups(common.lr, 0.0), lr=common.lr)
    terms = module(batch)
    assert "total" in terms, "a method must return a dict of loss terms with 'total'"
    terms["total"].backward()
    optimizer.step()
    values = {k: float(torch.as_tensor(v).detach()) for k, v in terms.items()}
    assert all(math.isfinite(v) for v in values.values()), f"non-finite loss terms: {values}"
    undeclared = [n for n in getattr(module, "scalars", ()) if n == "total"]
    assert not undeclared, "'total' cannot be a logged-only scalar"
    return values


def check_export_reload(method: str, common: TrainConfig, own: MethodConfig, folder: Path) -> None:
    """The exported module, written as a run directory and loaded back, embeds a batch as it did in memory."""
    import torch

    from compat_core.models.run import load_model, save_model

    module, batch = _build(method, common, own)
    exported = module.export().eval()
    save_model(exported, folder)
    loaded = load_model(folder).eval()
    with torch.no_grad():
        before, after = exported(batch.images).embedding, loaded(batch.images).embedding
    assert before.shape == after.shape, f"the reloaded model embeds in {after.shape}, not {before.shape}"
    assert torch.allclose(before, after, atol=1e-5, rtol=1e-5), (
        f"the reloaded model embeds differently (max difference {float((before - after).abs().max()):.3g}): "
        f"state of the exported module is not in its safetensors weights or model.json")


def check_serving_export(method: str, run: Path, folder: Path) -> None:
    """The run exports to ONNX and the file, run by onnxruntime, embeds as compat does (within 1e-4).

    Skipped with a warning where the ``export`` extra (onnx, onnxscript, onnxruntime) is not installed."""
    import importlib.util
    import warnings

    if any(importlib.util.find_spec(name) is None for name in ("onnx", "onnxscript", "onnxruntime")):
        warnings.warn(f"{method}: ONNX export not checked (install compat-core[export])", stacklevel=2)
        return
    from compat_core.export import export_model

    report = export_model(str(run), folder / f"{method}.onnx")
    assert report["max_abs_difference"] <= 1e-4, report


def check_export(method: str, common: TrainConfig, own: MethodConfig) -> None:
    import torch

    from compat_core.engine import train
    from compat_core.models.run import load_model

    result = train(method, common, own)
    model = load_model(result.run_dir)
    out = model(torch.zeros(2, 3, common.image_size, common.image_size, dtype=torch.uint8))
    assert out.embedding.shape[0] == 2 and torch.isfinite(out.embedding).all()


class _Killed(BaseException):
    """Stands in for SIGKILL; a BaseException so nothing in the engine can swallow it."""


def check_resume(method: str, common: TrainConfig, own: MethodConfig) -> None:
    """Two epochs uninterrupted against one epoch, a kill, and ``--resume``: identical exported weights."""
    import torch
    from safetensors.torch import load_file

    from compat_core.engine import loop, train

    base = Path(common.out)
    full = common.model_copy(update={"out": str(base.with_name(base.name + "-full")), "epochs": 2})
    killed = full.model_copy(update={"out": str(base.with_name(base.name + "-killed"))})
    hook = "_fit_once" if getattr(get_host().methods.lookup(method).get("factory"), "fits_once", False) \
        else "_train_epoch"
    original = getattr(loop._Trainer, hook)

    def dies_in_second_epoch(self, epoch):
        if epoch == 1:
            raise _Killed()
        return original(self, epoch)

    def dies_after_fitting(self):  # a method fitted in one call: killed once fitted, before anything is saved
        fit = self.method.fit

        def dying():
            fit()
            raise _Killed()
        self.method.fit = dying
        return original(self)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one intra-op thread: CPU kernels are run-to-run deterministic
    try:
        train(method, full, own)
        setattr(loop._Trainer, hook, dies_after_fitting if hook == "_fit_once" else dies_in_second_epoch)
        try:
            train(method, killed, own)
        except _Killed:
            pass
        finally:
            setattr(loop._Trainer, hook, original)
        assert not (Path(killed.out) / "model.safetensors").exists(), "the killed run should not have finished"
        train(method, killed, own, resume=True)
    finally:
        torch.set_num_threads(threads)
    expected = load_file(Path(full.out) / "model.safetensors")
    resumed = load_file(Path(killed.out) / "model.safetensors")
    assert expected.keys() == resumed.keys()
    differing = [k for k in expected if not torch.equal(expected[k], resumed[k])]
    assert not differing, (f"a run resumed after epoch 1 differs from the uninterrupted run in {differing[:3]}: "
                           f"state the method keeps outside registered buffers is lost on --resume")


def _distributed_worker(rank: int, plugin_name: str, distribution: str, method: str, common: TrainConfig,
                        own: MethodConfig, port: int) -> None:
    import importlib
    import os

    import torch

    from compat_core.engine import train

    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    with plugin_host_with(importlib.import_module(plugin_name), distribution):
        train(method, common, own)


def check_distributed(plugin: Any, distribution: str, method: str, common: TrainConfig, own: MethodConfig, *,
                      equal_to_single: bool = False) -> None:
    """Two gloo processes train one epoch; with ``equal_to_single``, to one process's weights (1e-4 relative)."""
    import json
    import socket

    import torch
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    from compat_core.engine import train

    base = Path(common.out)
    settings = {"epochs": 1, "augment": "none", "backbone": "test_vit", "image_size": 16, "batch_size": 16}
    ddp = common.model_copy(update={**settings, "out": str(base.with_name(base.name + "-ddp"))})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.start_processes(_distributed_worker, args=(plugin.__name__, distribution, method, ddp, own, port), nprocs=2,
                       join=True, start_method="spawn")
    history = [json.loads(line) for line in (Path(ddp.out) / "history.jsonl").read_text().splitlines()]
    assert len(history) == 1 and all(v == v for v in history[0]["loss"].values()), history
    if equal_to_single:
        one = ddp.model_copy(update={"out": str(base.with_name(base.name + "-one"))})
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            train(method, one, own)
        finally:
            torch.set_num_threads(threads)
        two, single = load_file(Path(ddp.out) / "model.safetensors"), load_file(Path(one.out) / "model.safetensors")
        for key, value in single.items():
            scale = max(float(value.abs().max()), 1e-3)
            assert float((two[key] - value).abs().max()) <= 1e-4 * scale, (
                f"{key}: 2 processes and 1 process on the global batch disagree; gather what the loss compares "
                f"across processes (compat_core.distributed) or declare the method not exact")


def train_old_model(tmp_path: Path, classes: str = "0-4", seed: int = 1) -> str:
    """A tiny baseline old model for methods that need ``--old``."""
    from compat_core.engine import train
    from compat_core.methods.configs import BaselineConfig

    out = tmp_path / f"old-{classes.replace(',', '_')}-{seed}"
    if not (out / "model.json").exists():
        train("baseline", TrainConfig(**{**TINY, "out": str(out), "classes": classes, "seed": seed}),
              BaselineConfig())
    return str(out)


def run_conformance(plugin: Any, method: str, tmp_path: str | Path, *, needs_old: bool = False,
                    options: dict[str, Any] | None = None, distribution: str = "plugin-under-test",
                    old_run: str | Path | None = None, distributed: bool | str = False) -> None:
    """Run every check for ``method`` of ``plugin``; raises AssertionError on the first failure.

    ``old_run`` reuses an existing old-model run (e.g. a session fixture) instead of training one.
    ``distributed=True`` adds the two-process check (gloo, CPU, about a minute): one epoch under DDP
    ends with finite losses and an exported model; ``distributed="exact"`` also demands the weights of
    one process trained on the global batch (for methods without per-process randomness; the check
    uses ``test_vit``, which has no BatchNorm, and no augmentation).
    """
    tmp_path = Path(tmp_path)
    with plugin_host_with(plugin, distribution) as host:
        config_cls = check_registration(host, method)
        check_config_round_trip(method, config_cls, tmp_path, options)
        flags = {**TINY, "out": str(tmp_path / f"run-{method}"), **(options or {})}
        if needs_old:
            flags["old"] = [str(old_run) if old_run else train_old_model(tmp_path)]
        common, own = resolve_config(method, config_cls, flags=flags)
        check_one_step(method, common, own)
        check_export(method, common, own)
        check_export_reload(method, common, own, tmp_path / f"reload-{method}")
        check_serving_export(method, tmp_path / f"reload-{method}", tmp_path)
        check_resume(method, common, own)
        if distributed:
            check_distributed(plugin, distribution, method, common, own, equal_to_single=distributed == "exact")
