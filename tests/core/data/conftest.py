"""Tiny data sets written by the tests themselves, in the real on-disk layouts.

Tests reach the writers through the ``build`` fixture rather than ``import conftest``, which would
be ambiguous once other test folders have a conftest of their own.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

CIFAR10_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
                 b"ship", b"truck"]


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    """IDX bytes by hand: two zero bytes, type 0x08 (ubyte), ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def idx_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 5, 4), dtype=np.uint8), (np.arange(n) % 3).astype(np.uint8)


def make_idx_folder(root: Path, gz: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    root.mkdir(parents=True, exist_ok=True)
    data = {"train": idx_arrays(6, seed=1), "t10k": idx_arrays(4, seed=2)}
    for prefix, (images, labels) in data.items():
        write_idx(root / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels, gz)
    return data


def dump(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def cifar_data(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def make_cifar10(parent: Path) -> Path:
    root = parent / "cifar-10-batches-py"
    root.mkdir(parents=True)
    for number in (1, 2):
        dump(root / f"data_batch_{number}", {b"batch_label": b"training batch", b"data": cifar_data(3, number),
                                              b"labels": [number, number + 1, 9], b"filenames": [b"a"] * 3})
    dump(root / "test_batch", {b"data": cifar_data(2, 7), b"labels": [0, 5]})
    dump(root / "batches.meta", {b"label_names": CIFAR10_NAMES, b"num_vis": 3072})
    return root


def make_cifar100(parent: Path) -> Path:
    root = parent / "cifar-100-python"
    root.mkdir(parents=True)
    dump(root / "train", {b"data": cifar_data(4, 3), b"fine_labels": [99, 0, 42, 1], b"coarse_labels": [0] * 4})
    dump(root / "test", {b"data": cifar_data(1, 4), b"fine_labels": [7], b"coarse_labels": [0]})
    dump(root / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)],
                         b"coarse_label_names": [b"x"] * 20})
    return root


def write_png(path: Path, value: int, size: tuple[int, int] = (6, 4), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 255 - value, 7)
    Image.new(mode, size, color).save(path)
    return path


def make_imagefolder(root: Path) -> Path:
    """train/{2,10,cat}/ and test/{2,10}/: "10" and "2" check numeric order, "cat" alphabetic."""
    for split, counts in {"train": {"10": 2, "2": 1, "cat": 1}, "test": {"2": 1, "10": 1}}.items():
        for name, count in counts.items():
            for i in range(count):
                write_png(root / split / name / f"{i}.png", value=10 * i + len(name))
    return root


@pytest.fixture
def build():
    return SimpleNamespace(idx=write_idx, idx_arrays=idx_arrays, idx_folder=make_idx_folder, pickle=dump,
                           cifar10=make_cifar10, cifar100=make_cifar100, png=write_png,
                           imagefolder=make_imagefolder, cifar10_names=CIFAR10_NAMES)


@pytest.fixture
def idx_dir(tmp_path):
    return tmp_path / "digits3", make_idx_folder(tmp_path / "digits3", gz=True)


@pytest.fixture
def imagefolder(tmp_path):
    return make_imagefolder(tmp_path / "shapes")


@pytest.fixture
def imagelist(tmp_path):
    """Labels 3 and 8 only (not contiguous); test.txt has a path with a space."""
    root = tmp_path / "lists"
    write_png(root / "img" / "a.png", 10)
    write_png(root / "img" / "b.png", 20)
    write_png(root / "img" / "c d.png", 30, mode="L")
    (root / "train.txt").write_text("img/a.png 8\n\n# comment\nimg/b.png 3\n")
    (root / "test.txt").write_text("img/c d.png 8\n")
    return root
