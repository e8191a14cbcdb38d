"""Built-in named datasets: ``digits`` (bundled with scikit-learn) and ``fashion-mnist`` (a local
Debian package). Neither downloads anything."""

from __future__ import annotations

import os

import numpy as np
import torch

from compat_core.data.base import ArrayDataset
from compat_core.data.detect import is_idx
from compat_core.data.formats.common import check_image_size, pick_split
from compat_core.data.formats.idx import load_idx_split
from compat_core.errors import CompatError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]
DIGITS_TEST_SIZE = 0.25
DIGITS_VAL_SIZE = 270  # 15% of the 1,797 images, carved from what the test split leaves


def open_digits(source: str, split: str, image_size: int) -> ArraySplit:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes) with fixed, disjoint, stratified splits.

    ``test`` is 25% (450 images: ``train_test_split(..., test_size=0.25, random_state=0,
    stratify=labels)``); ``val`` is a further stratified 15% of the whole set (270 images) taken
    from the rest with ``random_state=0``; ``train`` keeps the remaining 1,077. The splits never
    change between runs or machines. Pixel values 0..16 are scaled to 0..255. Base indices are
    positions in the whole 1,797-image set, so no two splits share an index.

    Example:
        >>> ds = open_digits("digits", "test", 8)
        >>> len(ds), ds.num_classes
        (450, 10)
        >>> [len(open_digits("digits", name, 8)) for name in ("train", "val")]
        [1077, 270]
    """
    from sklearn.datasets import load_digits

    check_image_size(image_size)
    digits = load_digits()
    labels = digits.target.astype(np.int64)
    chosen = np.sort(pick_split(split, _digits_splits(labels), source))
    pixels = np.rint(digits.images[chosen] * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    images = torch.from_numpy(pixels).unsqueeze(1)
    return ArraySplit(images, labels[chosen], [str(i) for i in range(10)], image_size, name="digits",
                      indices=chosen)


class ArraySplit(ArrayDataset):
    """One split of an in-memory set whose base indices are positions in the whole set, so
    features (and manifests) of different splits never share an index.

    Example:
        >>> import torch
        >>> part = ArraySplit(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), [0, 1], ["a", "b"], 4,
        ...                   indices=[5, 9])
        >>> part.base_indices.tolist(), part[1][2]
        ([5, 9], 9)
    """

    def __init__(self, images: torch.Tensor, labels, classes: list[str], image_size: int, name: str = "array",
                 *, indices):
        super().__init__(images, labels, classes, image_size, name=name)
        self._indices = np.asarray(indices, dtype=np.int64)

    @property
    def base_indices(self) -> np.ndarray:
        return self._indices


def _digits_splits(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Indices of the fixed digits splits; ``test`` is the historical 25% split, unchanged."""
    from sklearn.model_selection import train_test_split

    rest, test = train_test_split(np.arange(len(labels)), test_size=DIGITS_TEST_SIZE, random_state=0,
                                  stratify=labels)
    train, val = train_test_split(rest, test_size=DIGITS_VAL_SIZE, random_state=0, stratify=labels[rest])
    return {"train": train, "val": val, "test": test}


def open_fashion_mnist(source: str, split: str, image_size: int) -> ArrayDataset:
    """Fashion-MNIST (60,000 train and 10,000 test 28x28 images) from local IDX files.

    The files are read from ``$COMPAT_FASHION_MNIST_DIR`` if set, else from
    ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``).

    Example:
        >>> ds = open_fashion_mnist("fashion-mnist", "train", 28)  # doctest: +SKIP
        >>> ds.classes[0]  # doctest: +SKIP
        'T-shirt/top'
    """
    folder = os.environ.get("COMPAT_FASHION_MNIST_DIR") or FASHION_MNIST_DIR
    if not is_idx(folder):
        raise CompatError(
            f"fashion-mnist: no Fashion-MNIST IDX files in {folder}. Install them with "
            f"`apt-get install -y dataset-fashion-mnist` (as root), or set COMPAT_FASHION_MNIST_DIR "
            f"to a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz and the "
            f"t10k-* files."
        )
    return load_idx_split(folder, split, image_size, FASHION_MNIST_CLASSES, name="fashion-mnist")
