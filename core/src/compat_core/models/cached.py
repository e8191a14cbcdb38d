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

    def __init__(self, path: str | Path, *, dim: int | None = None, data=None, flag: str = "--old-features"):
        super().__init__()
        from compat_core.features import load

        self.path, self.flag = str(path), flag
        if not Path(path).is_file():
            raise CompatError(f"{flag} {path}: no such file. Create it with `compat features extract --model RUN "
                              f"--data DATA --split train --out {path}`.")
        feats = load(path)
        self.dim = int(feats.features.shape[1])
        if dim is not None and self.dim != dim:
            raise CompatError(f"{flag} {path} has {self.dim}-dim features but the model it stands for embeds in "
                              f"{dim} dims. Extract the file with that model.")
        lookup = _row_lookup(feats.index, self.path, flag)
        if data is not None:
            _check_covers(lookup, np.asarray(data.base_indices, dtype=np.int64), self.path, flag)
        self.register_buffer("table", torch.from_numpy(feats.features), persistent=False)
        self.register_buffer("row_of_index", torch.from_numpy(lookup), persistent=False)

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        indices = indices.to(self.row_of_index.device)
        inside = indices < len(self.row_of_index)
        rows = torch.where(inside, self.row_of_index[indices.clamp_max(len(self.row_of_index) - 1)], -1)
        if bool((rows < 0).any()):
            raise CompatError(f"{self.flag} {self.path} has no row for some samples of the batch. Extract it on "
                              f"the same --data and --split as this run.")
        return self.table[rows]


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
