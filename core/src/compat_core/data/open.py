"""``--data`` resolution: a built-in dataset name, or a path whose format is detected."""

from __future__ import annotations

from pathlib import Path

from compat_core.data.base import Dataset
from compat_core.data.formats.common import check_image_size
from compat_core.errors import CompatError
from compat_core.plugins import get_host
from compat_core.registry import Entry


def open_dataset(source: str, split: str = "train", image_size: int = 32) -> Dataset:
    """Open ``split`` of ``source``: a registered dataset name (``digits``, ``fashion-mnist``...) or a path.

    For a path, each registered format's detector is tried in registration order and the first
    that matches opens it. ``split`` is a split name (``train``, ``val``, ``test``) or a split spec
    ``@split.json:train`` / ``@split.json:val``: a part of the validation holdout that
    ``compat data split DATA --validation 0.1 --out split.json`` wrote.

    Example:
        >>> ds = open_dataset("digits", split="train", image_size=16)
        >>> len(ds), ds.image_size
        (1077, 16)
    """
    check_image_size(image_size)
    if str(split).strip().startswith("@"):
        from compat_core.data.selection import open_holdout_part

        return open_holdout_part(split, lambda name: open_dataset(source, name, image_size))
    source = str(source)
    entries = list(get_host().datasets)
    named = {entry.name: entry for entry in entries if "detect" not in entry.options}
    if source in named:
        return named[source].get("factory")(source, split, image_size)
    path = Path(source).expanduser()
    if not path.exists():
        raise CompatError(
            f"--data {source}: no such file or folder, and not a built-in dataset name "
            f"({', '.join(sorted(named)) or 'none installed'}). Check the path or use one of these names."
        )
    for entry in entries:
        if "detect" in entry.options and entry.get("detect")(str(path)):
            return entry.get("factory")(str(path), split, image_size)
    raise CompatError(_unrecognised(source, [e for e in entries if "detect" in e.options], sorted(named)))


def _unrecognised(source: str, formats: list[Entry], names: list[str]) -> str:
    supported = "; ".join(f"{entry.name} ({entry.summary.rstrip('.')})" for entry in formats)
    return (
        f"--data {source}: the format is not recognised. Supported formats: {supported}. "
        f"Arrange the data in one of these layouts, or use a built-in name ({', '.join(names)})."
    )
