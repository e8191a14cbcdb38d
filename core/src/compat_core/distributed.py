"""Collectives that methods use under ``torchrun``: gathers across processes and a mean all-reduce.

Every function is the identity (or a plain copy) in a single process, so a method calls them
unconditionally. Process-group set-up lives in :mod:`compat_core.engine.distributed`.

:func:`gather_with_grad` concatenates every process's rows in rank order. Its backward sums the
gradient of the gathered tensor over all processes (one all-reduce) and keeps this process's slice,
so a sample's embedding receives the gradient of every process's loss terms that use it. With each
process averaging over its own anchors and DDP averaging gradients over processes, the result is the
gradient of the mean over all anchors of the global batch, exactly as in one process. (CNA's original
code patched torch's gather and multiplied the local gradient by the world size instead.)

Every process must pass the same number of rows (the engine splits global batches evenly).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """``(world_size, rank)``; ``(1, 0)`` outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        world_size, rank = world()
        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(parts, tensor)
        ctx.rows, ctx.rank = tensor.shape[0], rank
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_with_grad(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(all processes' rows concatenated, offset of this process's rows)``; identity in one process.

    Example:
        >>> gathered, offset = gather_with_grad(torch.ones(2, 3))
        >>> gathered.shape, offset
        (torch.Size([2, 3]), 0)
    """
    world_size, rank = world()
    if world_size == 1:
        return tensor, 0
    return _GatherWithGrad.apply(tensor), rank * tensor.shape[0]


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """All processes' rows concatenated in rank order, without gradient (old embeddings, labels, a
    teacher's outputs: what a queue or a global-batch loss reads).

    Example:
        >>> gather(torch.arange(3)).tolist()
        [0, 1, 2]
    """
    world_size, _ = world()
    if world_size == 1:
        return tensor
    tensor = tensor.detach().contiguous()
    parts = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(parts, tensor)
    return torch.cat(parts)


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over processes (a new tensor, no gradient); a copy in one process.

    Example:
        >>> all_reduce_mean(torch.tensor([2.0, 4.0])).tolist()
        [2.0, 4.0]
    """
    world_size, _ = world()
    out = tensor.detach().clone()
    if world_size > 1:
        dist.all_reduce(out)
        out = out / world_size
    return out
