"""Subcommands of ``compat``."""
