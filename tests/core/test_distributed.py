"""compat_core.distributed: identities in one process; on two gloo processes, gather in rank order,
the mean all-reduce, and a gather whose backward hands each process the gradient of every process."""

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from compat_core.distributed import all_reduce_mean, gather, gather_with_grad, world

WORLD = 2


def test_single_process_is_the_identity():
    x = torch.arange(6.0).view(3, 2)
    assert world() == (1, 0)
    assert gather(x) is x and gather_with_grad(x) == (x, 0)
    mean = all_reduce_mean(x)
    assert torch.equal(mean, x) and mean is not x


def worker(rank, store, results):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    local = torch.full((2, 1), float(rank + 1), requires_grad=True)
    everything, offset = gather_with_grad(local)
    # each process weights every gathered row by (its rank + 1): row r's gradient sums over processes
    (everything * (rank + 1)).sum().backward()
    out = torch.cat([gather(torch.tensor([float(rank)])), all_reduce_mean(torch.tensor([float(rank + 1)])),
                     torch.tensor([float(offset)]), everything.detach().flatten(), local.grad.flatten()])
    parts = [torch.empty_like(out) for _ in range(WORLD)]
    dist.all_gather(parts, out)
    if rank == 0:
        torch.save(torch.stack(parts), results)
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes():
    with tempfile.TemporaryDirectory() as folder:
        store, results = os.path.join(folder, "store"), os.path.join(folder, "results.pt")
        mp.start_processes(worker, args=(store, results), nprocs=WORLD, join=True, start_method="spawn")
        rows = torch.load(results)
    for rank, row in enumerate(rows.tolist()):
        assert row[:2] == [0.0, 1.0]  # gather: rank order, same on every process
        assert row[2] == 1.5  # mean of 1 and 2
        assert row[3] == 2 * rank  # this process's offset in the gathered rows
        assert row[4:8] == [1.0, 1.0, 2.0, 2.0]
        assert row[8:] == [3.0, 3.0]  # d/d local of sum over processes (r + 1) * rows = 1 + 2
