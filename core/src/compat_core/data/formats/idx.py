"""MNIST-style IDX files (``train-images-idx3-ubyte[.gz]`` ...), parsed with numpy, held in memory."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from compat_core.data.base import ArrayDataset
from compat_core.data.detect import IDX_STEMS, find_idx_file
from compat_core.data.formats.common import check_image_size, pick_split
from compat_core.errors import CompatError

# IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def open_idx(source: str, split: str, image_size: int) -> ArrayDataset:
    """Open one split of an IDX folder; classes are ``"0"..str(max label)`` over both splits.

    Example:
        >>> ds = open_idx("data/mnist", "train", 28)  # doctest: +SKIP
        >>> ds.classes[:3]  # doctest: +SKIP
        ['0', '1', '2']
    """
    top = max(int(read_idx(_file(source, stem)).max(initial=0)) for stem in IDX_STEMS[1::2])
    return load_idx_split(source, split, image_size, [str(i) for i in range(top + 1)],
                          name=Path(source).resolve().name)


def load_idx_split(source: str, split: str, image_size: int, classes: list[str],
                   name: str) -> ArrayDataset:
    """One split of the IDX folder ``source`` with the given class names.

    Example:
        >>> ds = load_idx_split("data/mnist", "test", 28, list("0123456789"), "mnist")  # doctest: +SKIP
    """
    check_image_size(image_size)
    prefix = pick_split(split, {"train": "train", "test": "t10k"}, source)
    images_file = _file(source, f"{prefix}-images-idx3-ubyte")
    labels_file = _file(source, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(images_file), read_idx(labels_file).astype(np.int64)
    _check_pair(images, labels, images_file, labels_file, len(classes))
    batch = torch.from_numpy(images)
    batch = batch.unsqueeze(1) if batch.ndim == 3 else batch.permute(0, 3, 1, 2)
    return ArrayDataset(batch, labels, classes, image_size, name=name)


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in one IDX file, gzipped or not, in native byte order.

    Example:
        >>> read_idx("train-labels-idx1-ubyte.gz").shape  # doctest: +SKIP
        (60000,)
    """
    raw = _read_bytes(Path(path))
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in IDX_DTYPES:
        raise CompatError(f"{path} is not an IDX file (bad magic number). Replace it with the original file.")
    dtype, ndim = np.dtype(IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CompatError(f"{path} is truncated (incomplete header). Replace it with the original file.")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise CompatError(
            f"{path} holds {len(raw)} bytes but its header {shape} needs {expected}: the file is "
            f"truncated or corrupt. Replace it with the original file."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == _GZIP_MAGIC else raw
    except (OSError, EOFError) as exc:
        raise CompatError(f"{path} cannot be read ({exc}). Replace it with the original file.") from None


def _file(source: str, stem: str) -> Path:
    found = find_idx_file(source, stem)
    if found is None:
        raise CompatError(f"--data {source}: {stem}[.gz] is missing. Add it, or point --data at the "
                          f"folder holding the four IDX files.")
    return found


def _check_pair(images: np.ndarray, labels: np.ndarray, images_file: Path, labels_file: Path,
                num_classes: int) -> None:
    if images.ndim not in (3, 4) or labels.ndim != 1 or len(images) != len(labels):
        raise CompatError(
            f"{images_file} {images.shape} and {labels_file} {labels.shape} do not pair up as images "
            f"(N, H, W) and labels (N,). Replace them with matching original files."
        )
    if images.dtype != np.uint8 or (images.ndim == 4 and images.shape[3] not in (1, 3)):
        raise CompatError(f"{images_file}: only uint8 images with 1 or 3 channels are supported "
                          f"(found {images.dtype}, shape {images.shape}). Convert the file to uint8.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise CompatError(f"{labels_file}: labels must lie in 0..{num_classes - 1}, found "
                          f"{labels.min()}..{labels.max()}. Replace it with the original file.")
