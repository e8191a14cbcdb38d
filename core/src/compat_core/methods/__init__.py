"""Training methods: the :class:`Method` interface and core's ``baseline``.

Names are resolved lazily so that importing an option model (``compat_core.methods.configs``) does
not import torch.
"""

__all__ = ["Batch", "Method", "MethodContext"]


def __getattr__(name):
    if name in __all__:
        from compat_core.methods import base

        return getattr(base, name)
    raise AttributeError(name)
