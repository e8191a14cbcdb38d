"""compat-nccl: neighbourhood-consensus contrastive learning for compat.

The method ``nccl`` is registered through :mod:`compat_nccl.plugin`; nothing heavy is imported here.
"""

__version__ = "0.1.0"
