"""A first-in first-out queue of per-sample tensors (old features, their labels, logits...), as a module.

Cross-batch memories (MoCo's queue, NCCL's old-feature queue, pytorch-metric-learning's
CrossBatchMemory) all need the same thing: a ring buffer of fixed size, written batch by batch, whose
content and write position survive ``--resume``. Every field is a registered (persistent) buffer, so
the engine's checkpoint holds it; a method lists the queue's buffers in ``Method.local_buffers`` when
every process fills it identically from gathered batches (DDP must then not broadcast it every step).

Example:
    >>> q = FeatureQueue(3, {"feature": ((2,), torch.float32), "label": ((), torch.long)})
    >>> q.enqueue(feature=torch.ones(2, 2), label=torch.tensor([4, 5]))
    >>> q.enqueue(feature=torch.zeros(2, 2), label=torch.tensor([6, 7]))  # wraps around: 4 is dropped
    >>> q.valid().tolist(), q.get("label").tolist()
    ([True, True, True], [7, 5, 6])
"""

from __future__ import annotations

import torch
from torch import nn

from compat_core.errors import CompatError


class FeatureQueue(nn.Module):
    """``size`` slots of named tensors of fixed shapes; :meth:`enqueue` overwrites the oldest slots.

    Args:
        size: number of slots (samples).
        fields: ``{name: (shape of one sample, dtype)}``.
    """

    def __init__(self, size: int, fields: dict[str, tuple[tuple[int, ...], torch.dtype]]):
        super().__init__()
        if size < 1:
            raise CompatError(f"a queue needs at least one slot (got size {size}).")
        self.size, self.names = int(size), list(fields)
        for name, (shape, dtype) in fields.items():
            self.register_buffer(f"slot_{name}", torch.zeros((self.size, *shape), dtype=dtype))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))  # next slot to write
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))  # slots written so far (<= size)

    def buffer_names(self, prefix: str) -> tuple[str, ...]:
        """This queue's buffer names as ``named_buffers()`` of the owner gives them (``prefix`` = the
        attribute name), for ``Method.local_buffers``."""
        return tuple(f"{prefix}.{name}" for name, _ in self.named_buffers())

    @torch.no_grad()
    def enqueue(self, **tensors: torch.Tensor) -> None:
        """Write one batch (every field, same number of rows ``n <= size``) at the write position."""
        if set(tensors) != set(self.names):
            raise ValueError(f"enqueue needs exactly the fields {self.names}, got {sorted(tensors)}")
        rows = {len(t) for t in tensors.values()}
        if len(rows) != 1:
            raise ValueError(f"every field needs the same number of rows, got {sorted(rows)}")
        n = rows.pop()
        if n > self.size:
            raise ValueError(f"a batch of {n} rows does not fit a queue of {self.size} slots")
        slots = (int(self.pointer) + torch.arange(n, device=self.pointer.device)) % self.size
        for name, value in tensors.items():
            getattr(self, f"slot_{name}")[slots] = value.detach().to(getattr(self, f"slot_{name}").dtype)
        self.pointer.fill_((int(self.pointer) + n) % self.size)
        self.filled.fill_(min(self.size, int(self.filled) + n))

    def get(self, name: str) -> torch.Tensor:
        """Every slot of field ``name`` (slots never written hold zeros; see :meth:`valid`)."""
        return getattr(self, f"slot_{name}")

    def valid(self) -> torch.Tensor:
        """Boolean mask of the slots written so far."""
        return torch.arange(self.size, device=self.filled.device) < self.filled

    @property
    def fill(self) -> float:
        """Share of the slots written so far."""
        return int(self.filled) / self.size
