"""Template pooling (detector weighting, media mean, template sum, L2) and pair scoring, by hand and
against a straightforward loop over templates as insightface writes it."""

import numpy as np
import pytest
from compat_core.errors import CompatError
from compat_core.evaluators.ijbc.pooling import face_weights, template_features
from compat_core.evaluators.ijbc.verification import pair_scores


def unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def loop_pooling(features, templates, media, scores, detector=True, normalize=False):
    """insightface's image2template_feature: a loop over templates and their media, in float64."""
    feats = features.astype(np.float64)
    if normalize:
        feats = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    if detector:
        feats = feats * scores[:, None]
    out = []
    for t in np.unique(templates):
        rows = np.where(templates == t)[0]
        total = np.zeros(feats.shape[1])
        for m in np.unique(media[rows]):
            total += feats[rows[media[rows] == m]].mean(axis=0)
        out.append(total / np.linalg.norm(total) if np.linalg.norm(total) > 0 else total)
    return np.array(out)


def pool(features, templates, media, scores, detector=True, normalize=False):
    weights = face_weights(features, scores, detector_score=detector, normalize=normalize)
    rows = np.unique(templates, return_inverse=True)[1]
    return template_features(features, rows, media, weights, len(np.unique(templates)))


def test_one_still_plus_three_frames_is_still_plus_mean_of_frames():
    still, frames = [1.0, 0.0, 0.0], [[0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [0.0, 3.0, 3.0]]
    features = np.array([still, *frames], np.float32)
    result = pool(features, np.array([9, 9, 9, 9]), np.array([1, 2, 2, 2]), np.ones(4, np.float32))
    np.testing.assert_allclose(result[0], unit([1.0, 2.0, 2.0]), rtol=1e-6)


def test_detector_score_weights_only_its_own_face():
    features = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]], np.float32)
    templates, media = np.array([1, 1, 2]), np.array([10, 11, 12])
    scores = np.array([1.0, 1.0, 1.0], np.float32)
    before = pool(features, templates, media, scores)
    scores[1] = 0.25
    after = pool(features, templates, media, scores)
    np.testing.assert_allclose(after[0], unit([1.0, 0.25]), rtol=1e-6)
    np.testing.assert_allclose(after[1], before[1])  # the other template does not move
    np.testing.assert_allclose(pool(features, templates, media, scores, detector=False)[0], unit([1.0, 1.0]),
                               rtol=1e-6)


def test_normalising_image_features_equalises_their_weight():
    features = np.array([[10.0, 0.0], [0.0, 1.0]], np.float32)
    kept = pool(features, np.array([1, 1]), np.array([1, 2]), np.ones(2, np.float32))
    normalised = pool(features, np.array([1, 1]), np.array([1, 2]), np.ones(2, np.float32), normalize=True)
    np.testing.assert_allclose(kept[0], unit([10.0, 1.0]), rtol=1e-6)
    np.testing.assert_allclose(normalised[0], unit([1.0, 1.0]), rtol=1e-6)


def test_a_media_id_shared_by_two_templates_is_two_media():
    features = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], np.float32)
    result = pool(features, np.array([1, 2, 2]), np.array([7, 7, 8]), np.ones(3, np.float32))
    np.testing.assert_allclose(result[0], [1.0, 0.0])  # template 1 sees only its own face of media 7


def test_zero_template_stays_zero_and_nan_is_an_error():
    features = np.zeros((2, 3), np.float32)
    assert np.all(pool(features, np.array([1, 2]), np.array([1, 2]), np.ones(2, np.float32)) == 0)
    features[1, 2] = np.nan
    with pytest.raises(CompatError, match="face 2"):
        face_weights(features, np.ones(2, np.float32))


@pytest.mark.parametrize("detector, normalize", [(True, False), (False, False), (True, True)])
def test_matches_a_loop_over_templates(detector, normalize):
    rng = np.random.default_rng(0)
    n = 400
    templates = rng.choice([3, 17, 40, 41, 1000, 123456], n)
    media = rng.integers(0, 30, n)
    features = rng.normal(size=(n, 16)).astype(np.float32)
    scores = rng.uniform(0.05, 1.0, n).astype(np.float32)
    np.testing.assert_allclose(pool(features, templates, media, scores, detector, normalize),
                               loop_pooling(features, templates, media, scores, detector, normalize), atol=1e-6)


@pytest.mark.parametrize("block", [1 << 27, 7, 1])  # one product, several gallery blocks, one row per block
def test_pair_scores_equal_a_per_pair_gather(block):
    rng = np.random.default_rng(1)
    gallery = rng.normal(size=(30, 8)).astype(np.float32)
    probes = rng.normal(size=(50, 8)).astype(np.float32)
    first, second = rng.integers(0, 20, 500), rng.integers(5, 50, 500)
    expected = np.einsum("ij,ij->i", gallery[first].astype(np.float64), probes[second].astype(np.float64))
    np.testing.assert_allclose(pair_scores(gallery, probes, first, second, block_elements=block), expected,
                               rtol=1e-5, atol=1e-5)
