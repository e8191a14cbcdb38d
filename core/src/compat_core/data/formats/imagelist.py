"""Image lists: text files of ``relative/path label`` lines.

A folder holds ``train.txt`` and ``test.txt`` and/or ``val.txt``; paths are relative to the folder
of the list file (absolute paths are used as they are). A single ``.txt`` file is the data for
whatever split is asked: pass another file for another split.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from compat_core.data.base import FileDataset
from compat_core.data.detect import parse_list_line
from compat_core.data.formats.common import SPLITS, check_image_size, pick_split
from compat_core.errors import CompatError


def open_imagelist(source: str, split: str, image_size: int) -> FileDataset:
    """Open one split of an image list.

    Classes are the sorted unique labels (over every list file of the folder) as strings; labels
    that are not ``0..K-1`` are mapped onto ``0..K-1`` in numeric order, and the original label
    stays the class name.

    Example:
        >>> ds = open_imagelist("lists/", "test", 32)  # doctest: +SKIP
        >>> ds.classes  # doctest: +SKIP
        ['0', '1', '7']
    """
    check_image_size(image_size)
    root = Path(source)
    if root.is_file():
        lists = {name: root for name in SPLITS}
    else:
        lists = {name: root / f"{name}.txt" for name in SPLITS if (root / f"{name}.txt").is_file()}
    chosen = pick_split(split, lists, source)
    entries = {file: read_list(file) for file in set(lists.values())}
    originals = np.unique(np.concatenate([labels for _, labels in entries.values()]))
    paths, labels = entries[chosen]
    _check_first_path(paths, chosen)
    name = root.resolve().stem if root.is_file() else root.resolve().name
    return FileDataset(paths, np.searchsorted(originals, labels), [str(int(x)) for x in originals],
                       image_size, name=name)


def read_list(file: Path) -> tuple[list[str], np.ndarray]:
    """Absolute image paths and original integer labels of one list file.

    Example:
        >>> paths, labels = read_list(Path("lists/train.txt"))  # doctest: +SKIP
    """
    base = file.resolve().parent
    paths: list[str] = []
    labels: list[int] = []
    for number, line in _lines(file):
        parsed = parse_list_line(line)
        if parsed is None:
            raise CompatError(
                f"{file}:{number}: {line.strip()!r} is not a `relative/path label` line. Write "
                f"one image per line as `<path> <integer label>`, e.g. `cats/001.png 3`."
            )
        paths.append(os.path.join(base, parsed[0]))
        labels.append(parsed[1])
    if not paths:
        raise CompatError(f"{file} lists no images. Add `<path> <integer label>` lines to it.")
    return paths, np.asarray(labels, dtype=np.int64)


def _lines(file: Path) -> list[tuple[int, str]]:
    """Numbered lines that are neither blank nor ``#`` comments."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CompatError(f"{file} is not UTF-8 text. Save the image list as UTF-8.") from None
    return [(number, line) for number, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")]


def _check_first_path(paths: list[str], file: Path) -> None:
    """A wrong root shows on the first line already: fail now rather than mid-epoch."""
    if not os.path.exists(paths[0]):
        raise CompatError(
            f"{file}: the first image, {paths[0]}, does not exist. Paths in a list are relative to "
            f"the folder of the list file ({file.resolve().parent}); fix the paths or move the list."
        )
