"""The ``compat`` command line (typer + rich). The library lives in ``compat_core``."""

__version__ = "0.1.0"
