"""Format readers: shapes, dtypes, labels, class order and splits, on data the tests write."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from compat_core.data.base import ArrayDataset, FileDataset, resize_uint8
from compat_core.data.formats.cifar import open_cifar
from compat_core.data.formats.idx import open_idx, read_idx
from compat_core.data.formats.imagefolder import open_imagefolder
from compat_core.data.formats.imagelist import open_imagelist
from compat_core.data.formats.named import FASHION_MNIST_DIR, open_digits, open_fashion_mnist
from compat_core.errors import CompatError


def gray_batch(images: np.ndarray, size: int) -> torch.Tensor:
    """What a 1-channel dataset must yield: resized once, then repeated to 3 channels."""
    return resize_uint8(torch.from_numpy(images).unsqueeze(1), size).expand(-1, 3, -1, -1)


# -- IDX --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False])
def test_idx_reads_both_splits(tmp_path, build, gz):
    data = build.idx_folder(tmp_path / "tiny", gz=gz)
    train = open_idx(str(tmp_path / "tiny"), "train", 6)
    test = open_idx(str(tmp_path / "tiny"), "test", 6)
    assert isinstance(train, ArrayDataset) and train.name == "tiny"
    assert train.classes == ["0", "1", "2"] and len(train) == 6 and len(test) == 4
    images = train.load_images(range(6))
    assert images.shape == (6, 3, 6, 6) and images.dtype == torch.uint8
    assert torch.equal(images, gray_batch(data["train"][0], 6))
    assert train.labels.dtype == np.int64
    np.testing.assert_array_equal(test.labels, data["t10k"][1])


def test_idx_val_is_test_and_unknown_split_lists_splits(idx_dir):
    folder, data = idx_dir
    val = open_idx(str(folder), "val", 5)
    np.testing.assert_array_equal(val.labels, data["t10k"][1])
    with pytest.raises(CompatError, match=r"--split dev: .*Available splits: train, test"):
        open_idx(str(folder), "dev", 5)


def test_read_idx_big_endian_types_and_corruption(tmp_path):
    shorts = tmp_path / "shorts.idx"
    shorts.write_bytes(bytes([0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 2]) + bytes([1, 2, 0xFF, 0xFE]))
    values = read_idx(shorts)
    assert values.dtype == np.int16 and values.tolist() == [[258, -2]]
    shorts.write_bytes(shorts.read_bytes()[:-1])
    with pytest.raises(CompatError, match="truncated or corrupt"):
        read_idx(shorts)
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(CompatError, match="not an IDX file"):
        read_idx(bad)


def test_idx_mismatched_counts_are_an_error(tmp_path, build):
    build.idx_folder(tmp_path, gz=False)
    build.idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8), gz=False)
    with pytest.raises(CompatError, match="do not pair up"):
        open_idx(str(tmp_path), "train", 8)


# -- CIFAR ------------------------------------------------------------------------------------------
def test_cifar10_batches_labels_and_names(tmp_path, build):
    root = build.cifar10(tmp_path)
    train = open_cifar(str(root), "train", 32)
    assert train.name == "cifar10" and len(train) == 6
    assert train.classes == [name.decode() for name in build.cifar10_names]
    np.testing.assert_array_equal(train.labels, [1, 2, 9, 2, 3, 9])
    batch1 = pickle.loads((root / "data_batch_1").read_bytes())[b"data"]
    images = train.load_images([0, 1, 2])
    assert images.dtype == torch.uint8 and images.shape == (3, 3, 32, 32)
    assert torch.equal(images, torch.from_numpy(batch1.reshape(3, 3, 32, 32)))
    test = open_cifar(str(tmp_path), "val", 16)  # the parent folder works too; val aliases test
    assert test.load_images([0, 1]).shape == (2, 3, 16, 16)
    np.testing.assert_array_equal(test.labels, [0, 5])


def test_cifar10_batches_load_in_numeric_order(tmp_path, build):
    root = build.cifar10(tmp_path)
    for number in (10, 3, 4, 5, 6, 7, 8, 9):
        build.pickle(root / f"data_batch_{number}", {b"data": np.zeros((1, 3072), np.uint8), b"labels": [number % 10]})
    labels = open_cifar(str(root), "train", 32).labels
    np.testing.assert_array_equal(labels[6:], [3, 4, 5, 6, 7, 8, 9, 0])


def test_cifar100_fine_labels(tmp_path, build):
    build.cifar100(tmp_path)
    train = open_cifar(str(tmp_path), "train", 32)
    assert train.name == "cifar100" and train.num_classes == 100 and train.classes[99] == "c99"
    np.testing.assert_array_equal(train.labels, [99, 0, 42, 1])
    assert len(open_cifar(str(tmp_path), "test", 32)) == 1


def test_cifar_parent_with_both_kinds_is_ambiguous(tmp_path, build):
    build.cifar10(tmp_path)
    build.cifar100(tmp_path)
    with pytest.raises(CompatError, match="expected one CIFAR folder"):
        open_cifar(str(tmp_path), "train", 32)


def test_cifar_pickle_cannot_run_code(tmp_path, build):
    root = build.cifar10(tmp_path)
    marker = tmp_path / "pwned"
    build.pickle(root / "test_batch", {b"data": _Evil(str(marker)), b"labels": [0]})
    with pytest.raises(CompatError, match="cannot be read as a CIFAR pickle"):
        open_cifar(str(root), "test", 32)
    assert not marker.exists()


class _Evil:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


# -- ImageFolder -------------------------------------------------------------------------------------
def test_imagefolder_numeric_class_order_and_labels(imagefolder):
    train = open_imagefolder(str(imagefolder), "train", 8)
    assert isinstance(train, FileDataset) and train.name == "shapes"
    assert train.classes == ["2", "10", "cat"]
    np.testing.assert_array_equal(train.labels, [0, 1, 1, 2])
    assert [Path(p).parent.name for p in train.paths] == ["2", "10", "10", "cat"]
    image, label, index = train[2]
    assert image.shape == (3, 8, 8) and image.dtype == torch.uint8 and (label, index) == (1, 2)
    # 1.png of class "10" was written as a solid (12, 243, 7): resizing keeps a flat colour.
    assert image[:, 0, 0].tolist() == [12, 243, 7] and bool((image == image[:, :1, :1]).all())


def test_imagefolder_classes_agree_across_splits(imagefolder):
    test = open_imagefolder(str(imagefolder), "val", 8)  # only test/ exists: val is its alias
    assert test.classes == ["2", "10", "cat"]
    np.testing.assert_array_equal(test.labels, [0, 1])
    with pytest.raises(CompatError, match="Available splits: train, test"):
        open_imagefolder(str(imagefolder), "holdout", 8)


def test_imagefolder_without_images_is_an_error(imagefolder):
    for image in (imagefolder / "test").rglob("*.png"):
        image.unlink()
    with pytest.raises(CompatError, match="no images found"):
        open_imagefolder(str(imagefolder), "test", 8)


# -- image lists --------------------------------------------------------------------------------------
def test_imagelist_maps_sparse_labels_in_numeric_order(imagelist):
    train = open_imagelist(str(imagelist), "train", 5)
    assert train.classes == ["3", "8"] and train.name == "lists"
    np.testing.assert_array_equal(train.labels, [1, 0])
    test = open_imagelist(str(imagelist), "test", 5)
    np.testing.assert_array_equal(test.labels, [1])
    image = test.load_images([0])[0]  # "img/c d.png": grayscale 30, a path with a space
    assert image.shape == (3, 5, 5) and bool((image == 30).all())


def test_imagelist_contiguous_labels_are_kept(tmp_path, build):
    for i in range(3):
        build.png(tmp_path / f"{i}.png", i)
    (tmp_path / "train.txt").write_text("2.png 2\n0.png 0\n")
    (tmp_path / "val.txt").write_text("1.png 1\n")
    train = open_imagelist(str(tmp_path), "train", 4)
    assert train.classes == ["0", "1", "2"]
    np.testing.assert_array_equal(train.labels, [2, 0])
    assert len(open_imagelist(str(tmp_path), "test", 4)) == 1


def test_single_list_file_serves_every_split(imagelist):
    for split in ("train", "test", "val"):
        ds = open_imagelist(str(imagelist / "train.txt"), split, 4)
        assert ds.name == "train" and len(ds) == 2 and ds.classes == ["3", "8"]


def test_imagelist_errors_name_the_line_and_the_root(tmp_path, imagelist):
    (imagelist / "test.txt").write_text("img/a.png 1\nimg/b.png two\n")
    with pytest.raises(CompatError, match=r"test.txt:2: 'img/b.png two' is not a `relative/path label`"):
        open_imagelist(str(imagelist), "train", 4)
    (imagelist / "test.txt").write_text("elsewhere/a.png 1\n")
    with pytest.raises(CompatError, match="the first image, .*elsewhere/a.png, does not exist"):
        open_imagelist(str(imagelist), "test", 4)


# -- named datasets -----------------------------------------------------------------------------------
def test_digits_split_is_fixed_stratified_and_scaled():
    from sklearn.datasets import load_digits

    train, test = open_digits("digits", "train", 8), open_digits("digits", "test", 8)
    assert (len(train), len(test), train.name, train.classes) == (1077, 450, "digits", list("0123456789"))
    np.testing.assert_array_equal(open_digits("digits", "test", 8).labels, test.labels)
    # Stratified 25%: within one image of a quarter of each class (1797 * 0.25 = 449.25 -> 450).
    assert np.bincount(test.labels).tolist() == [45, 46, 44, 46, 45, 46, 45, 45, 43, 45]
    val = open_digits("digits", "val", 8)
    pixels = torch.cat([train.images, val.images, test.images])[:, 0].reshape(1797, 64).numpy()
    expected = np.rint(load_digits().images * 255 / 16).astype(np.uint8).reshape(1797, 64)
    assert train.images.dtype == torch.uint8 and pixels.max() == 255
    assert sorted(map(bytes, pixels)) == sorted(map(bytes, expected))
    assert open_digits("digits", "val", 16).load_images([0]).shape == (1, 3, 16, 16)


needs_fashion = pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="dataset-fashion-mnist not installed")


@needs_fashion
def test_fashion_mnist_from_the_debian_package(monkeypatch):
    monkeypatch.delenv("COMPAT_FASHION_MNIST_DIR", raising=False)
    train, test = open_fashion_mnist("fashion-mnist", "train", 28), open_fashion_mnist("fashion-mnist", "test", 28)
    assert (len(train), len(test), train.name) == (60000, 10000, "fashion-mnist")
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot" and train.num_classes == 10
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8


def test_fashion_mnist_env_dir_and_missing_install(monkeypatch, idx_dir, tmp_path):
    folder, data = idx_dir
    monkeypatch.setenv("COMPAT_FASHION_MNIST_DIR", str(folder))
    ds = open_fashion_mnist("fashion-mnist", "train", 5)
    assert ds.name == "fashion-mnist" and ds.classes[1] == "Trouser" and len(ds) == 6
    np.testing.assert_array_equal(ds.labels, data["train"][1])
    monkeypatch.setenv("COMPAT_FASHION_MNIST_DIR", str(tmp_path / "nothing"))
    with pytest.raises(CompatError, match=r"apt-get install -y dataset-fashion-mnist.*COMPAT_FASHION_MNIST_DIR"):
        open_fashion_mnist("fashion-mnist", "train", 28)
