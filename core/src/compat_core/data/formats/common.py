"""Helpers shared by the format readers: split names and numeric class order."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral
from typing import TypeVar

from compat_core.errors import CompatError

T = TypeVar("T")
SPLITS = ("train", "val", "test")
_ALIAS = {"val": "test", "test": "val"}


def pick_split(split: str, available: Mapping[str, T], source: str) -> T:
    """The value for ``split`` among ``available``; ``test`` and ``val`` stand in for each other.

    Example:
        >>> pick_split("val", {"train": 1, "test": 2}, "data/")
        2
    """
    if split in available:
        return available[split]
    if split in _ALIAS and _ALIAS[split] in available:
        return available[_ALIAS[split]]
    names = ", ".join(name for name in SPLITS if name in available) or "none"
    raise CompatError(
        f"--split {split}: {source} has no such split. Available splits: {names} "
        f"(test and val are aliases when only one exists). Pass one of these."
    )


def class_sort_key(name: str) -> tuple[int, int, str]:
    """Numeric names first, in numeric order ("2" before "10"), then the others alphabetically.

    Example:
        >>> sorted(["10", "cat", "2"], key=class_sort_key)
        ['2', '10', 'cat']
    """
    if name.isascii() and name.isdigit():
        return (0, int(name), name)
    return (1, 0, name)


def check_image_size(image_size: int) -> None:
    """Reject sizes that cannot be an image side."""
    if not isinstance(image_size, Integral) or isinstance(image_size, bool) or image_size < 1:
        raise CompatError(f"--image-size {image_size!r} is not a positive integer. Pass e.g. 32.")
