"""Decoding single images, and ``open_dataset``'s name / path / format resolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from compat_core.data import open_dataset
from compat_core.data.base import ArrayDataset, FileDataset
from compat_core.data.decode import decode_image
from compat_core.errors import CompatError
from compat_core.plugins import PluginHost
from compat_core.registry import Entry
from PIL import Image


# -- decode_image -------------------------------------------------------------------------------------
def test_decode_resizes_to_a_square_uint8_rgb(tmp_path, build):
    path = build.png(tmp_path / "wide.png", 40, size=(20, 6))
    image = decode_image(path, 9)
    assert image.shape == (3, 9, 9) and image.dtype == torch.uint8
    assert image[:, 4, 4].tolist() == [40, 215, 7]


def test_decode_is_antialiased_bilinear(tmp_path):
    stripes = np.zeros((8, 8, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel columns: point sampling would give 0 or 255, never grey
    Image.fromarray(stripes).save(tmp_path / "s.png")
    image = decode_image(tmp_path / "s.png", 4)
    assert 100 < int(image.float().mean()) < 155 and int(image.max()) < 255


@pytest.mark.parametrize("mode, value, expected", [("L", 77, 77), ("LA", (77, 0), 77), ("RGBA", (5, 6, 7, 0), 5)])
def test_decode_converts_modes_to_rgb(tmp_path, mode, value, expected):
    Image.new(mode, (3, 3), value).save(tmp_path / "x.png")
    image = decode_image(tmp_path / "x.png", 3)
    assert image.shape == (3, 3, 3) and int(image[0, 1, 1]) == expected
    if mode.startswith("L"):
        assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def test_decode_scales_16_bit_grey(tmp_path):
    Image.fromarray(np.full((4, 4), 128 * 257, np.uint16)).save(tmp_path / "deep.png")
    assert decode_image(tmp_path / "deep.png", 4).unique().tolist() == [128]


def test_corrupt_image_names_the_file_and_the_fix(tmp_path, build):
    good = build.png(tmp_path / "good.png", 1).read_bytes()
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good[: len(good) // 2])
    with pytest.raises(CompatError, match=r"image .*corrupt.png cannot be read.*remove it .* or replace it"):
        decode_image(corrupt, 4)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(CompatError, match="text.png cannot be read"):
        decode_image(tmp_path / "text.png", 4)
    with pytest.raises(CompatError, match="missing.png does not exist"):
        decode_image(tmp_path / "missing.png", 4)


def test_corrupt_image_surfaces_through_a_dataset(imagefolder):
    (imagefolder / "test" / "2" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = open_dataset(str(imagefolder), "test", 8)
    with pytest.raises(CompatError, match="0.png cannot be read"):
        ds[0]


# -- open_dataset --------------------------------------------------------------------------------------
def test_named_datasets_open_by_name():
    ds = open_dataset("digits", "test", 12)
    assert isinstance(ds, ArrayDataset) and (ds.name, len(ds), ds.image_size) == ("digits", 450, 12)


def test_paths_open_with_the_detected_format(tmp_path, build, imagefolder, imagelist, idx_dir):
    build.cifar100(tmp_path / "c")
    opened = {
        "folder": open_dataset(str(imagefolder), "train", 8),
        "list": open_dataset(str(imagelist), "train", 8),
        "list-file": open_dataset(str(imagelist / "test.txt"), "test", 8),
        "cifar": open_dataset(str(tmp_path / "c"), "test", 8),
        "idx": open_dataset(str(idx_dir[0]), "train", 8),
    }
    assert {key: (type(ds), ds.name) for key, ds in opened.items()} == {
        "folder": (FileDataset, "shapes"), "list": (FileDataset, "lists"), "list-file": (FileDataset, "test"),
        "cifar": (ArrayDataset, "cifar100"), "idx": (ArrayDataset, "digits3"),
    }
    assert all(ds.image_size == 8 for ds in opened.values())


def test_missing_path_suggests_the_builtin_names(tmp_path):
    with pytest.raises(CompatError, match=r"no such file or folder, and not a built-in dataset name \(digits, fashion-mnist"):
        open_dataset(str(tmp_path / "nope"))


def test_unrecognised_folder_lists_every_format(tmp_path):
    (tmp_path / "readme.md").write_text("hi")
    with pytest.raises(CompatError) as caught:
        open_dataset(str(tmp_path))
    message = str(caught.value)
    assert "format is not recognised" in message and "\n" not in message
    for name in ("imagefolder (Folder with train/", "imagelist (", "cifar (CIFAR-10/100", "idx (MNIST-style"):
        assert name in message


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_bad_image_size(size):
    with pytest.raises(CompatError, match="--image-size"):
        open_dataset("digits", image_size=size)


def test_plugin_formats_and_names_come_from_the_registry(tmp_path, monkeypatch):
    host = PluginHost()
    calls = []
    host.datasets.add(Entry("dataset", "never", "p", "no", {"detect": lambda p: False, "factory": None}))
    host.datasets.add(Entry("dataset", "always", "p", "yes", {
        "detect": lambda p: True, "factory": lambda *args: calls.append(("always", *args)) or "A"}))
    host.datasets.add(Entry("dataset", "toy", "p", "named", {"factory": lambda *args: calls.append(("toy", *args)) or "T"}))
    monkeypatch.setattr("compat_core.data.open.get_host", lambda: host)
    assert open_dataset(str(tmp_path), "val", 7) == "A"
    assert open_dataset("toy", "test", 5) == "T"
    assert calls == [("always", str(tmp_path), "val", 7), ("toy", "toy", "test", 5)]
    with pytest.raises(CompatError, match=r"not a built-in dataset name \(toy\)"):
        open_dataset("digits")
