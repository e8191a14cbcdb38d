"""Lazy references: ``"package.module:attribute"`` strings resolved on first use."""

from __future__ import annotations

import importlib
from typing import Any


def resolve(ref: Any) -> Any:
    """Return the object named by ``"module:attr"``; anything else is returned unchanged.

    Example:
        >>> resolve("os.path:join")("a", "b")
        'a/b'
    """
    if not isinstance(ref, str):
        return ref
    module_name, sep, attr = ref.partition(":")
    if not sep:
        raise ValueError(f"lazy reference {ref!r} must look like 'package.module:attribute'")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
