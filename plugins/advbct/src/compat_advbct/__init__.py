"""compat-advbct: boundary-aware backward-compatible training via adversarial learning for compat.

The method ``advbct`` is registered through :mod:`compat_advbct.plugin`; nothing heavy is imported here.
"""

__version__ = "0.1.0"
