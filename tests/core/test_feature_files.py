"""Feature files: round trip, validation errors, and dimension alignment between models."""

import numpy as np
import pytest
from compat_core.errors import CompatError
from compat_core.features import FeatureSet, align_dims, load, save


def feature_set(dim, policy="", n=4, data="digits"):
    rng = np.random.default_rng(dim)
    return FeatureSet(rng.normal(size=(n, dim)).astype(np.float32), np.arange(n) % 2, np.arange(n),
                      model=f"run{dim}", data=data, split="test", classes=["a", "b"], dim_policy=policy)


def test_round_trip_keeps_every_array_and_reference(tmp_path):
    original = feature_set(5, "truncate")
    original.logits = np.ones((4, 2), np.float32)
    path = save(tmp_path / "f.npz", original)
    assert path.name == "f.npz" and not list(tmp_path.glob("*.tmp"))
    loaded = load(path)
    assert np.array_equal(loaded.features, original.features) and loaded.features.dtype == np.float32
    assert np.array_equal(loaded.labels, original.labels) and np.array_equal(loaded.index, original.index)
    assert (loaded.model, loaded.data, loaded.split, loaded.dim_policy) == ("run5", "digits", "test", "truncate")
    assert loaded.classes == ["a", "b"] and np.array_equal(loaded.logits, original.logits)
    assert loaded.same_images_as(original)


def test_same_images_needs_same_data_split_and_indices():
    a, b = feature_set(3), feature_set(3)
    assert a.same_images_as(b)
    assert not a.same_images_as(feature_set(3, data="fashion-mnist"))
    b.index = b.index[::-1].copy()
    assert not a.same_images_as(b)


@pytest.mark.parametrize("arrays, message", [
    ({"labels": np.zeros(3)}, "lacks the arrays"),
    ({"features": np.zeros((3, 2)), "labels": np.zeros(4)}, "do not match"),
])
def test_bad_feature_files_are_user_errors(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(CompatError, match=message):
        load(path)


def test_unreadable_file_is_a_user_error(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_text("not a zip")
    with pytest.raises(CompatError, match="not a readable .npz"):
        load(path)


def test_equal_dimensions_pass_through_untouched():
    q, g = feature_set(4), feature_set(4)
    qa, ga = align_dims(q, g)
    assert qa is q.features and ga is g.features


def test_truncate_keeps_the_leading_dimensions_of_the_longer():
    q, g = feature_set(6), feature_set(4)
    qa, ga = align_dims(q, g, "truncate")
    assert np.array_equal(qa, q.features[:, :4]) and np.array_equal(ga, g.features)


def test_zero_pad_extends_the_shorter_with_zeros():
    q, g = feature_set(3), feature_set(5)
    qa, ga = align_dims(q, g, "zero-pad")
    assert qa.shape == (4, 5) and np.array_equal(qa[:, :3], q.features) and not qa[:, 3:].any()
    assert np.array_equal(ga, g.features)


def test_auto_uses_the_policy_a_model_recorded_and_otherwise_refuses():
    qa, _ = align_dims(feature_set(6, "truncate"), feature_set(4))
    assert qa.shape == (4, 4)
    _, ga = align_dims(feature_set(6), feature_set(4, "zero-pad"))
    assert ga.shape == (4, 6)
    with pytest.raises(CompatError, match="--align truncate"):
        align_dims(feature_set(6), feature_set(4))


def test_logits_of_a_model_trained_on_some_classes_carry_their_column_classes(tmp_path):
    from compat_core.data import open_dataset
    from compat_core.evaluators.regression import load_logit_file
    from compat_core.features import extract
    from compat_core.models.embedding import EmbeddingModel, ModelSpec

    model = EmbeddingModel(ModelSpec(backbone="test_resnet", embedding_dim=8, num_classes=3, classes=["2", "5", "7"]))
    data = open_dataset("digits", "test", 16).subset(np.arange(12))
    feats = extract(model, data, with_logits=True, model_ref=str(tmp_path / "gone-run"))
    assert feats.logits.shape == (12, 3) and feats.logit_classes == ["2", "5", "7"]
    path = save(tmp_path / "old.npz", feats)
    assert load(path).logit_classes == ["2", "5", "7"]
    # the file alone says which class each column is: its run directory no longer exists, and the
    # data's ten class names would not match the three columns
    assert load_logit_file(str(path)).classes == ["2", "5", "7"]
    plain = save(tmp_path / "plain.npz", extract(model, data))
    assert "logit_classes" not in np.load(plain).files


def test_feature_files_with_nan_or_inf_are_refused(tmp_path):
    import pytest
    from compat_core.errors import CompatError

    features = np.ones((4, 3), np.float32)
    features[2, 1] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, features=features, labels=np.zeros(4, np.int64))
    with pytest.raises(CompatError, match="NaN or infinite values in 1 of 4 rows .*row 2"):
        load(path)


def test_scoring_a_model_on_its_training_images_is_warned_about(tmp_path, capsys):
    from compat_core.config import TrainConfig
    from compat_core.engine import train
    from compat_core.features import features_of
    from compat_core.methods.configs import BaselineConfig

    run = train("baseline", TrainConfig(data="digits", out=str(tmp_path / "run"), backbone="test_resnet",
                                        embedding_dim=8, image_size=8, epochs=1, device="cpu"),
                BaselineConfig()).run_dir
    capsys.readouterr()
    features_of(str(run), data="digits", split="test")
    assert "overstate" not in capsys.readouterr().err
    features_of(str(run), data="digits", split="train")
    assert "trained on digits split train" in capsys.readouterr().err
    features_of(str(run), data="digits", split="train", scoring=False)  # a cache of training features: fine
    assert "overstate" not in capsys.readouterr().err
