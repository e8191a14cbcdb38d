"""The one training engine every method runs in."""

from compat_core.engine.loop import train

__all__ = ["train"]
