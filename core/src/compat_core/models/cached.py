"""Precomputed embeddings of training samples, read from a feature file and looked up by sample index.

Methods that compare a trained model with a frozen one can take the frozen model's embeddings from
``compat features extract`` instead of running it on every batch (``--old-features F.npz``). The
file's ``index`` array holds each row's index in the *base* dataset, the same numbers a training
batch carries in ``batch.indices``, so the lookup survives ``--classes`` subsets and shuffling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from compat_core.errors import CompatError
from compat_core.features import require_file


class CachedFeatures(nn.Module):
    """Rows of a ``.npz`` feature file by dataset index; checked against the model and the data up front.

    A module only so that the table follows ``.to(device)``; its buffers are not persistent (never
    written to checkpoints).

    Args:
        path: the ``.npz`` file (from ``compat features extract``).
        dim: the embedding size the file must have (the frozen model's), or None to accept any.
        data: the training dataset; every one of its samples must have a row.
        flag: the option that named the file, for error messages.

    Example:
        >>> table = CachedFeatures("old-train.npz", dim=128, data=train_data)  # doctest: +SKIP
        >>> table(batch.indices).shape  # doctest: +SKIP
        torch.Size([128, 128])
    """

    def __init__(self, path: str | Path, *, dim: int | None = None, data=None, flag: str = "--old-features",
                 memory_map: bool | None = None):
        super().__init__()
        self.path, self.flag = str(path), flag
        require_file(path, flag)
        table, index = _open_table(Path(path), flag, memory_map)
        self.dim = int(table.shape[1])
        if dim is not None and self.dim != dim:
            raise CompatError(f"{flag} {path} has {self.dim}-dim features but the model it stands for embeds in "
                              f"{dim} dims. Extract the file with that model.")
        lookup = _row_lookup(index, self.path, flag)
        if data is not None:
            _check_covers(lookup, np.asarray(data.base_indices, dtype=np.int64), self.path, flag)
        # A memory-mapped table stays on disk (rows are read per batch, as stored, fp16 allowed); a table
        # in memory is a buffer, so it follows the method to the device.
        self.mapped = table if isinstance(table, np.memmap) else None
        self.register_buffer("table", torch.zeros(0) if self.mapped is not None else torch.from_numpy(table),
                             persistent=False)
        self.register_buffer("row_of_index", torch.from_numpy(lookup), persistent=False)

    @property
    def memory_mapped(self) -> bool:
        return self.mapped is not None

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        indices = indices.to(self.row_of_index.device)
        inside = indices < len(self.row_of_index)
        rows = torch.where(inside, self.row_of_index[indices.clamp_max(len(self.row_of_index) - 1)], -1)
        if bool((rows < 0).any()):
            raise CompatError(f"{self.flag} {self.path} has no row for some samples of the batch. Extract it on "
                              f"the same --data and --split as this run.")
        if self.mapped is None:
            return self.table[rows].float()
        picked = np.asarray(self.mapped[rows.cpu().numpy()], dtype=np.float32)
        if not np.isfinite(picked).all():
            raise CompatError(f"{self.flag} {self.path} holds NaN or infinite features for some samples of this "
                              f"batch. Re-extract the file.")
        return torch.from_numpy(picked).to(indices.device)


#: Feature tables larger than this many bytes are memory-mapped instead of read into memory (when the file
#: stores them uncompressed, as `compat features extract` does). COMPAT_CACHE_IN_MEMORY_MAX overrides it.
IN_MEMORY_MAX = 2 * 1024 ** 3


def _open_table(path: Path, flag: str, memory_map: bool | None) -> tuple[np.ndarray, np.ndarray]:
    """``(features, index)``: the features memory-mapped when asked, or when larger than the in-memory
    limit and stored uncompressed; otherwise read (float32, or float16 as stored)."""
    import os

    from compat_core.io import memmap_npz_member, read_npz

    mapped = None
    if memory_map is not False:
        try:
            mapped = memmap_npz_member(path, "features")
        except (OSError, ValueError, EOFError):
            mapped = None
        limit = int(os.environ.get("COMPAT_CACHE_IN_MEMORY_MAX", IN_MEMORY_MAX))
        if mapped is not None and memory_map is None and mapped.nbytes <= limit:
            mapped = None
        if memory_map and mapped is None:
            raise CompatError(f"{flag} {path} stores its features compressed, so they cannot be memory-mapped. "
                              f"Re-extract it with `compat features extract` (uncompressed).")
    if mapped is not None:
        table, index = mapped, _read_member(path, "index", flag, len(mapped))
    else:
        arrays = read_npz(path, ("features",), what="feature file",
                          unreadable_fix="Create one with `compat features extract`.",
                          missing_fix="A feature cache needs features (N x D) and index (N).")
        table = arrays["features"]
        index = arrays.get("index", np.arange(len(table)))
    if table.ndim != 2 or len(table) != len(index):
        raise CompatError(f"{flag} {path}: features {table.shape} and index {index.shape} do not match. "
                          f"Re-extract it with `compat features extract`.")
    if mapped is None and table.dtype not in (np.float16, np.float32):
        table = table.astype(np.float32)
    if mapped is None:  # a memory-mapped table is too big to scan here; its rows are checked as they are read
        from compat_core.features import check_finite

        check_finite(table, path, "features")
    return table, index


def _read_member(path: Path, name: str, flag: str, rows: int) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return npz[name] if name in npz.files else np.arange(rows)
    except (OSError, ValueError) as exc:
        raise CompatError(f"{flag} {path}: cannot read its '{name}' array ({exc}). Re-extract it with "
                          f"`compat features extract`.") from None


def _row_lookup(index: np.ndarray, path: str, flag: str) -> np.ndarray:
    """``lookup[i]`` = the row holding dataset index ``i``, or -1."""
    index = index.astype(np.int64)
    if len(index) == 0:
        raise CompatError(f"{flag} {path} holds no features. Re-extract it.")
    if index.min() < 0 or len(np.unique(index)) != len(index):
        raise CompatError(f"{flag} {path} has negative or repeated sample indices. Re-extract it with "
                          f"`compat features extract`.")
    lookup = np.full(int(index.max()) + 1, -1, dtype=np.int64)
    lookup[index] = np.arange(len(index))
    return lookup


def _check_covers(lookup: np.ndarray, wanted: np.ndarray, path: str, flag: str) -> None:
    inside = wanted < len(lookup)
    found = np.zeros(len(wanted), dtype=bool)
    found[inside] = lookup[wanted[inside]] >= 0
    if not found.all():
        missing = wanted[~found]
        raise CompatError(f"{flag} {path} lacks {len(missing)} of the {len(wanted)} training samples (e.g. "
                          f"index {int(missing[0])}). Extract it on the same --data and --split as this run.")
