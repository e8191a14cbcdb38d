"""Readers for the dataset formats that core registers (see ``compat_core.plugin``)."""
