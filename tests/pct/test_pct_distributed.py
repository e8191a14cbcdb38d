"""CNA's batch gather across processes: two gloo processes give the single-process gradient.

Each process embeds half of a 12-sample batch with the same tiny linear model, gathers the batch
with :func:`gather_with_grad`, averages the CNA loss over its own anchors and backpropagates; the
parameter gradients are then averaged over processes, as DDP does. That must equal the gradient of
the mean CNA loss over all 12 anchors in one process. A naive gather (other processes' rows as
constants, only the local slice differentiable) is computed as a negative control and must differ:
it loses the gradient that other processes' anchors send to this process's samples.
"""

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from compat_core.distributed import gather, gather_with_grad
from compat_pct.losses import cna_per_anchor, teacher_similarity

pytestmark = pytest.mark.slow

ROWS, WORLD = 12, 2


def problem():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(ROWS, 6, generator=generator)
    teacher = torch.randn(ROWS, 3, generator=generator)
    layer = torch.nn.Linear(6, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(4, 6, generator=generator))
        layer.bias.copy_(torch.randn(4, generator=generator))
    return inputs, teacher, layer


def cna_gradient(embed_all, teacher_all, anchors, layer):
    similarity = teacher_similarity([teacher_all], anchors)
    loss = cna_per_anchor(embed_all, similarity, anchors, temperature=0.2, neighbors=2).mean()
    layer.zero_grad()
    loss.backward()
    return loss.detach(), torch.cat([layer.weight.grad.flatten(), layer.bias.grad])


def worker(rank, store, results):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    inputs, teacher, layer = problem()
    part = slice(rank * ROWS // WORLD, (rank + 1) * ROWS // WORLD)
    local = layer(inputs[part])
    everything, offset = gather_with_grad(local)
    anchors = torch.arange(offset, offset + len(local))
    loss, grad = cna_gradient(everything, gather(teacher[part]), anchors, layer)
    naive = torch.cat([layer(inputs[part]) if r == rank else gather(layer(inputs[part]))[
        r * len(local):(r + 1) * len(local)] for r in range(WORLD)])
    _, naive_grad = cna_gradient(naive, teacher, anchors, layer)
    stacked = torch.cat([loss.view(1), grad, naive_grad])
    dist.all_reduce(stacked)  # DDP's gradient averaging (and the mean of the per-process losses)
    if rank == 0:
        torch.save(stacked / WORLD, results)
    dist.destroy_process_group()


def test_two_process_gather_gives_the_single_process_gradient():
    inputs, teacher, layer = problem()
    loss, grad = cna_gradient(layer(inputs), teacher, torch.arange(ROWS), layer)
    with tempfile.TemporaryDirectory() as folder:
        store, results = os.path.join(folder, "store"), os.path.join(folder, "results.pt")
        mp.start_processes(worker, args=(store, results), nprocs=WORLD, join=True, start_method="spawn")
        stacked = torch.load(results)
    size = len(grad)
    ddp_loss, ddp_grad, naive_grad = stacked[0], stacked[1:1 + size], stacked[1 + size:]
    assert torch.allclose(ddp_loss, loss, atol=1e-6)
    assert torch.allclose(ddp_grad, grad, atol=1e-5, rtol=1e-5), (ddp_grad - grad).abs().max()
    assert (naive_grad - grad).abs().max() > 1e-3  # the control: a gather without the backward sum is wrong


def test_cna_under_torchrun_trains_the_single_process_weights(tmp_path):
    """The engine path: `compat train cna` on 2 gloo processes equals one process on the global batch.

    test_vit has no BatchNorm (whose statistics would be per process) and ``--augment none``; the
    old model is in eval mode. Float summation order is the only difference (see
    tests/core/engine/test_ddp_equivalence.py for the tolerance argument); measured ~1e-6 of each
    tensor's scale, allowed 1e-4.
    """
    from compat_core.testing import train_old_model
    from tiny_models import train_ddp_and_single

    old = train_old_model(tmp_path)
    args = ["train", "cna", "--data", "digits", "--backbone", "test_vit", "--epochs", "1", "--batch-size", "64",
            "--augment", "none", "--lr", "0.05", "--device", "cpu", "--old", old, "--kd-filter", "all_pass",
            "--kd-weight", "1"]
    train_ddp_and_single(args, tmp_path)
