"""The old model's space: what every backward-compatible method needs from the frozen old model.

One small toolkit, so that no method plugin copies it:

* :class:`OldEmbeddings`: old embeddings of training samples, from the old model on each batch or
  from a feature cache (``--old-features F.npz``) looked up by dataset index, with one rule about
  augmentation (below);
* :func:`align_dim` / :func:`check_dims`: a new embedding of another dimension brought to the old
  one (``truncate``, ``zero-pad``); the policy is recorded in the new model's spec
  (``ModelSpec.dim_policy``) so that every evaluator aligns the same way;
* :func:`class_means`: class prototypes of old embeddings; :func:`credible_mask`: MixBCT's per-class
  denoising (the samples nearest their class mean);
* :func:`match_classes`: old classes matched to new ones by name (or a label map);
* :func:`embed_dataset`: a model's embeddings of a whole dataset (eval mode, no augmentation);
* :func:`load_frozen_run`: a frozen model from a run directory, with an error naming the flag.

**Augmentation rule.** A feature cache holds embeddings of the *un-augmented* images. A method that
pairs each training image with its own old embedding (L2, triplet, contrastive, NCCL, MixBCT) would
then compare an augmented new view with an un-augmented old one, so :class:`OldEmbeddings` refuses a
cache under random augmentation unless the method declares that it reads only whole-dataset
statistics (``per_sample=False``: BCT's synthesized classifier rows). On the fly, the old model embeds
the same augmented uint8 batch as the new model, through its own preprocessing.

Example:
    >>> old = OldEmbeddings(ctx.old_model, features_path=None, data=ctx.data)  # doctest: +SKIP
    >>> old(batch.images, batch.indices).shape  # doctest: +SKIP
    torch.Size([128, 128])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compat_core.errors import CompatError

DIM_POLICIES = ("error", "truncate", "zero-pad")


# -- dimensions ----------------------------------------------------------------------------------------
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
    if new_dim == old_dim or (policy == "truncate" and new_dim > old_dim) or (
            policy == "zero-pad" and new_dim < old_dim):
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


# -- classes -------------------------------------------------------------------------------------------
def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of L2-normalised ``features`` per label; returns ``(means (C, D), counts (C,))``.

    A class without samples gets a zero row (never 0/0 = NaN, the BT^2 pitfall).

    Example:
        >>> means, counts = class_means(torch.tensor([[2.0, 0.0], [0.0, 3.0]]), torch.tensor([0, 0]), 2)
        >>> means.tolist(), counts.tolist()
        ([[0.5, 0.5], [0.0, 0.0]], [2, 0])
    """
    normed = F.normalize(features.float(), dim=1)
    sums = torch.zeros(num_classes, features.shape[1], dtype=normed.dtype, device=normed.device)
    sums.index_add_(0, labels.to(normed.device), normed)
    counts = torch.bincount(labels.to(normed.device), minlength=num_classes)
    return sums / counts.clamp_min(1)[:, None].to(sums.dtype), counts


_ROWS = 65536  # rows per block of credible_mask's distance pass


def credible_mask(features: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, keep: float = 0.9, *,
                  column_normalize: bool = False) -> np.ndarray:
    """MixBCT's denoising: per class, the ``ceil(keep * n_c)`` samples nearest their class mean are credible.

    Features are L2-normalised per row; with ``column_normalize`` each dimension is then L2-normalised
    over the whole set (the original ``denoise_credible.py``). Distances are Euclidean to the class mean
    of those features; ties go to the lower position. ``keep`` is a keep ratio in (0, 1] (the original's
    README calls it a threshold). Labels need not be sorted or contiguous.

    Example:
        >>> feats = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.0, 1.0]])
        >>> credible_mask(feats, np.array([0, 0, 0, 1]), keep=0.5).tolist()  # ceil(1.5) = 2 of class 0
        [True, True, False, True]
    """
    if not 0 < keep <= 1:
        raise CompatError(f"the keep ratio {keep} must lie in (0, 1]: the share of each class's samples, nearest "
                          f"their class mean, that counts as credible (MixBCT: 0.9).")
    x = (features.detach().cpu().float().numpy() if isinstance(features, torch.Tensor)
         else np.asarray(features, dtype=np.float32)).copy()
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # in place: one float32 copy in all
    if column_normalize:
        x /= np.maximum(np.linalg.norm(x, axis=0, keepdims=True), 1e-12)
    if len(y) == 0:
        return np.zeros(0, dtype=bool)
    # vectorised over classes (no pass over the labels per class: 93,000 identities stay fast), memory O(N x D)
    _, group = np.unique(y, return_inverse=True)
    counts = np.bincount(group)
    means = np.stack([np.bincount(group, weights=column, minlength=len(counts)) for column in x.T], axis=1)
    means /= counts[:, None]
    distance = np.empty(len(y))
    for start in range(0, len(y), _ROWS):  # float64 distances, a block of rows at a time
        rows = slice(start, start + _ROWS)
        distance[rows] = np.linalg.norm(x[rows] - means[group[rows]], axis=1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    order = np.lexsort((np.arange(len(y)), distance, group))  # by class, then distance, then position
    rank = np.arange(len(y)) - starts[group[order]]
    mask = np.zeros(len(y), dtype=bool)
    # ceil(keep * n_c), the product's float error aside (0.7 * 10 is 7.000000000000001, and 7 are kept)
    mask[order[rank < np.ceil(keep * counts[group[order]] - 1e-9)]] = True
    return mask


def match_classes(old_classes: Sequence[str], new_classes: Sequence[str],
                  label_map: dict[str, str] | None = None) -> torch.Tensor:
    """For each new class, the index of the old class it is (-1: a class the old model never saw).

    Classes match by name, or through ``label_map`` ``{new class: old class}`` (read it with
    :func:`compat_core.data.label_map.read_label_map`); with a map, only mapped classes match.

    Example:
        >>> match_classes(["cat", "dog"], ["dog", "bird", "cat"]).tolist()
        [1, -1, 0]
        >>> match_classes(["c0", "c1"], ["dog", "cat"], {"cat": "c0"}).tolist()
        [-1, 0]
    """
    row = {str(name): i for i, name in enumerate(old_classes)}
    names = [str(n) for n in new_classes]
    if label_map is not None:
        return torch.as_tensor([row.get(label_map[n], -1) if n in label_map else -1 for n in names], dtype=torch.long)
    return torch.as_tensor([row.get(n, -1) for n in names], dtype=torch.long)


# -- models and datasets ---------------------------------------------------------------------------------
def load_frozen_run(source: str, flag: str = "--old", device: torch.device | str = "cpu"):
    """A frozen :class:`~compat_core.models.old.OldModel` from run directory ``source``; the error names
    ``flag`` (``--old``, ``--new``, ``--side-info``...)."""
    from compat_core.models.old import load_old_model
    from compat_core.models.run import is_run_dir

    if not is_run_dir(source):
        raise CompatError(f"{flag} {source}: no compat run directory there (needs model.json and "
                          f"model.safetensors). Train that model first with `compat train baseline --out {source}`.")
    return load_old_model(source, device)


def _batched(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield np.arange(start, min(n, start + batch_size))


@torch.no_grad()
def embed_dataset(model, data, batch_size: int = 256, device: torch.device | str | None = None) -> torch.Tensor:
    """``model.embed`` of every sample of ``data`` in dataset order, (N, D) float32 on ``device`` (default:
    the model's). ``model`` is an :class:`OldModel` or an ``EmbeddingModel``; it is used in eval mode,
    images are not augmented.

    Example:
        >>> feats = embed_dataset(ctx.old_model, ctx.data)  # doctest: +SKIP
        >>> feats.shape  # doctest: +SKIP
        torch.Size([1077, 128])
    """
    if device is None:
        device = model.device if hasattr(model, "device") else next(model.parameters()).device
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    out = [model.embed(data.load_images(positions).to(device)).float()
           for positions in _batched(len(data), batch_size)]
    if was_training:
        model.train()
    return torch.cat(out) if out else torch.zeros(0, int(model.embedding_dim), device=device)


# -- old embeddings of training samples ----------------------------------------------------------------
class OldEmbeddings(nn.Module):
    """Old embeddings of training samples: ``old_model.embed(images)`` (default) or rows of a feature cache
    looked up by the samples' dataset indices.

    A module only so that a cached table follows ``.to(device)``; its buffers are not persistent (never
    written to checkpoints).

    Args:
        old_model: the frozen old model (``ctx.old_model``).
        features_path: a ``.npz`` from ``compat features extract`` of the old model on the training split,
            or None (embed on the fly).
        data: the training dataset; a cache must cover every one of its samples.
        augment: the run's ``--augment``; with a cache, anything but ``none`` is an error when
            ``per_sample`` (see the module's augmentation rule).
        per_sample: the method pairs each training image with its own old embedding.
        method: the method's name, for messages.
    """

    def __init__(self, old_model, features_path: str | None = None, data=None, *, augment: str = "none",
                 per_sample: bool = True, method: str = "train"):
        super().__init__()
        self.old_model, self.path = old_model, features_path
        self.dim = int(old_model.embedding_dim)
        self.cache = None
        if features_path:
            if per_sample and augment != "none":
                raise CompatError(f"`compat train {method}`: --old-features {features_path} holds old embeddings of "
                                  f"un-augmented images, but training augments them (--augment {augment}), so each "
                                  f"new view would be compared with the old embedding of another image. Add "
                                  f"--augment none, or drop --old-features to embed each batch with the old model.")
            from compat_core.models.cached import CachedFeatures

            self.cache = CachedFeatures(features_path, dim=self.dim, data=data, flag="--old-features")

    @property
    def cached(self) -> bool:
        return self.cache is not None

    def forward(self, images: torch.Tensor | None, indices: torch.Tensor) -> torch.Tensor:
        if self.cache is None:
            return self.old_model.embed(images).float()
        return self.cache(indices).float()

    @torch.no_grad()
    def of_dataset(self, data, batch_size: int = 256) -> torch.Tensor:
        """Old embeddings of every sample of ``data`` (no augmentation), (N, D)."""
        if self.cache is None:
            return embed_dataset(self.old_model, data, batch_size)
        indices = torch.as_tensor(np.asarray(data.base_indices, dtype=np.int64))
        return self.cache(indices).float()
