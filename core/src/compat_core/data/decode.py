"""Decode one image file into the uint8 tensor layout every dataset yields."""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from PIL import Image

from compat_core.errors import CompatError

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def decode_image(path: str | os.PathLike, image_size: int) -> torch.Tensor:
    """Read ``path`` as RGB and resize it to a square ``image_size`` (bilinear, antialiased).

    Grayscale, palette and alpha images become 3-channel RGB. A missing, corrupt or unreadable
    file raises :class:`CompatError` naming the file.

    Example:
        >>> decode_image("cat.png", 32).shape  # doctest: +SKIP
        torch.Size([3, 32, 32])
    """
    try:
        with warnings.catch_warnings():
            # PIL warns about palette transparency; _to_rgb handles it, so the warning is noise.
            warnings.simplefilter("ignore", UserWarning)
            with Image.open(path) as image:
                image.load()
                rgb = _to_rgb(image)
    except FileNotFoundError:
        raise CompatError(
            f"image {os.fspath(path)} does not exist. Restore the file, or remove it from the data "
            f"(its class folder or its line in the image list)."
        ) from None
    except _DECODE_ERRORS as exc:
        raise CompatError(
            f"image {os.fspath(path)} cannot be read ({type(exc).__name__}: {exc}). The file is "
            f"corrupt or not an image: remove it from the data or replace it with a valid image."
        ) from None
    # PIL's BILINEAR widens its filter when shrinking, so this is antialiased like resize_uint8.
    resized = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB for any PIL mode; 16-bit grayscale is scaled down rather than clipped at 255."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode != "F" and values.max() > 255:
            values = values / 257.0  # 65535 -> 255
        image = Image.fromarray(values.clip(0, 255).round().astype(np.uint8))
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")
