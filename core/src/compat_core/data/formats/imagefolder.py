"""ImageFolder: ``root/{train,val,test}/<class>/<image>``, decoded on demand."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from compat_core.data.base import FileDataset
from compat_core.data.formats.common import SPLITS, check_image_size, class_sort_key, pick_split
from compat_core.errors import CompatError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


def open_imagefolder(source: str, split: str, image_size: int) -> FileDataset:
    """Open one split of an ImageFolder tree.

    Classes are the union of the class folders of every split, so a label means the same class in
    train and test; numeric folder names sort as numbers ("2" before "10"). Images are found
    recursively inside each class folder, in sorted path order.

    Example:
        >>> ds = open_imagefolder("pets", "train", 32)  # doctest: +SKIP
        >>> ds.classes  # doctest: +SKIP
        ['cat', 'dog']
    """
    check_image_size(image_size)
    root = Path(source)
    splits = {name: root / name for name in SPLITS if (root / name).is_dir()}
    folder = pick_split(split, splits, source)
    classes = sorted({name for path in splits.values() for name in _class_folders(path)},
                     key=class_sort_key)
    paths, labels = _list_images(folder, classes)
    if not paths:
        raise CompatError(
            f"--data {source}: no images found under {folder}. Put images in one sub-folder per "
            f"class, e.g. {folder}/<class>/001.png ({', '.join(IMAGE_EXTENSIONS)})."
        )
    return FileDataset(paths, np.asarray(labels, dtype=np.int64), classes, image_size,
                       name=root.resolve().name)


def _class_folders(split_folder: Path) -> list[str]:
    return [entry.name for entry in os.scandir(split_folder) if entry.is_dir()]


def _list_images(folder: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        class_folder = folder / name
        if class_folder.is_dir():
            found = _images_under(class_folder)
            paths.extend(found)
            labels.extend([label] * len(found))
    return paths, labels


def _images_under(folder: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        found.extend(os.path.join(dirpath, name) for name in sorted(filenames)
                     if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."))
    return found
