"""Where old embeddings come from (the old model on the fly, or a cached ``.npz``) and how a new
embedding is aligned to the old dimension.

Each model carries its own preprocessing, so the uint8 batch that feeds the new model feeds the old
one too, whatever input size either was trained at.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from compat_core.errors import CompatError
from torch import nn


def align_dim(embedding: torch.Tensor, old_dim: int, policy: str) -> torch.Tensor:
    """Bring new embeddings (B, D_new) to ``old_dim`` columns with ``policy``.

    ``truncate`` keeps the first ``old_dim`` values (OpenBCT), ``zero-pad`` appends zeros; ``error``
    accepts only equal dims. Call :func:`check_dims` first for a user-facing message.

    Example:
        >>> align_dim(torch.ones(1, 3), 2, "truncate").tolist()
        [[1.0, 1.0]]
        >>> align_dim(torch.ones(1, 2), 3, "zero-pad").tolist()
        [[1.0, 1.0, 0.0]]
    """
    dim = embedding.shape[1]
    if dim == old_dim:
        return embedding
    if policy == "truncate" and dim > old_dim:
        return embedding[:, :old_dim]
    if policy == "zero-pad" and dim < old_dim:
        return F.pad(embedding, (0, old_dim - dim))
    raise ValueError(f"cannot align dim {dim} to {old_dim} with policy {policy!r}")


def check_dims(new_dim: int, old_dim: int, policy: str, method: str) -> None:
    """Raise a :class:`CompatError` when ``policy`` cannot bring ``new_dim`` to ``old_dim``."""
    if new_dim == old_dim:
        return
    if policy == "truncate" and new_dim > old_dim:
        return
    if policy == "zero-pad" and new_dim < old_dim:
        return
    if policy == "error":
        fix = "truncate" if new_dim > old_dim else "zero-pad"
        raise CompatError(f"`compat train {method}`: the new embedding has {new_dim} dims but the old model's has "
                          f"{old_dim}. Train with --embedding-dim {old_dim}, or pass --dim-policy {fix}.")
    need = "longer" if policy == "truncate" else "shorter"
    fix = "zero-pad" if policy == "truncate" else "truncate"
    raise CompatError(f"`compat train {method}`: --dim-policy {policy} needs a new embedding {need} than the old "
                      f"one, but the new has {new_dim} dims and the old {old_dim}. Use --dim-policy {fix} or "
                      f"--embedding-dim {old_dim}.")


def batched_positions(n: int, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, n, batch_size):
        yield np.arange(start, min(n, start + batch_size))


class OldEmbeddings(nn.Module):
    """Old embeddings of training samples: from ``old_model.embed(images)`` (default) or from a
    feature file looked up by the samples' dataset indices.

    A module only so that a cached feature table follows ``.to(device)``; its buffers are not
    persistent (never written to checkpoints).

    Example:
        >>> source = OldEmbeddings(old_model, features_path=None)  # doctest: +SKIP
        >>> source(batch.images, batch.indices).shape  # doctest: +SKIP
        torch.Size([32, 128])
    """

    def __init__(self, old_model, features_path: str | None = None, data=None):
        super().__init__()
        self.old_model = old_model
        self.path = features_path
        self.register_buffer("table", torch.zeros(0), persistent=False)
        self.register_buffer("row_of_index", torch.zeros(0, dtype=torch.long), persistent=False)
        self.dim = int(old_model.embedding_dim)
        if features_path:
            self._load(features_path, data)

    def _load(self, path: str, data) -> None:
        from pathlib import Path

        from compat_core.features import load

        if not Path(path).is_file():
            raise CompatError(f"--old-features {path}: no such file. Create it with `compat features extract "
                              f"--model OLD_RUN --data DATA --split train --out {path}`.")
        feats = load(path)
        if feats.features.shape[1] != self.dim:
            raise CompatError(f"--old-features {path} has {feats.features.shape[1]}-dim features but the old model "
                              f"embeds in {self.dim} dims. Extract the file with the --old model.")
        index = feats.index.astype(np.int64)
        if len(index) and index.min() < 0:
            raise CompatError(f"--old-features {path} has negative sample indices; re-extract it.")
        size = int(max(index.max(initial=-1), 0 if data is None else int(np.max(data.base_indices, initial=-1)))) + 1
        lookup = np.full(size, -1, dtype=np.int64)
        lookup[index] = np.arange(len(index))
        if data is not None:
            missing = np.asarray(data.base_indices)[lookup[np.asarray(data.base_indices)] < 0]
            if len(missing):
                raise CompatError(f"--old-features {path} lacks {len(missing)} of the {len(data)} training samples "
                                  f"(e.g. index {int(missing[0])}). Extract it on the same --data and --split "
                                  f"as this training run.")
        self.table = torch.from_numpy(feats.features)
        self.row_of_index = torch.from_numpy(lookup)

    @property
    def cached(self) -> bool:
        return bool(self.path)

    def forward(self, images: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        if not self.cached:
            return self.old_model.embed(images).float()
        rows = self.row_of_index[indices.to(self.row_of_index.device)]
        if bool((rows < 0).any()):
            raise CompatError(f"--old-features {self.path} has no row for some batch samples; re-extract it.")
        return self.table[rows]

    @torch.no_grad()
    def of_dataset(self, data, batch_size: int = 256) -> torch.Tensor:
        """Old embeddings of every sample of ``data`` (eval mode, no augmentation), (N, D)."""
        device = self.table.device if self.cached else self.old_model.device
        out = []
        for positions in batched_positions(len(data), batch_size):
            indices = torch.as_tensor(np.asarray(data.base_indices)[positions])
            if self.cached:
                out.append(self.forward(None, indices.to(device)).float())
            else:
                images = data.load_images(positions).to(device)
                out.append(self.old_model.embed(images).float())
        return torch.cat(out) if out else torch.zeros(0, self.dim, device=device)
