"""compat-unibct: Universal backward-compatible training with structural prototype refinement.

The method ``unibct`` is registered through :mod:`compat_unibct.plugin`; nothing heavy is imported here.
"""

__version__ = "0.1.0"
