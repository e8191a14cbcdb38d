"""MXNet RecordIO face sets written byte by byte (dmlc framing, mxnet's IRHeader), without mxnet: the
writers the RecordIO tests and the face-protocol end-to-end test share.

Importable from every test folder: pytest puts ``tests/`` (home of the root conftest) on ``sys.path``.
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

MAGIC = struct.pack("<I", 0xCED7230A)


def frame(payload: bytes) -> bytes:
    """One dmlc record: split wherever the magic word sits 4-byte aligned in the payload (flags 1, 2, 3),
    each part behind the magic and ``flag << 29 | length``, zero padding after the last part."""
    parts, start = [], 0
    for i in range(0, len(payload) - len(payload) % 4, 4):
        if payload[i:i + 4] == MAGIC:
            parts.append(payload[start:i])
            start = i + 4
    parts.append(payload[start:])
    flags = [0] if len(parts) == 1 else [1] + [2] * (len(parts) - 2) + [3]
    out = b"".join(MAGIC + struct.pack("<I", flag << 29 | len(part)) + part for part, flag in zip(parts, flags, strict=True))
    return out + b"\0" * (-len(payload) % 4)


def pack(label, image: bytes, ident: int = 0, ident2: int = 0) -> bytes:
    """mxnet.recordio.pack: a scalar label in the header, or ``flag`` float labels after it."""
    if np.ndim(label) == 0:
        return struct.pack("<IfQQ", 0, float(label), ident, ident2) + image
    labels = np.asarray(label, np.float32)
    return struct.pack("<IfQQ", len(labels), 0.0, ident, ident2) + labels.tobytes() + image


def encode(array: np.ndarray, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=kind)
    return buffer.getvalue()


def write_rec(folder, records, name="train"):
    """records: list of (key, payload); writes <name>.rec and <name>.idx (``key\\toffset`` lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    rec, lines = b"", []
    for key, payload in records:
        lines.append(f"{key}\t{len(rec)}")
        rec += frame(payload)
    (folder / f"{name}.rec").write_bytes(rec)
    (folder / f"{name}.idx").write_text("\n".join(lines) + "\n")
    return folder


def faces(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)
