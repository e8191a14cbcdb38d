"""Old-to-new label maps: a JSON object ``{new_class_name: old_class_name}`` checked against both class lists.

Used wherever a new model's classes must be matched to an old model's (BCT's old classifier rows,
the regression evaluator's shared classes). Without a map, callers match identical class names.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from compat_core.errors import CompatError

_SHAPE = "Write a JSON object {\"new class\": \"old class\"}."


def read_label_map(path: str | Path, new_classes: Sequence[str], old_classes: Sequence[str], *,
                   one_to_one: bool = False) -> dict[str, str]:
    """Read ``{new_class_name: old_class_name}`` and check every name exists on its side.

    Args:
        path: the JSON file.
        new_classes: class names of the new model or data (the keys must be among them).
        old_classes: class names of the old model (the values must be among them).
        one_to_one: also refuse two new classes mapped to the same old class (needed where an old
            prediction must mean a single new class, e.g. flip counting).

    Raises:
        CompatError: missing file, invalid JSON, not an object, an unknown name, or (``one_to_one``)
            an old class used twice; the message names the entry and the fix.

    Example:
        >>> read_label_map("map.json", ["cat", "dog"], ["0", "1"])  # doctest: +SKIP
        {'cat': '0', 'dog': '1'}
    """
    file = Path(path)
    if not file.is_file():
        raise CompatError(f"--label-map {path}: no such file. {_SHAPE}")
    try:
        mapping = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompatError(f"--label-map {path} is not valid JSON ({exc}). {_SHAPE}") from None
    if not isinstance(mapping, dict):
        raise CompatError(f"--label-map {path} must hold a JSON object {{\"new class\": \"old class\"}}, "
                          f"not {type(mapping).__name__}.")
    mapping = {str(k): str(v) for k, v in mapping.items()}
    unknown_new = sorted(set(mapping) - {str(c) for c in new_classes})
    if unknown_new:
        raise CompatError(f"--label-map {path} names new class {unknown_new[0]!r}, which is not a class of the "
                          f"new model or data (classes: {short_list(new_classes)}). Fix or remove that entry.")
    unknown_old = sorted(set(mapping.values()) - {str(c) for c in old_classes})
    if unknown_old:
        raise CompatError(f"--label-map {path} maps to old class {unknown_old[0]!r}, which the old model does not "
                          f"know (its classes: {short_list(old_classes)}). Fix or remove that entry.")
    if one_to_one:
        values = list(mapping.values())
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise CompatError(f"--label-map {path} maps several new classes to old class {twice[0]!r}. Map each "
                              f"old class to at most one new class.")
    return mapping


def short_list(names: Sequence[str], limit: int = 10) -> str:
    """``"a, b, c"``, cut after ``limit`` names with the total count (for error messages)."""
    names = [str(n) for n in names]
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")
