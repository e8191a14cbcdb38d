"""Learning-rate schedules as per-step multipliers (warm-up, then cosine / step / poly / constant)."""

from __future__ import annotations

import math

from compat_core.config import TrainConfig


def lr_factor(step: int, *, total_steps: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based).

    Example:
        >>> cfg = TrainConfig(data="digits", out="r", epochs=2, scheduler="cosine")
        >>> lr_factor(0, total_steps=10, steps_per_epoch=5, config=cfg)
        1.0
        >>> round(lr_factor(5, total_steps=10, steps_per_epoch=5, config=cfg), 3)
        0.5
    """
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    if config.scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if config.scheduler == "poly":
        return (1.0 - progress) ** config.poly_power
    if config.scheduler == "step":
        milestones = config.step_epochs or [config.epochs // 3, 2 * config.epochs // 3]
        epoch = step // max(1, steps_per_epoch)
        return config.step_gamma ** sum(1 for m in milestones if 0 < m <= epoch)
    return 1.0
