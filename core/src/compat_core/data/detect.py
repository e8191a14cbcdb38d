"""Cheap format detectors: look at names and a few bytes, never decode data.

Each detector takes a path and returns a bool; a missing or unreadable path is simply ``False``.
This module imports the standard library only, so ``open_dataset`` can try every registered format
without loading the heavy readers.

Example:
    >>> is_idx("/no/such/folder")
    False
"""

from __future__ import annotations

import os
from pathlib import Path

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR10_FILES = ("data_batch_1", "test_batch", "batches.meta")
CIFAR100_FILES = ("train", "test", "meta")
CIFAR_FOLDERS = ("cifar-10-batches-py", "cifar-100-python")
_LIST_LINES_CHECKED = 5
RECORDIO_MAGIC = (0xCED7230A).to_bytes(4, "little")  # dmlc RecordIO: every record part starts with it


def is_imagefolder(path: str | os.PathLike) -> bool:
    """True for a folder with ``train/`` and ``val/`` or ``test/``, each holding class sub-folders.

    Example:
        >>> is_imagefolder("/no/such/folder")
        False
    """
    root = Path(path)
    evaluation = [root / name for name in ("val", "test") if (root / name).is_dir()]
    return _has_subfolder(root / "train") and any(_has_subfolder(folder) for folder in evaluation)


def is_imagelist(path: str | os.PathLike) -> bool:
    """True for a ``.txt`` file of ``relative/path label`` lines, or a folder holding ``train.txt``
    and ``test.txt`` or ``val.txt`` of such lines.

    Example:
        >>> is_imagelist("/no/such/list.txt")
        False
    """
    root = Path(path)
    try:
        if root.is_file():
            return root.suffix.lower() == ".txt" and _looks_like_list(root)
        evaluation = [root / name for name in ("val.txt", "test.txt") if (root / name).is_file()]
        return (root / "train.txt").is_file() and bool(evaluation) and all(
            _looks_like_list(file) for file in [root / "train.txt", *evaluation])
    except OSError:
        return False


def is_cifar(path: str | os.PathLike) -> bool:
    """True for a ``cifar-10-batches-py`` or ``cifar-100-python`` folder, or a folder containing one.

    Example:
        >>> is_cifar("/no/such/folder")
        False
    """
    return find_cifar_folders(path) != []


def is_idx(path: str | os.PathLike) -> bool:
    """True for a folder with MNIST-style ``train-*`` and ``t10k-*`` IDX files (``.gz`` or not).

    Example:
        >>> is_idx("/no/such/folder")
        False
    """
    return all(find_idx_file(path, stem) is not None for stem in IDX_STEMS)


def is_recordio(path: str | os.PathLike) -> bool:
    """True for an MXNet RecordIO set: a folder with ``train.rec`` + ``train.idx`` (insightface's
    layout), or a ``.rec`` file with its ``.idx`` beside it; the ``.rec`` must start with the magic.

    Example:
        >>> is_recordio("/no/such/train.rec")
        False
    """
    return recordio_files(path) != {}


def recordio_files(path: str | os.PathLike) -> dict[str, tuple[Path, Path]]:
    """``{split: (rec, idx)}``: a folder's ``<split>.rec``/``<split>.idx`` pairs, or ``{"train": ...}``
    for a single ``.rec`` file (which then serves every split)."""
    root = Path(path)
    if root.suffix == ".rec":
        candidates = {"train": root}
    else:
        candidates = {split: root / f"{split}.rec" for split in ("train", "val", "test")}
    found = {}
    for split, rec in candidates.items():
        idx = rec.with_suffix(".idx")
        try:
            with open(rec, "rb") as handle:
                if handle.read(4) == RECORDIO_MAGIC and idx.is_file():
                    found[split] = (rec, idx)
        except OSError:
            continue
    return found


def find_cifar_folders(path: str | os.PathLike) -> list[Path]:
    """The CIFAR folders at ``path``: ``path`` itself if it has the layout, else its CIFAR children."""
    root = Path(path)
    if _cifar_layout(root):
        return [root]
    return [root / name for name in CIFAR_FOLDERS if _cifar_layout(root / name)]


def cifar_kind(folder: Path) -> str:
    """``"cifar10"`` or ``"cifar100"`` for a folder that :func:`find_cifar_folders` returned."""
    return "cifar10" if _all_files(folder, CIFAR10_FILES) else "cifar100"


def find_idx_file(path: str | os.PathLike, stem: str) -> Path | None:
    """The IDX file ``stem`` in ``path``, plain or gzipped; also the ``images.idx3`` dot spelling."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        candidate = Path(path) / name
        if candidate.is_file():
            return candidate
    return None


def _cifar_layout(folder: Path) -> bool:
    return _all_files(folder, CIFAR10_FILES) or _all_files(folder, CIFAR100_FILES)


def _all_files(folder: Path, names: tuple[str, ...]) -> bool:
    return all((folder / name).is_file() for name in names)


def _has_subfolder(folder: Path) -> bool:
    try:
        return any(entry.is_dir() for entry in os.scandir(folder))
    except OSError:
        return False


def _looks_like_list(file: Path) -> bool:
    """The first non-empty lines read ``<path> <integer label>``."""
    checked = 0
    with open(file, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if checked == _LIST_LINES_CHECKED:
                break
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if parse_list_line(line) is None:
                return False
            checked += 1
    return checked > 0


def parse_list_line(line: str) -> tuple[str, int] | None:
    """``("a/b.png", 3)`` for the line ``"a/b.png 3"``; None when the line has another shape.

    Example:
        >>> parse_list_line("cats/1 2.png 7")
        ('cats/1 2.png', 7)
    """
    parts = line.strip().rsplit(None, 1)
    if len(parts) != 2:
        return None
    try:
        return parts[0], int(parts[1])
    except ValueError:
        return None
