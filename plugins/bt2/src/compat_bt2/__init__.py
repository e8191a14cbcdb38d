"""compat-bt2: backward-compatible training with basis transformation (BT^2).

The method ``bt2`` is registered through :mod:`compat_bt2.plugin`; nothing heavy is imported here.
"""

__version__ = "0.1.0"
