"""compat-bct: the BCT family of backward-compatible training methods for compat.

Methods ``bct``, ``l2``, ``triplet`` and ``contrastive`` are registered through
:mod:`compat_bct.plugin`; nothing heavy is imported here.
"""

__version__ = "0.1.0"
