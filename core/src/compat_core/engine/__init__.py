"""The one training engine every method runs in."""

from compat_core.engine.loop import TrainingInterrupted, train

__all__ = ["TrainingInterrupted", "train"]
