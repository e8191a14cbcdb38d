"""compat_core.queue.FeatureQueue: FIFO order, wrap-around, the valid mask, checkpointed state."""

import pytest
import torch
from compat_core.errors import CompatError
from compat_core.queue import FeatureQueue


def make(size=4):
    return FeatureQueue(size, {"x": ((2,), torch.float32), "y": ((), torch.long)})


def test_fills_in_order_then_overwrites_the_oldest():
    q = make()
    q.enqueue(x=torch.ones(3, 2), y=torch.tensor([1, 2, 3]))
    assert q.valid().tolist() == [True, True, True, False] and q.fill == 0.75
    q.enqueue(x=torch.zeros(3, 2), y=torch.tensor([4, 5, 6]))  # slots 3, 0, 1
    assert q.get("y").tolist() == [5, 6, 3, 4] and q.valid().all() and int(q.pointer) == 2
    assert q.get("x")[:, 0].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_state_survives_a_state_dict_round_trip():
    q = make()
    q.enqueue(x=torch.randn(3, 2), y=torch.tensor([7, 8, 9]))
    restored = make()
    restored.load_state_dict(q.state_dict())
    restored.enqueue(x=torch.zeros(2, 2), y=torch.tensor([1, 2]))
    q.enqueue(x=torch.zeros(2, 2), y=torch.tensor([1, 2]))
    assert torch.equal(q.get("y"), restored.get("y")) and torch.equal(q.get("x"), restored.get("x"))
    assert set(q.buffer_names("queue")) == {"queue.slot_x", "queue.slot_y", "queue.pointer", "queue.filled"}


def test_bad_batches():
    q = make()
    with pytest.raises(ValueError, match="does not fit"):
        q.enqueue(x=torch.zeros(5, 2), y=torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="exactly the fields"):
        q.enqueue(x=torch.zeros(1, 2))
    with pytest.raises(CompatError):
        FeatureQueue(0, {})
