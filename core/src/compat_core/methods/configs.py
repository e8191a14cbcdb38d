"""Option models of core's methods, kept free of torch so the CLI can build flags without it."""

from compat_core.config import MethodConfig


class BaselineConfig(MethodConfig):
    """The baseline has no options beyond the common ones."""
