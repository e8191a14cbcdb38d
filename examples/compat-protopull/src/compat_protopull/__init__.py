"""compat-protopull: the example method plugin of compat's plugin tutorial (core/TUTORIAL.md)."""

__version__ = "0.1.0"
