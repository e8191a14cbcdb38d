"""compat-mixbct: MixBCT for compat.

The method ``mixbct`` is registered through :mod:`compat_mixbct.plugin`; nothing heavy is imported here.
"""

__version__ = "0.1.0"
