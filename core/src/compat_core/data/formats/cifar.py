"""CIFAR-10/100 python pickles (``cifar-10-batches-py``, ``cifar-100-python``), held in memory."""

from __future__ import annotations

import codecs
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compat_core.data.base import ArrayDataset
from compat_core.data.detect import cifar_kind, find_cifar_folders
from compat_core.data.formats.common import check_image_size, pick_split
from compat_core.errors import CompatError

# Real CIFAR pickles need only these globals: anything else in a file is refused, not executed.
_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): np.zeros(1).__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): np.zeros(1).__reduce__()[0],
    ("numpy.core.multiarray", "scalar"): np.float64(0).__reduce__()[0],
    ("numpy._core.multiarray", "scalar"): np.float64(0).__reduce__()[0],
    ("_codecs", "encode"): codecs.encode,
}


def open_cifar(source: str, split: str, image_size: int) -> ArrayDataset:
    """Open one split of CIFAR-10 or CIFAR-100 (fine labels) with the class names of its meta file.

    Example:
        >>> ds = open_cifar("data/cifar-100-python", "test", 32)  # doctest: +SKIP
        >>> ds.name, ds.num_classes  # doctest: +SKIP
        ('cifar100', 100)
    """
    check_image_size(image_size)
    folder = _single_folder(source)
    kind = cifar_kind(folder)
    if kind == "cifar10":
        batches = _train_batches(folder)
        files = pick_split(split, {"train": batches, "test": [folder / "test_batch"]}, source)
        classes = _names(folder / "batches.meta", b"label_names")
        label_key = b"labels"
    else:
        files = pick_split(split, {"train": [folder / "train"], "test": [folder / "test"]}, source)
        classes = _names(folder / "meta", b"fine_label_names")
        label_key = b"fine_labels"
    parts = [_load_batch(file, label_key) for file in files]
    images = torch.from_numpy(np.concatenate([images for images, _ in parts]))
    labels = np.concatenate([labels for _, labels in parts])
    return ArrayDataset(images, labels, classes, image_size, name=kind)


def _train_batches(folder: Path) -> list[Path]:
    numbered = [(int(m.group(1)), p) for p in folder.iterdir()
                if (m := re.fullmatch(r"data_batch_(\d+)", p.name)) and p.is_file()]
    return [path for _, path in sorted(numbered)]


def _single_folder(source: str) -> Path:
    folders = find_cifar_folders(source)
    if len(folders) != 1:
        found = " and ".join(str(folder) for folder in folders) or "no CIFAR folder"
        raise CompatError(
            f"--data {source}: expected one CIFAR folder, found {found}. Pass the folder itself, "
            f"e.g. --data {folders[0] if folders else 'data/cifar-10-batches-py'}."
        )
    return folders[0]


def _names(meta: Path, key: bytes) -> list[str]:
    return [name.decode("utf-8") if isinstance(name, bytes) else str(name)
            for name in _field(meta, _unpickle(meta), key)]


def _load_batch(file: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(file)
    data = np.asarray(_field(file, batch, b"data"), dtype=np.uint8)
    labels = np.asarray(_field(file, batch, label_key), dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise CompatError(
            f"{file}: data of shape {data.shape} with {len(labels)} labels is not a CIFAR batch "
            f"(expected N x 3072 uint8 and N labels). Replace the file with the original one."
        )
    return data.reshape(-1, 3, 32, 32), labels


def _field(file: Path, batch: dict, key: bytes) -> Any:
    value = batch.get(key, batch.get(key.decode())) if isinstance(batch, dict) else None
    if value is None:
        raise CompatError(
            f"{file} has no {key.decode()!r} entry, so it is not a CIFAR pickle. Replace it with the "
            f"file from the original CIFAR archive."
        )
    return value


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None


def _unpickle(file: Path) -> Any:
    try:
        with open(file, "rb") as handle:
            return _SafeUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, OSError) as exc:
        raise CompatError(
            f"{file} cannot be read as a CIFAR pickle ({type(exc).__name__}: {exc}). Replace it "
            f"with the file from the original CIFAR archive."
        ) from None
