"""The whole evaluation from feature files on a generated folder: self and cross orientation.

* new = old: the cross test equals the self test;
* new = old rotated by a random orthogonal matrix: the self test does not move, the cross test collapses;
* orientation: the OLD features encode the gallery side, the NEW ones the probe side.
"""

import numpy as np
import pytest
from compat_core.errors import CompatError
from compat_core.evaluators.ijbc.options import IjbcOptions
from compat_core.evaluators.ijbc.run import run_ijbc
from ijbc_fixtures import identity_features, make_ijbc, write_features


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ijbc-eval")
    fixture = make_ijbc(root / "IJBC", subjects=24, images=False)
    features = identity_features(fixture, dim=32, noise=1.6)  # noisy enough that nothing is perfect
    return fixture, root, features


def evaluate(fixture, **options):
    return run_ijbc(IjbcOptions(root=str(fixture.root), one_to_n=True, **options))


def metrics(result):
    """Every number that the JSON reports, flattened (settings and timings excluded)."""
    flat = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}", inner)
        else:
            flat[prefix] = value

    walk("v", result["verification"])
    walk("i", result["identification"])
    return flat


def test_self_results_are_plausible_fractions(folder):
    fixture, root, features = folder
    result = evaluate(fixture, features=str(write_features(root / "a.npz", features)))
    assert result["mode"] == "self"
    values = [v for k, v in metrics(result).items() if "thresholds" not in k and "n_" not in k and "hits" not in k]
    assert all(v is None or 0.0 <= v <= 1.0 for v in values)
    tar = result["verification"]["tar_at_far"]
    assert 0.0 < tar["1e-03"] < 1.0 and tar["1e-01"] > 0.8  # noisy but far better than chance
    assert 0.5 < result["identification"]["merged"]["top1"] < 1.0
    assert result["verification"]["n_pairs"] == 24 * 48 and result["verification"]["n_genuine"] == 48
    assert result["identification"]["G1"]["n_mated"] == 24 and result["identification"]["G1"]["n_nonmated"] == 24


def test_cross_with_the_same_model_equals_self(folder):
    fixture, root, features = folder
    path = str(write_features(root / "same.npz", features))
    self_test = evaluate(fixture, features=path)
    cross = evaluate(fixture, features=path, old_features=path)
    assert cross["mode"] == "cross" and metrics(cross) == metrics(self_test)


def test_rotated_model_keeps_self_and_collapses_cross(folder):
    fixture, root, features = folder
    rotation = np.linalg.qr(np.random.default_rng(5).normal(size=(32, 32)))[0].astype(np.float32)
    old = str(write_features(root / "old.npz", features))
    new = str(write_features(root / "rotated.npz", features @ rotation))
    old_self, new_self = evaluate(fixture, features=old), evaluate(fixture, features=new)
    rotated = metrics(new_self)
    for key, value in metrics(old_self).items():
        assert rotated[key] == pytest.approx(value, abs=1e-4), key
    cross = evaluate(fixture, features=new, old_features=old)
    assert cross["verification"]["tar_at_far"]["1e-02"] < 0.2 < old_self["verification"]["tar_at_far"]["1e-02"]
    assert cross["verification"]["auc"] < 0.75 < old_self["verification"]["auc"]
    assert cross["identification"]["merged"]["top1"] < 0.25 < old_self["identification"]["merged"]["top1"]


def test_old_features_encode_the_gallery_side(folder):
    fixture, root, features = folder
    gallery_faces = np.isin(fixture.face_template, np.arange(1, 25))
    garbage = np.random.default_rng(9).normal(size=features.shape).astype(np.float32)
    good_on_gallery = np.where(gallery_faces[:, None], features, garbage)
    good_on_probes = np.where(gallery_faces[:, None], garbage, features)
    old = str(write_features(root / "gallery-good.npz", good_on_gallery))
    new = str(write_features(root / "probe-good.npz", good_on_probes))
    right = evaluate(fixture, features=new, old_features=old)
    wrong = evaluate(fixture, features=old, old_features=new)
    assert right["verification"]["auc"] > 0.9 > 0.75 > wrong["verification"]["auc"]
    assert right["identification"]["merged"]["top1"] > 0.5 > 0.25 > wrong["identification"]["merged"]["top1"]
    assert right["settings"]["gallery_side"] == "old"


def test_detector_score_and_normalisation_flags_change_the_pooling(folder):
    fixture, root, features = folder
    scaled = features * np.random.default_rng(2).uniform(0.2, 5.0, (len(features), 1)).astype(np.float32)
    path = str(write_features(root / "scaled.npz", scaled))
    default = metrics(evaluate(fixture, features=path))
    assert metrics(evaluate(fixture, features=path, detector_score=False)) != default
    assert metrics(evaluate(fixture, features=path, normalize_image_features=True)) != default


def test_feature_file_with_wrong_row_count(folder):
    fixture, root, features = folder
    path = str(write_features(root / "short.npz", features[:-1]))
    with pytest.raises(CompatError, match=r"short.npz: features have shape \(167, 32\) but .*ijbc_face_tid_mid.txt "
                                          r"lists 168 faces"):
        evaluate(fixture, features=path)


def test_cross_with_different_dimensions_aligns_as_recorded_or_asked(folder):
    """A 40-d new model whose first 32 dimensions are the old-compatible part (BT^2) against a 32-d old one:
    truncation (asked, or recorded in the new feature file) equals the cross test on the first 32 dimensions;
    zero-padding equals padding the old file by hand; with no policy, one clear error."""
    fixture, root, features = folder
    rng = np.random.default_rng(3)
    wide = np.hstack([features, rng.normal(size=(len(features), 8)).astype(np.float32)])
    old = str(write_features(root / "old32.npz", features))
    new40 = str(write_features(root / "new40.npz", wide))
    recorded = root / "new40-truncate.npz"
    np.savez(recorded, features=wide, dim_policy=np.array("truncate"))
    by_hand = metrics(evaluate(fixture, features=str(write_features(root / "new32.npz", wide[:, :32])),
                               old_features=old))
    assert metrics(evaluate(fixture, features=new40, old_features=old, align="truncate")) == by_hand
    assert metrics(evaluate(fixture, features=str(recorded), old_features=old)) == by_hand
    old_recorded = root / "old32-truncate.npz"  # the policy on the old side only, as align_dims reads it
    np.savez(old_recorded, features=features, dim_policy=np.array("truncate"))
    assert metrics(evaluate(fixture, features=new40, old_features=str(old_recorded))) == by_hand
    padded = str(write_features(root / "old40.npz", np.pad(features, ((0, 0), (0, 8)))))
    assert (metrics(evaluate(fixture, features=new40, old_features=old, align="zero-pad"))
            == metrics(evaluate(fixture, features=new40, old_features=padded)))
    with pytest.raises(CompatError, match="the new features are 40-d but the old features are 32-d.*--align trunc"):
        evaluate(fixture, features=new40, old_features=old)


def test_cross_needs_one_source_per_side(folder):
    fixture, root, features = folder
    a = str(write_features(root / "d32.npz", features))
    with pytest.raises(CompatError, match="exactly one of --model"):
        evaluate(fixture)
    with pytest.raises(CompatError, match="at most one of --old-model"):
        evaluate(fixture, features=a, old_features=a, old_model=str(root))


def test_feature_file_variants_give_the_same_result(folder):
    from compat_core.evaluators.ijbc.embed import map_npz_member

    fixture, root, features = folder
    stored = write_features(root / "stored.npz", features)
    assert isinstance(map_npz_member(stored, "features"), np.memmap)  # read in place, not copied
    compressed = root / "compressed.npz"
    np.savez_compressed(compressed, features=features)
    assert map_npz_member(compressed, "features") is None
    wide = root / "float64.npz"
    np.savez(wide, features=features.astype(np.float64), labels=np.zeros(len(features)))
    reference = metrics(evaluate(fixture, features=str(stored)))
    assert metrics(evaluate(fixture, features=str(compressed))) == reference
    assert metrics(evaluate(fixture, features=str(wide))) == reference
