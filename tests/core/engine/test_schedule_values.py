"""lr_factor: warm-up, cosine, poly, step and constant multipliers against hand-computed values."""

from __future__ import annotations

import math

import pytest
from compat_core.config import TrainConfig
from compat_core.engine.schedule import lr_factor


def cfg(**overrides) -> TrainConfig:
    return TrainConfig(data="digits", out="runs/x", **overrides)


def factors(config: TrainConfig, total: int, per_epoch: int) -> list[float]:
    return [lr_factor(s, total_steps=total, steps_per_epoch=per_epoch, config=config) for s in range(total + 1)]


def test_linear_warmup_then_cosine():
    config = cfg(epochs=3, scheduler="cosine", warmup_epochs=1.0)
    f = factors(config, total=12, per_epoch=4)
    assert f[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    # after 4 warm-up steps the cosine runs over the remaining 8 steps
    assert f[4] == pytest.approx(1.0)
    assert f[8] == pytest.approx(0.5)
    assert f[6] == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 8)))
    assert f[12] == pytest.approx(0.0, abs=1e-12)


def test_fractional_warmup_rounds_to_steps():
    config = cfg(epochs=2, scheduler="constant", warmup_epochs=0.5)
    f = factors(config, total=20, per_epoch=10)  # round(0.5 * 10) = 5 warm-up steps
    assert f[:6] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    assert set(f[5:]) == {1.0}


def test_cosine_values():
    config = cfg(epochs=2, scheduler="cosine")
    f = factors(config, total=10, per_epoch=5)
    assert f[0] == 1.0
    assert f[5] == pytest.approx(0.5)
    assert f[9] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.9)))
    assert f[9] < 0.03  # the last optimizer step is near zero
    assert f[10] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in zip(f, f[1:], strict=False))


def test_poly_power_two():
    config = cfg(epochs=2, scheduler="poly")
    assert config.poly_power == 2.0
    f = factors(config, total=10, per_epoch=5)
    assert f == pytest.approx([(1 - s / 10) ** 2 for s in range(11)])
    assert f[5] == pytest.approx(0.25)
    assert f[9] == pytest.approx(0.01)


def test_poly_custom_power_with_warmup():
    config = cfg(epochs=4, scheduler="poly", poly_power=3.0, warmup_epochs=1.0)
    f = factors(config, total=8, per_epoch=2)
    assert f[:2] == pytest.approx([0.5, 1.0])
    assert f[2] == pytest.approx(1.0)
    assert f[5] == pytest.approx(0.5**3)  # progress (5 - 2) / (8 - 2)


def test_step_with_explicit_epochs():
    config = cfg(epochs=6, scheduler="step", step_epochs=[2, 4], step_gamma=0.1)
    f = factors(config, total=18, per_epoch=3)
    assert f[0:6] == pytest.approx([1.0] * 6)  # epochs 0 and 1
    assert f[6:12] == pytest.approx([0.1] * 6)  # epochs 2 and 3
    assert f[12:18] == pytest.approx([0.01] * 6)  # epochs 4 and 5


def test_step_custom_gamma():
    config = cfg(epochs=4, scheduler="step", step_epochs=[1], step_gamma=0.5)
    f = factors(config, total=8, per_epoch=2)
    assert f[:8] == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])


def test_step_default_thirds():
    config = cfg(epochs=9, scheduler="step")
    assert config.step_epochs == []
    per_epoch = 2
    by_epoch = [lr_factor(e * per_epoch + 1, total_steps=18, steps_per_epoch=per_epoch, config=config)
                for e in range(9)]
    assert by_epoch == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01])


def test_step_default_thirds_of_two_epochs_ignores_epoch_zero():
    config = cfg(epochs=2, scheduler="step")  # milestones [0, 1]: 0 never decays
    f = factors(config, total=4, per_epoch=2)
    assert f[:4] == pytest.approx([1.0, 1.0, 0.1, 0.1])


def test_constant():
    config = cfg(epochs=3, scheduler="constant")
    assert factors(config, total=9, per_epoch=3) == [1.0] * 10


def test_zero_total_steps_do_not_divide_by_zero():
    config = cfg(epochs=1, scheduler="cosine")
    assert lr_factor(0, total_steps=0, steps_per_epoch=0, config=config) == pytest.approx(1.0)
