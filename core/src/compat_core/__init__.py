"""compat core: the pieces every compatible-update method stands on.

Heavy modules (torch, timm) are imported lazily: importing ``compat_core`` itself is cheap, so the
CLI and plugin discovery stay fast.
"""

__version__ = "0.1.0"

from compat_core.errors import CompatError  # noqa: E402

__all__ = ["CompatError", "__version__"]
