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


def open_digits(source: str, split: str, image_size: int) -> ArrayDataset:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes) with a fixed stratified 75/25 split.

    Pixel values 0..16 are scaled to 0..255. The split never changes between runs or machines
    (``train_test_split(..., random_state=0, stratify=labels)``): 1,347 train and 450 test images.

    Example:
        >>> ds = open_digits("digits", "test", 8)
        >>> len(ds), ds.num_classes
        (450, 10)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    check_image_size(image_size)
    digits = load_digits()
    labels = digits.target.astype(np.int64)
    train, test = train_test_split(np.arange(len(labels)), test_size=DIGITS_TEST_SIZE, random_state=0,
                                   stratify=labels)
    chosen = np.sort(pick_split(split, {"train": train, "test": test}, source))
    pixels = np.rint(digits.images[chosen] * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    images = torch.from_numpy(pixels).unsqueeze(1)
    return ArrayDataset(images, labels[chosen], [str(i) for i in range(10)], image_size, name="digits")


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
