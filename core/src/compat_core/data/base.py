"""The dataset interface every format implements.

A :class:`Dataset` yields ``(image, label, index)``: ``image`` is a ``uint8`` tensor ``(3, H, W)`` at
the dataset's ``image_size``, ``label`` an int in the stable numeric class order of ``classes``, and
``index`` the sample's position in the *base* dataset (subsets keep it), so caches of old-model
features line up with samples. ``labels`` holds every label without decoding an image.

Normalisation (mean/std) is not the dataset's job: each model applies its own preprocessing, so an
old and a new model with different input conventions can share one batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


class Dataset:
    """Base class. Subclasses set ``classes``, ``labels``, ``image_size``, ``name`` and implement
    :meth:`load_images`."""

    name: str = "dataset"
    classes: list[str]
    labels: np.ndarray
    image_size: int
    in_memory: bool = False

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def base_indices(self) -> np.ndarray:
        """Index of each sample in the base dataset (identity for a base dataset)."""
        return np.arange(len(self), dtype=np.int64)

    def load_images(self, positions: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Return the uint8 images at ``positions`` (positions in *this* dataset) as (B, 3, H, W)."""
        raise NotImplementedError

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int, int]:
        image = self.load_images([position])[0]
        return image, int(self.labels[position]), int(self.base_indices[position])

    def subset(self, positions: np.ndarray, classes: list[str] | None = None,
               label_map: np.ndarray | None = None) -> SubsetDataset:
        """A view on ``positions``; optionally relabel through ``label_map`` onto ``classes``."""
        return SubsetDataset(self, np.asarray(positions, dtype=np.int64), classes, label_map)

    def describe(self) -> str:
        return f"{self.name}: {len(self)} images, {self.num_classes} classes, {self.image_size}px"


class ArrayDataset(Dataset):
    """Images held in memory as one uint8 tensor (N, C, H, W), C in {1, 3}.

    Images are resized once, here, so training reads batches by slicing (no per-item decode).
    """

    in_memory = True

    def __init__(self, images: torch.Tensor, labels: np.ndarray, classes: list[str], image_size: int,
                 name: str = "array"):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("ArrayDataset expects a uint8 tensor of shape (N, C, H, W)")
        self.images = resize_uint8(images, image_size)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = list(classes)
        self.image_size = image_size
        self.name = name

    def load_images(self, positions) -> torch.Tensor:
        index = torch.as_tensor(np.asarray(positions, dtype=np.int64))
        return to_three_channels(self.images.index_select(0, index))


class FileDataset(Dataset):
    """Images decoded from files on demand (ImageFolder, ``path label`` lists)."""

    def __init__(self, paths: list[str], labels: np.ndarray, classes: list[str], image_size: int,
                 name: str = "files"):
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = list(classes)
        self.image_size = image_size
        self.name = name

    def load_images(self, positions) -> torch.Tensor:
        from compat_core.data.decode import decode_image

        return torch.stack([decode_image(self.paths[int(p)], self.image_size) for p in positions])


class SubsetDataset(Dataset):
    """A selection of another dataset's samples that keeps their base indices."""

    def __init__(self, parent: Dataset, positions: np.ndarray, classes: list[str] | None = None,
                 label_map: np.ndarray | None = None):
        self.parent = parent
        self.positions = positions
        labels = parent.labels[positions]
        self.labels = label_map[labels] if label_map is not None else labels
        self.classes = list(classes) if classes is not None else list(parent.classes)
        self.image_size = parent.image_size
        self.in_memory = parent.in_memory
        self.name = parent.name
        preferred = getattr(parent, "preferred_input", None)
        if preferred is not None:  # e.g. face sets normalised with mean = std = 0.5
            self.preferred_input = preferred

    @property
    def base_indices(self) -> np.ndarray:
        return self.parent.base_indices[self.positions]

    def load_images(self, positions) -> torch.Tensor:
        return self.parent.load_images(self.positions[np.asarray(positions, dtype=np.int64)])


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 batch (N, C, H, W) to ``size`` x ``size`` with antialiased bilinear filtering."""
    if images.shape[-2:] == (size, size):
        return images.contiguous()
    out = []
    for chunk in images.split(4096):
        resized = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True,
                                align_corners=False)
        out.append(resized.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def to_three_channels(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 3:
        return images
    if images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1)
    raise ValueError(f"images must have 1 or 3 channels, got {images.shape[1]}")
