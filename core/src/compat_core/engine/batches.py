"""Seeded batch order and augmentation, identical for any number of processes.

The order and the augmentation parameters of epoch ``e`` depend only on ``(seed, e)`` and are drawn
for the *global* batch; each process takes its slice. So a resumed run sees exactly the batches of an
uninterrupted one, and N processes see exactly what one process with the global batch would.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 7 + stream)


class BatchPlan:
    """Global batches of dataset positions for each epoch (last partial batch dropped, unless the
    dataset is smaller than one batch)."""

    def __init__(self, num_samples: int, batch_size: int, seed: int, world_size: int = 1, rank: int = 0):
        if batch_size < world_size:
            raise ValueError("batch size must be at least the number of processes")
        self.num_samples, self.batch_size, self.seed = num_samples, min(batch_size, num_samples), seed
        self.world_size, self.rank = world_size, rank

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.num_samples // self.batch_size)

    def global_batches(self, epoch: int) -> list[torch.Tensor]:
        order = torch.randperm(self.num_samples, generator=epoch_generator(self.seed, epoch, 0))
        steps = self.steps_per_epoch
        return list(order[: steps * self.batch_size].view(steps, self.batch_size))

    def local(self, global_batch: torch.Tensor) -> slice:
        """This process's share of a global batch (a slice, also used for the augmentation draws)."""
        per_rank = len(global_batch) // self.world_size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)


class _BatchSource(torch.utils.data.Dataset):
    """Each item is a whole batch, so loader workers decode batches, not single images."""

    def __init__(self, dataset, batches: list[np.ndarray]):
        self.dataset, self.batches = dataset, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        positions = self.batches[i]
        return (self.dataset.load_images(positions), torch.as_tensor(self.dataset.labels[positions]),
                torch.as_tensor(self.dataset.base_indices[positions]))


def iterate(dataset, batches: list[np.ndarray], workers: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield ``(uint8 images, labels, base indices)`` per batch of positions."""
    source = _BatchSource(dataset, batches)
    if workers == 0 or dataset.in_memory:
        yield from (source[i] for i in range(len(source)))
        return
    loader = torch.utils.data.DataLoader(source, batch_size=None, shuffle=False, num_workers=workers,
                                         persistent_workers=False, prefetch_factor=2)
    yield from loader


class Augmenter:
    """Random crop with zero padding (1/8 of the size) and horizontal flip, on uint8 batches."""

    def __init__(self, mode: str, image_size: int, seed: int):
        self.mode, self.pad, self.seed = mode, max(1, image_size // 8), seed

    def draws(self, epoch: int, num_batches: int, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per global batch: (shifts (B, 2), flips (B,)) for the whole epoch, drawn up front."""
        gen = epoch_generator(self.seed, epoch, 1)
        out = []
        for _ in range(num_batches):
            shifts = torch.randint(-self.pad, self.pad + 1, (batch_size, 2), generator=gen)
            flips = torch.rand(batch_size, generator=gen) < 0.5
            out.append((shifts, flips))
        return out

    def __call__(self, images: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return images
        if self.mode == "flip":
            shifts = torch.zeros_like(shifts)
        return shift_and_flip(images, shifts.to(images.device), flips.to(images.device), self.pad)


def shift_and_flip(images: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """Per-sample translated crop of the zero-padded image, mirrored where ``flips``; one gather."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = torch.arange(height, device=images.device)[None, :] + pad + shifts[:, :1]
    cols = torch.arange(width, device=images.device)[None, :] + pad + shifts[:, 1:]
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    b = torch.arange(batch, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()
