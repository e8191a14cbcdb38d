"""Datasets: image formats detected from a path, built-in named datasets, class and sample subsets.

Names are resolved lazily: the cheap detectors in ``compat_core.data.detect`` import no torch.

Example:
    >>> from compat_core.data import open_dataset
    >>> ds = open_dataset("digits", split="train", image_size=32)  # doctest: +SKIP
    >>> image, label, index = ds[0]  # doctest: +SKIP
"""

_EXPORTS = {"ArrayDataset": "base", "Dataset": "base", "FileDataset": "base", "SubsetDataset": "base",
            "open_dataset": "open"}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"compat_core.data.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
