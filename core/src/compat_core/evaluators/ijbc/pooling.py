"""Template features from image features, as insightface pools them, in one sparse product.

Per face ``i``: ``f_i`` (the image feature, flip already added), optionally L2-normalised, times its
detector score ``s_i``. Per media: the mean of its faces' ``f_i`` (the frames of one video count
once). Per template: the sum of its media, then L2-normalised (an all-zero template stays zero).

Media mean then template sum is one linear map, ``T = A F`` with ``A[t, i] = w_i / |media(i)|``
for the template ``t`` of face ``i``: a sparse (templates x faces) matrix with one entry per face.
So pooling is a single pass over the features, with no copy of them and no loop over templates.
"""

from __future__ import annotations

import numpy as np

from compat_core.errors import CompatError


def face_weights(features: np.ndarray, scores: np.ndarray, *, detector_score: bool = True,
                 normalize: bool = False, source: str = "features") -> np.ndarray:
    """Per-face weight: the detector score (if used) over the feature norm (if normalising).

    Also checks every feature is finite (a NaN would silently poison its whole template).

    Example:
        >>> face_weights(np.array([[3.0, 4.0]], np.float32), np.array([0.5], np.float32), normalize=True)
        array([0.1], dtype=float32)
    """
    squared = np.einsum("ij,ij->i", features, features)
    bad = np.flatnonzero(~np.isfinite(squared))
    if len(bad):
        raise CompatError(f"{source}: the features of face {bad[0] + 1} (and {len(bad) - 1} more) are NaN or "
                          f"infinite. Re-extract the features; a diverged model gives such values.")
    weights = scores.astype(np.float32) if detector_score else np.ones(len(features), np.float32)
    if normalize:
        norms = np.sqrt(squared).astype(np.float32)
        weights = np.divide(weights, norms, out=np.zeros_like(weights), where=norms > 0)
    return weights


def pooling_matrix(face_rows: np.ndarray, media: np.ndarray, weights: np.ndarray, n_templates: int):
    """The sparse (templates x faces) matrix ``A`` with ``A[t, i] = w_i / |media(i) in t|``.

    ``face_rows[i]`` is the template row of face ``i``; a media id shared by two templates is two media.

    Example:
        >>> A = pooling_matrix(np.array([0, 0, 0]), np.array([5, 6, 6]), np.ones(3, np.float32), 1)
        >>> A.toarray().tolist()
        [[1.0, 0.5, 0.5]]
    """
    import scipy.sparse

    _, media_code = np.unique(media, return_inverse=True)  # media ids -> 0..M-1, so keys fit in int64
    key = face_rows.astype(np.int64) * (int(media_code.max(initial=0)) + 1) + media_code.ravel()
    _, media_group, media_size = np.unique(key, return_inverse=True, return_counts=True)
    values = weights / media_size[media_group.ravel()].astype(np.float32)
    columns = np.arange(len(face_rows))
    return scipy.sparse.csr_matrix((values, (face_rows, columns)), shape=(n_templates, len(face_rows)))


def template_features(features: np.ndarray, face_rows: np.ndarray, media: np.ndarray, weights: np.ndarray,
                      n_templates: int) -> np.ndarray:
    """L2-normalised template features (n_templates, D) float32 from image features (N, D).

    Example:
        >>> feats = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 3.0]], np.float32)
        >>> template_features(feats, np.array([0, 0, 0]), np.array([1, 2, 2]), np.ones(3, np.float32), 1)
        array([[0.4472136, 0.8944272]], dtype=float32)
    """
    pooled = np.asarray(pooling_matrix(face_rows, media, weights, n_templates) @ features, dtype=np.float32)
    return l2_normalize(pooled)


def l2_normalize(rows: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm; all-zero rows stay zero (as sklearn's ``normalize``)."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
