"""MXNet RecordIO image sets (insightface's ``train.rec`` + ``train.idx``), read without mxnet.

Byte layout (dmlc-core ``recordio``, mxnet ``recordio.py``):

* ``.idx``: text, one ``<key>\\t<byte offset>`` line per record.
* ``.rec``: records, each one or more *parts*: ``uint32 magic 0xCED7230A``, ``uint32 lrec`` (flag
  ``lrec >> 29``, length ``lrec & (2**29 - 1)``), the bytes, zero padding to 4 bytes. Flag 0 is a
  whole record; 1, 2, 3 are the start, middle and end of a record that the writer split where the
  magic word occurred (4-byte aligned) in the data: the reader joins the parts with the magic.
* A record's payload: the header ``<IfQQ`` (flag, label, id, id2); when ``flag > 0``, ``flag``
  float32 labels follow (the class is the first); then the encoded image (JPEG or PNG).

Two insightface layouts are read: with a header record (key 0 has ``flag > 0`` and labels
``[a, b]``: images are keys ``1 .. a-1``, the keys after them describe identities) and without
(every key in the ``.idx`` is an image), exactly as insightface's ``MXFaceDataset`` chooses.

Images come out as uint8 RGB at ``--image-size`` (the face sets are 112x112: pass
``--image-size 112``). Normalisation is the model's (``model.json``); arcface_torch uses
mean = std = 0.5 per channel, available to models as :data:`FACE_NORMALIZATION`.
"""

from __future__ import annotations

import io
import mmap
import os
import struct
from pathlib import Path

import numpy as np
import torch

from compat_core.data.base import Dataset
from compat_core.data.detect import RECORDIO_MAGIC, recordio_files
from compat_core.data.formats.common import check_image_size, class_sort_key, pick_split
from compat_core.errors import CompatError

IR_HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2: 24 bytes
LENGTH_MASK = (1 << 29) - 1
MAGIC_WORD = int.from_bytes(RECORDIO_MAGIC, "little")
FACE_NORMALIZATION = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}  # arcface_torch: (x / 255 - 0.5) / 0.5
_LABEL_CHUNK = 1 << 20


def open_recordio(source: str, split: str, image_size: int) -> RecordIODataset:
    """Open a RecordIO set: a folder with ``<split>.rec``/``.idx``, or one ``.rec`` file for any split.

    Example:
        >>> ds = open_recordio("faces_emore", "train", 112)  # doctest: +SKIP
        >>> ds.num_classes  # doctest: +SKIP
        85742
    """
    check_image_size(image_size)
    files = recordio_files(source)
    if not files:
        raise CompatError(f"--data {source}: no RecordIO set (train.rec + train.idx, starting with the RecordIO "
                          f"magic) found. Pass the folder holding them or the .rec file.")
    rec, idx = files["train"] if Path(source).suffix == ".rec" else pick_split(split, files, source)
    return RecordIODataset(rec, idx, image_size)


def read_index(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Keys and byte offsets of an ``.idx`` file (``<key>\\t<offset>`` lines).

    Example:
        >>> read_index(Path("train.idx"))  # doctest: +SKIP
        (array([0, 1, 2]), array([0, 5372, 10708]))
    """
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise CompatError(f"cannot read the RecordIO index {path} ({exc}). Restore it, or rebuild it from the "
                          f".rec file.") from None
    keys, offsets = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            key, offset = (int(f) for f in fields)
        except ValueError:
            raise CompatError(f"{path}:{number}: {line.strip()[:60]!r} is not a `<key> <offset>` line. Restore the "
                              f"index of the .rec file.") from None
        keys.append(key)
        offsets.append(offset)
    if not keys:
        raise CompatError(f"RecordIO index {path} lists no records.")
    return np.asarray(keys, dtype=np.int64), np.asarray(offsets, dtype=np.int64)


class RecordFile:
    """Random access to the records of a ``.rec`` file. Uses ``os.pread`` on a descriptor opened
    per process, so forked loader workers never share a file position."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.size = self.path.stat().st_size
        self._fd, self._pid = None, None

    def _descriptor(self) -> int:
        if self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def read(self, offset: int, key: int) -> bytes:
        """The payload of the record at ``offset`` (parts joined, magic words restored)."""
        parts = []
        while True:
            head = os.pread(self._descriptor(), 8, offset)
            if len(head) < 8 or head[:4] != RECORDIO_MAGIC:
                raise CompatError(f"{self.path}: record {key} at byte {offset} does not start with the RecordIO "
                                  f"magic. The .idx does not belong to this .rec, or the file is damaged.")
            lrec = int.from_bytes(head[4:], "little")
            flag, length = lrec >> 29, lrec & LENGTH_MASK
            data = os.pread(self._descriptor(), length, offset + 8)
            if len(data) < length:
                raise CompatError(f"{self.path}: record {key} is cut short (the file ends). The file is truncated.")
            parts.append(data)
            if flag in (0, 3):
                return RECORDIO_MAGIC.join(parts)
            offset += 8 + ((length + 3) & ~3)


def unpack(payload: bytes) -> tuple[np.ndarray, bytes]:
    """``(labels, image bytes)`` of a payload; ``labels`` holds one float, or ``flag`` floats.

    Example:
        >>> labels, image = unpack(IR_HEADER.pack(0, 7.0, 0, 0) + b"jpeg")
        >>> labels.tolist(), image
        ([7.0], b'jpeg')
    """
    flag, label, _, _ = IR_HEADER.unpack_from(payload)
    if flag > 0:
        end = IR_HEADER.size + 4 * flag
        return np.frombuffer(payload[IR_HEADER.size:end], dtype="<f4").copy(), payload[end:]
    return np.array([label], dtype=np.float32), payload[IR_HEADER.size:]


class RecordIODataset(Dataset):
    """The images of one RecordIO set, decoded on demand; labels are read from the record headers."""

    def __init__(self, rec: Path, idx: Path, image_size: int):
        self.rec_path, self.image_size = Path(rec), image_size
        self.name = self.rec_path.parent.name if self.rec_path.stem == "train" else self.rec_path.stem
        self.file = RecordFile(self.rec_path)
        keys, offsets = read_index(Path(idx))
        self.keys, self.offsets = _image_keys(self.file, keys, offsets, Path(idx))
        raw = _labels(self.file, self.keys, self.offsets)
        originals = np.unique(raw)
        self.classes = [str(int(v)) if float(v).is_integer() else str(v) for v in originals]
        order = sorted(range(len(originals)), key=lambda i: class_sort_key(self.classes[i]))
        self.classes = [self.classes[i] for i in order]
        remap = np.empty(len(originals), np.int64)
        remap[order] = np.arange(len(originals))
        self.labels = remap[np.searchsorted(originals, raw)]
        self.preferred_input = {"size": 112, **FACE_NORMALIZATION}

    def load_images(self, positions) -> torch.Tensor:
        return torch.stack([self._image(int(p)) for p in positions])

    def _image(self, position: int) -> torch.Tensor:
        from PIL import Image

        key = int(self.keys[position])
        _, encoded = unpack(self.file.read(int(self.offsets[position]), key))
        try:
            with Image.open(io.BytesIO(encoded)) as image:
                rgb = image.convert("RGB")
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise CompatError(f"{self.rec_path}: the image of record {key} cannot be decoded ({exc}). The file is "
                              f"damaged: rebuild it, or drop the record from the .idx.") from None
        if rgb.size != (self.image_size, self.image_size):
            rgb = rgb.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _image_keys(file: RecordFile, keys: np.ndarray, offsets: np.ndarray, idx: Path) -> tuple[np.ndarray, np.ndarray]:
    """Keys and offsets of the image records, following insightface's choice of layout."""
    first = np.flatnonzero(keys == 0)
    if len(first):
        payload = file.read(int(offsets[first[0]]), 0)
        labels, _ = unpack(payload)
        if IR_HEADER.unpack_from(payload)[0] > 0:  # header record: images are keys 1 .. labels[0] - 1
            wanted = np.arange(1, int(labels[0]), dtype=np.int64)
            from compat_core.lookup import rows_of

            rows, found = rows_of(keys, wanted)
            missing = np.flatnonzero(~found)
            if len(missing):
                raise CompatError(f"{idx}: the header record says images are keys 1..{int(labels[0]) - 1}, but key "
                                  f"{wanted[missing[0]]} is not in the index. Rebuild the index of the .rec file.")
            return wanted, offsets[rows]
    return keys, offsets


def _labels(file: RecordFile, keys: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The class (first label) of every record, from its header alone, in chunks over a memory map."""
    if offsets.max() + 8 + IR_HEADER.size > file.size:
        bad = int(np.argmax(offsets))
        raise CompatError(f"{file.path}: record {keys[bad]} lies beyond the end of the file. The .idx does not "
                          f"belong to this .rec, or the .rec is truncated.")
    labels = np.empty(len(keys), np.float32)
    problem = None
    with open(file.path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        data = np.frombuffer(view, dtype=np.uint8)
        try:
            for begin in range(0, len(keys), _LABEL_CHUNK):
                chunk = slice(begin, begin + _LABEL_CHUNK)
                labels[chunk] = _chunk_labels(file, data, keys[chunk], offsets[chunk])
        except CompatError as exc:  # raised below: its traceback would keep the map open
            problem = str(exc)
        del data  # the memory map closes only when no array views it
    if problem:
        raise CompatError(problem)
    return labels


def _chunk_labels(file: RecordFile, data: np.ndarray, keys: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    # magic, lrec, header and the first float after it (read only when flag > 0; clipped at the end)
    heads = data[np.minimum(offsets[:, None] + np.arange(8 + IR_HEADER.size + 4), len(data) - 1)]
    words = heads.view("<u4")
    if np.any(words[:, 0] != MAGIC_WORD):
        bad = int(np.flatnonzero(words[:, 0] != MAGIC_WORD)[0])
        raise CompatError(f"{file.path}: record {keys[bad]} at byte {offsets[bad]} does not start with the RecordIO "
                          f"magic. The .idx does not belong to this .rec, or the file is damaged.")
    floats = heads.view("<f4")  # the same bytes read as float32: [3] is the header label, [8] the first extra
    labels = np.where(words[:, 2] > 0, floats[:, 8], floats[:, 3])
    split = np.flatnonzero((words[:, 1] >> 29) != 0)  # a part boundary may cut the header: read those whole
    for i in split:
        labels[i] = unpack(file.read(int(offsets[i]), int(keys[i])))[0][0]
    return labels
