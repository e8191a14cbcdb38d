"""BatchPlan order and slicing, and the one-gather crop/flip against a naive per-sample loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from compat_core.engine.batches import Augmenter, BatchPlan, shift_and_flip


def as_lists(batches: list[torch.Tensor]) -> list[list[int]]:
    return [b.tolist() for b in batches]


def test_plan_is_deterministic_per_seed_and_epoch():
    a, b = BatchPlan(20, 4, seed=3), BatchPlan(20, 4, seed=3)
    assert as_lists(a.global_batches(0)) == as_lists(b.global_batches(0))
    assert as_lists(a.global_batches(5)) == as_lists(b.global_batches(5))
    assert as_lists(a.global_batches(0)) == as_lists(a.global_batches(0))  # no hidden state


def test_epochs_and_seeds_differ():
    plan = BatchPlan(20, 4, seed=3)
    orders = [sum(as_lists(plan.global_batches(e)), []) for e in range(4)]
    assert len({tuple(o) for o in orders}) == 4
    other_seed = sum(as_lists(BatchPlan(20, 4, seed=4).global_batches(0)), [])
    assert other_seed != orders[0]


def test_drop_last_partial_batch():
    plan = BatchPlan(10, 4, seed=0)
    assert plan.steps_per_epoch == 2
    batches = plan.global_batches(0)
    assert [len(b) for b in batches] == [4, 4]
    seen = sum(as_lists(batches), [])
    assert len(set(seen)) == 8 and set(seen) <= set(range(10))  # distinct positions, 2 dropped
    assert all(b.dtype == torch.int64 for b in batches)


def test_exact_multiple_covers_everything():
    plan = BatchPlan(12, 4, seed=1)
    assert sorted(sum(as_lists(plan.global_batches(2)), [])) == list(range(12))


def test_dataset_smaller_than_one_batch_keeps_all():
    plan = BatchPlan(3, 8, seed=0)
    assert plan.batch_size == 3 and plan.steps_per_epoch == 1
    (batch,) = plan.global_batches(0)
    assert sorted(batch.tolist()) == [0, 1, 2]


def test_batch_smaller_than_world_size_is_refused():
    with pytest.raises(ValueError, match="at least the number of processes"):
        BatchPlan(10, 1, seed=0, world_size=2)


def test_local_slices_of_two_ranks_partition_the_global_batch():
    ranks = [BatchPlan(30, 6, seed=9, world_size=2, rank=r) for r in range(2)]
    single = BatchPlan(30, 6, seed=9)
    for epoch in range(2):
        batches = [plan.global_batches(epoch) for plan in ranks]
        assert as_lists(batches[0]) == as_lists(batches[1]) == as_lists(single.global_batches(epoch))
        for batch in batches[0]:
            s0, s1 = ranks[0].local(batch), ranks[1].local(batch)
            assert (s0, s1) == (slice(0, 3), slice(3, 6))
            assert batch[s0].tolist() + batch[s1].tolist() == batch.tolist()
    assert single.local(single.global_batches(0)[0]) == slice(0, 6)


# -- shift_and_flip -----------------------------------------------------------------------------
def naive_shift_and_flip(images: np.ndarray, shifts: np.ndarray, flips: np.ndarray, pad: int) -> np.ndarray:
    """Pad with zeros, crop the image-sized window moved by (dy, dx), then mirror left-right."""
    out = np.empty_like(images)
    _, _, h, w = images.shape
    for i in range(len(images)):
        padded = np.pad(images[i], ((0, 0), (pad, pad), (pad, pad)))
        dy, dx = int(shifts[i, 0]), int(shifts[i, 1])
        crop = padded[:, pad + dy: pad + dy + h, pad + dx: pad + dx + w]
        out[i] = crop[:, :, ::-1] if flips[i] else crop
    return out


def random_images(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, size=(n, 3, h, w), dtype=np.uint8))


@pytest.mark.parametrize("h, w, pad", [(8, 8, 1), (5, 7, 2), (6, 4, 3)])
def test_shift_and_flip_matches_naive_loop(h, w, pad):
    images = random_images(16, h, w, seed=h * w)
    gen = torch.Generator().manual_seed(pad)
    shifts = torch.randint(-pad, pad + 1, (16, 2), generator=gen)
    shifts[0] = torch.tensor([-pad, pad])  # extreme corners are included
    shifts[1] = torch.tensor([pad, -pad])
    flips = torch.rand(16, generator=gen) < 0.5
    flips[0], flips[1] = True, False
    out = shift_and_flip(images, shifts, flips, pad)
    assert out.dtype == torch.uint8 and out.shape == images.shape and out.is_contiguous()
    expected = naive_shift_and_flip(images.numpy(), shifts.numpy(), flips.numpy(), pad)
    np.testing.assert_array_equal(out.numpy(), expected)


def test_zero_shift_without_flip_is_identity():
    images = random_images(4, 6, 5)
    out = shift_and_flip(images, torch.zeros(4, 2, dtype=torch.int64), torch.zeros(4, dtype=torch.bool), 2)
    assert torch.equal(out, images)


def test_zero_shift_with_flip_mirrors():
    images = random_images(3, 4, 6)
    out = shift_and_flip(images, torch.zeros(3, 2, dtype=torch.int64), torch.ones(3, dtype=torch.bool), 1)
    assert torch.equal(out, images.flip(-1))


def test_shift_direction_and_zero_fill():
    image = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4).repeat(1, 3, 1, 1)
    out = shift_and_flip(image, torch.tensor([[1, -1]]), torch.tensor([False]), 1)
    # output row i shows input row i + 1; output column j shows input column j - 1; outside is 0
    expected = torch.tensor([[0, 5, 6, 7], [0, 9, 10, 11], [0, 13, 14, 15], [0, 0, 0, 0]], dtype=torch.uint8)
    assert torch.equal(out[0, 0], expected) and torch.equal(out[0, 2], expected)


# -- Augmenter ----------------------------------------------------------------------------------
def test_augmenter_none_returns_input_unchanged():
    images = random_images(4, 8, 8)
    copy = images.clone()
    aug = Augmenter("none", 8, seed=0)
    shifts, flips = aug.draws(0, 1, 4)[0]
    out = aug(images, shifts, flips)
    assert out is images and torch.equal(images, copy)


def test_augmenter_flip_mode_ignores_shifts():
    images = random_images(4, 8, 8)
    shifts = torch.tensor([[1, 1], [-1, 0], [0, 1], [1, -1]])
    flips = torch.tensor([True, False, True, False])
    out = Augmenter("flip", 8, seed=0)(images, shifts, flips)
    expected = torch.where(flips[:, None, None, None], images.flip(-1), images)
    assert torch.equal(out, expected)


def test_augmenter_crop_flip_uses_pad_of_one_eighth():
    images = random_images(4, 16, 16)
    aug = Augmenter("crop-flip", 16, seed=0)
    assert aug.pad == 2 and Augmenter("crop-flip", 4, seed=0).pad == 1
    shifts = torch.tensor([[2, -2], [0, 0], [-1, 1], [2, 2]])
    flips = torch.tensor([False, True, True, False])
    expected = naive_shift_and_flip(images.numpy(), shifts.numpy(), flips.numpy(), 2)
    np.testing.assert_array_equal(aug(images, shifts, flips).numpy(), expected)


def test_augmenter_draws_are_deterministic_and_bounded():
    aug = Augmenter("crop-flip", 32, seed=5)
    first, again = aug.draws(1, 3, 64), Augmenter("crop-flip", 32, seed=5).draws(1, 3, 64)
    for (s1, f1), (s2, f2) in zip(first, again, strict=True):
        assert torch.equal(s1, s2) and torch.equal(f1, f2)
        assert s1.shape == (64, 2) and f1.shape == (64,) and f1.dtype == torch.bool
        assert int(s1.min()) >= -4 and int(s1.max()) <= 4
    assert not torch.equal(first[0][0], aug.draws(2, 1, 64)[0][0])
