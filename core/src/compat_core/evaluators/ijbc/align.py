"""Five-point face alignment to insightface's 112x112 reference, without OpenCV.

The transform is the least-squares similarity (rotation, uniform scale, translation; no reflection)
from the five detected landmarks to :data:`ARCFACE_REF_112` (Umeyama 1991, as skimage's
``SimilarityTransform.estimate`` computes it). The warp follows ``cv2.warpAffine`` conventions
(integer pixel centres, bilinear interpolation, black outside the image) and is done by torch's
``grid_sample`` in float32, rounded to the nearest uint8.

Interpolation choice and its effect: bilinear, as ``cv2.warpAffine``'s default. OpenCV quantises the
sampling position to 1/32 pixel and the weights to 1/1024; we sample at the exact position, so the
two aligned crops differ by at most a grey level or two where the image has sharp edges and by well
under one grey level on average, far below the JPEG noise of the loose crops. Pillow's own affine
transform was not used: its bilinear output truncates instead of rounding, which darkens every crop
by half a grey level on average.
"""

from __future__ import annotations

import numpy as np

#: insightface's five reference points (eyes, nose tip, mouth corners) in a 112x112 crop.
ARCFACE_REF_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                            [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
ALIGNED_SIZE = 112


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 3x3 similarity matrix ``M`` minimising ``sum |target - M source|^2`` (Umeyama, no reflection).

    Example:
        >>> src = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> (np.round(similarity_transform(src, 2 * src + 5), 6) + 0.0)[:2].tolist()  # + 0.0: no -0.0
        [[2.0, 0.0, 5.0], [0.0, 2.0, 5.0]]
    """
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    mean_s, mean_t = source.mean(0), target.mean(0)
    centred_s, centred_t = source - mean_s, target - mean_t
    covariance = centred_t.T @ centred_s / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(covariance) < 0:  # the best orthogonal map would be a reflection: flip the last axis
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    variance = centred_s.var(0).sum()
    scale = (singular * sign).sum() / variance if variance > 0 else 1.0
    matrix = np.eye(3)
    matrix[:2, :2] = scale * rotation
    matrix[:2, 2] = mean_t - scale * rotation @ mean_s
    return matrix


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """``dst(x, y) = src(M^-1 (x, y))`` on integer pixel centres, bilinear, black outside (cv2 semantics).

    ``image`` is a uint8 array (H, W, C); returns the uint8 array (size, size, C), rounded to nearest.

    Example:
        >>> warp_affine(np.full((160, 160, 3), 9, np.uint8), np.eye(3))[50, 50].tolist()
        [9, 9, 9]
    """
    import torch
    import torch.nn.functional as F

    height, width = image.shape[:2]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    inverse = np.linalg.inv(matrix)
    source_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    source_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    # grid_sample(align_corners=False) puts pixel i's centre at (2i + 1) / n - 1.
    grid = np.stack([(2 * source_x + 1) / width - 1, (2 * source_y + 1) / height - 1], axis=-1)
    pixels = torch.tensor(image).permute(2, 0, 1)[None].float()  # a copy: decoded images are read-only
    warped = F.grid_sample(pixels, torch.from_numpy(grid[None]).float(), mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    return warped[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8).numpy()


def align_face(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 112x112 uint8 array (112, 112, C) of a loose crop (H, W, C) aligned by its five landmarks.

    Example:
        >>> align_face(np.zeros((160, 160, 3), np.uint8), ARCFACE_REF_112).shape
        (112, 112, 3)
    """
    return warp_affine(image, similarity_transform(landmarks, ARCFACE_REF_112))
