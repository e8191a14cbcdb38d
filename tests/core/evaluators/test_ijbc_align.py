"""Five-point alignment: the similarity estimate, the warp's pixel conventions, and the round trip
through a loose crop written by the test generator."""

import numpy as np
import pytest
from compat_core.evaluators.ijbc.align import ARCFACE_REF_112, align_face, similarity_transform, warp_affine
from compat_core.evaluators.ijbc.meta import MetaFiles, read_faces
from ijbc_fixtures import REFERENCE_POINTS, make_ijbc, similarity, warp_into
from PIL import Image


def lstsq_similarity(source, target):
    """Independent estimate: the similarity [[a, -b, tx], [b, a, ty]] is linear in (a, b, tx, ty)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(source, target, strict=True):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty], [0, 0, 1]])


def test_reference_points_are_insightfaces():
    assert ARCFACE_REF_112.tolist() == REFERENCE_POINTS.tolist()
    assert ARCFACE_REF_112[:, 0].tolist() == pytest.approx([30.2946 + 8, 65.5318 + 8, 48.0252 + 8, 33.5493 + 8,
                                                            62.7299 + 8])


def test_similarity_recovers_a_known_transform_exactly():
    truth = similarity(1.3, 0.4, (12.0, -7.5))
    points = (truth[:2, :2] @ ARCFACE_REF_112.T).T + truth[:2, 2]
    np.testing.assert_allclose(similarity_transform(ARCFACE_REF_112, points), truth, atol=1e-9)


def test_similarity_matches_least_squares_on_noisy_points():
    rng = np.random.default_rng(3)
    for _ in range(50):
        source = rng.uniform(0, 160, (5, 2))
        target = ARCFACE_REF_112 + rng.normal(0, 3, (5, 2))
        np.testing.assert_allclose(similarity_transform(source, target), lstsq_similarity(source, target), atol=1e-8)


def test_similarity_never_reflects():
    mirrored = ARCFACE_REF_112 * [-1, 1]  # a mirror image: the best similarity is still a rotation
    matrix = similarity_transform(mirrored, ARCFACE_REF_112)
    assert np.linalg.det(matrix[:2, :2]) > 0


def test_warp_follows_opencv_pixel_centres_and_black_border():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (150, 170, 3), dtype=np.uint8)
    for _ in range(5):
        matrix = similarity(rng.uniform(0.7, 1.3), rng.uniform(-0.3, 0.3), tuple(rng.uniform(-30, 10, 2)))
        ours = warp_affine(image, matrix).astype(int)
        reference = warp_into(image, matrix, 112, fill=0.0).astype(int)
        assert np.abs(ours - reference).max() <= 1  # both round; float order may differ by one level
        assert np.mean(ours != reference) < 0.01
    shifted = np.eye(3)
    shifted[0, 2] = -0.5  # output pixel x samples input x + 0.5: the mean of two neighbours
    expected = (image[:112, :112].astype(float) + image[:112, 1:113]) / 2
    assert np.abs(warp_affine(image, shifted)[:, :100].astype(float) - expected[:, :100]).max() <= 0.5
    far = np.eye(3)
    far[:2, 2] = 1000.0  # everything maps outside the image: black
    assert warp_affine(image, far).max() == 0


def test_alignment_inverts_the_generators_warp(tmp_path):
    fixture = make_ijbc(tmp_path / "ijbc", subjects=3, noise=0.0)
    faces = read_faces(MetaFiles.of(fixture.root, "ijbc"))
    errors = []
    for k, name in enumerate(faces.names):
        loose = np.asarray(Image.open(fixture.root / "loose_crop" / name).convert("RGB"))
        aligned = align_face(loose, faces.landmarks[k]).astype(float)
        errors.append(np.abs(aligned - fixture.aligned[k])[8:104, 8:104].mean())
    # landmarks are printed with 3 decimals and the crops are JPEG: about one grey level remains
    assert max(errors) < 1.5
    # a wrong alignment (no warp at all) is far off, so the check above can fail
    loose = np.asarray(Image.open(fixture.root / "loose_crop" / faces.names[0]).convert("RGB"))
    assert np.abs(loose[24:136, 24:136].astype(float) - fixture.aligned[0])[8:104, 8:104].mean() > 5
