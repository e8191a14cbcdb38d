"""The Method surface the engine offers: steps_per_epoch / total_steps / resumed in the context, epoch and
global step on each batch, logged-only scalars, terms missing on some steps averaged over the steps that
returned them, epoch warnings printed and kept in the history, and declared buffers checked by name."""

from __future__ import annotations

import json

import pytest
import torch
from compat_core.config import MethodConfig, TrainConfig
from compat_core.engine import train
from compat_core.engine.loop import StepAverages, unbroadcast_buffers
from compat_core.methods.base import Method
from compat_core.plugins import get_host
from compat_core.registry import Entry

BATCH = 128  # digits train: 1077 images -> 8 steps per epoch
SEEN: dict[str, list] = {}


class Probe(Method):
    """CE, plus an ``odd`` term only on odd global steps and a logged-only ``fill`` scalar."""

    config_class = MethodConfig
    scalars = ("fill",)
    local_buffers = ("queue",)

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.model = ctx.build_model()
        self.register_buffer("queue", torch.zeros(4))
        SEEN["ctx"] = [ctx.steps_per_epoch, ctx.total_steps, ctx.resumed]
        SEEN["steps"] = []

    def forward(self, batch):
        out = self.model(batch.images, batch.targets)
        ce = torch.nn.functional.cross_entropy(out.logits, batch.targets)
        SEEN["steps"].append((batch.epoch, batch.step))
        terms = {"total": ce, "ce": ce, "fill": torch.tensor(float(batch.step))}
        if batch.step % 2:
            terms["odd"] = torch.tensor(float(batch.step))
        return terms

    def epoch_warnings(self, epoch, means):
        return [f"fill reached {means['fill']:g} in epoch {epoch + 1}"] if means["fill"] > 10 else []


@pytest.fixture
def probe_method():
    registry = get_host().methods
    registry.add(Entry("method", "probe", "tests", options={"factory": Probe, "config": MethodConfig}))
    yield "probe"
    registry._entries.pop("probe")


def test_context_batches_scalars_and_partial_terms(probe_method, tmp_path, capsys):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = TrainConfig(data="digits", out=str(tmp_path / "run"), backbone="test_resnet", epochs=2,
                             batch_size=BATCH, image_size=8, augment="none", lr=0.05, device="cpu")
        train(probe_method, config, MethodConfig())
    finally:
        torch.set_num_threads(before)
    assert SEEN["ctx"] == [8, 16, False]
    assert SEEN["steps"] == [(e, e * 8 + s) for e in range(2) for s in range(8)]
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    first, second = history
    assert "fill" not in first["loss"] and first["scalars"]["fill"] == pytest.approx(3.5)  # mean of 0..7
    assert first["loss"]["odd"] == pytest.approx(4.0)  # mean of 1, 3, 5, 7: the steps that returned it
    assert second["loss"]["odd"] == pytest.approx(12.0) and second["scalars"]["fill"] == pytest.approx(11.5)
    # the method's epoch warnings, from the epoch means: in the record of that epoch and on stderr
    assert "warnings" not in first and second["warnings"] == ["fill reached 11.5 in epoch 2"]
    assert "  warning: fill reached 11.5 in epoch 2" in capsys.readouterr().err.splitlines()


def test_step_averages_count_each_name_separately():
    averages = StepAverages()
    averages.add({"total": torch.tensor(1.0), "a": torch.tensor(4.0)})
    averages.add({"total": torch.tensor(3.0)})
    assert averages.means() == {"total": 2.0, "a": 4.0}


def test_declared_buffers_must_exist():
    class Bad(Method):
        local_buffers = ("nope",)

    method = Bad(MethodConfig(), None)
    method.register_buffer("queue", torch.zeros(1))
    with pytest.raises(RuntimeError, match="'nope'.*queue"):
        unbroadcast_buffers(method)


class DDPProbe(Method):
    """Under 2 processes: a term only rank 0 returns, a local buffer DDP must leave alone, and a buffer
    synchronised once per epoch from rank 0."""

    config_class = MethodConfig
    local_buffers = ("queue",)
    synced_buffers = ("table",)

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.model = ctx.build_model()
        self.rank = ctx.rank
        self.register_buffer("queue", torch.zeros(1))
        self.register_buffer("table", torch.zeros(1))
        self.reads: list[tuple[float, float]] = []

    def on_epoch_start(self, epoch):
        self.table.fill_(10.0 + self.rank)  # differs by rank until the engine synchronises it

    def forward(self, batch):
        self.reads.append((float(self.queue), float(self.table)))
        self.queue.fill_(1.0 + self.rank)  # what this process keeps for itself
        out = self.model(batch.images, batch.targets)
        ce = torch.nn.functional.cross_entropy(out.logits, batch.targets)
        terms = {"total": ce, "ce": ce}
        if self.rank == 0:
            terms["only0"] = torch.tensor(5.0)
        return terms


def _ddp_worker(rank, out, port, results):
    import os

    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    registry = get_host().methods
    registry.add(Entry("method", "ddp-probe", "tests", options={"factory": DDPProbe, "config": MethodConfig}))
    captured = {}
    original = DDPProbe.__init__

    def init(self, config, ctx):
        original(self, config, ctx)
        captured["method"] = self

    DDPProbe.__init__ = init
    config = TrainConfig(data="digits", out=out, backbone="test_resnet", epochs=1, batch_size=BATCH, image_size=8,
                         augment="none", lr=0.05, device="cpu")
    train("ddp-probe", config, MethodConfig())
    torch.save(captured["method"].reads, f"{results}.{rank}")


@pytest.mark.slow
def test_two_processes_keep_local_buffers_sync_epoch_buffers_and_average_partial_terms(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    results = str(tmp_path / "reads")
    mp.start_processes(_ddp_worker, args=(str(tmp_path / "run"), port, results), nprocs=2, join=True,
                       start_method="spawn")
    for rank in (0, 1):
        reads = torch.load(f"{results}.{rank}")
        assert len(reads) == 8
        assert all(table == 10.0 for _, table in reads)  # rank 0's value, synchronised after on_epoch_start
        assert all(queue == 1.0 + rank for queue, _ in reads[1:])  # never overwritten by rank 0's broadcast
    record = json.loads((tmp_path / "run" / "history.jsonl").read_text().splitlines()[0])
    assert record["loss"]["only0"] == pytest.approx(5.0)  # averaged over the steps that returned it
