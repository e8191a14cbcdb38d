"""compat_core.old_space: dimension alignment, class means, class matching, dataset embedding, frozen
runs, and old embeddings on the fly or from a feature cache (with the augmentation rule)."""

import numpy as np
import pytest
import torch
from compat_core.errors import CompatError
from compat_core.features import FeatureSet, save
from compat_core.old_space import (
    OldEmbeddings,
    align_dim,
    check_dims,
    class_means,
    embed_dataset,
    load_frozen_run,
    match_classes,
)
from tiny_models import make_data, make_old


# -- classes ----------------------------------------------------------------------------------------
def test_class_means_average_normalised_features():
    feats = torch.tensor([[3.0, 4.0], [0.0, 2.0], [5.0, 0.0]])
    means, counts = class_means(feats, torch.tensor([0, 0, 1]), 3)
    assert means.tolist()[0] == pytest.approx([0.3, 0.9])
    assert means.tolist()[1] == pytest.approx([1.0, 0.0])
    assert means.tolist()[2] == [0.0, 0.0]  # no sample: zero row, never NaN
    assert counts.tolist() == [2, 1, 0]


# -- dimensions -------------------------------------------------------------------------------------
def test_align_dim_policies():
    f = torch.tensor([[1.0, 2.0, 3.0]])
    assert align_dim(f, 2, "truncate").tolist() == [[1.0, 2.0]]
    assert align_dim(f, 5, "zero-pad").tolist() == [[1.0, 2.0, 3.0, 0.0, 0.0]]
    assert align_dim(f, 3, "error") is f
    with pytest.raises(ValueError):
        align_dim(f, 5, "truncate")


def test_check_dims_messages():
    check_dims(4, 4, "error", "bct")
    check_dims(8, 4, "truncate", "bct")
    check_dims(2, 4, "zero-pad", "bct")
    with pytest.raises(CompatError, match="--dim-policy truncate"):
        check_dims(8, 4, "error", "bct")
    with pytest.raises(CompatError, match="--dim-policy zero-pad"):
        check_dims(2, 4, "error", "bct")
    with pytest.raises(CompatError, match="needs a new embedding longer"):
        check_dims(2, 4, "truncate", "l2")
    with pytest.raises(CompatError, match="needs a new embedding shorter"):
        check_dims(8, 4, "zero-pad", "l2")


# -- cached old features ----------------------------------------------------------------------------
def test_old_features_file_is_looked_up_by_index(tmp_path):
    old = make_old(["0", "1"])
    data = make_data().subset(np.array([5, 1, 7]))
    feats = torch.arange(12 * 3, dtype=torch.float32).view(12, 3)
    path = tmp_path / "old.npz"
    index = np.arange(12)[::-1].copy()  # file rows in reverse order
    save(path, FeatureSet(feats.numpy()[index], np.zeros(12, dtype=np.int64), index))
    source = OldEmbeddings(old, str(path), data)
    got = source(None, torch.tensor([7, 5]))
    assert got.tolist() == [feats[7].tolist(), feats[5].tolist()]
    assert source.of_dataset(data).tolist() == feats[[5, 1, 7]].tolist()
    assert not any(k in source.state_dict() for k in ("table", "row_of_index"))


def test_old_features_file_missing_samples_or_wrong_dim(tmp_path):
    old = make_old(["0", "1"])
    data = make_data()
    path = tmp_path / "part.npz"
    save(path, FeatureSet(np.zeros((3, 3), np.float32), np.zeros(3, dtype=np.int64), np.array([0, 1, 2])))
    with pytest.raises(CompatError, match="lacks 9 of the 12"):
        OldEmbeddings(old, str(path), data)
    save(path, FeatureSet(np.zeros((12, 5), np.float32), np.zeros(12, dtype=np.int64), np.arange(12)))
    with pytest.raises(CompatError, match="5-dim"):
        OldEmbeddings(old, str(path), data)
    with pytest.raises(CompatError, match="no such file"):
        OldEmbeddings(old, str(tmp_path / "none.npz"), data)


def test_online_old_embeddings_use_the_old_models_own_input_size():
    old = make_old(["0", "1"])  # input size 4
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert OldEmbeddings(old)(images, torch.tensor([0, 1])).shape == (2, 3)


def test_match_classes_by_name_and_by_label_map():
    assert match_classes(["a", "b", "c"], ["c", "z", "a"]).tolist() == [2, -1, 0]
    assert match_classes(["x", "y"], ["a", "b"], {"b": "x"}).tolist() == [-1, 0]
    assert match_classes(["1", "2"], [1, 2]).tolist() == [0, 1]  # names compared as text


# -- datasets and frozen runs -------------------------------------------------------------------------
def test_embed_dataset_equals_per_sample_embeddings_in_dataset_order():
    old, data = make_old(["0", "1", "2"]), make_data()
    whole = embed_dataset(old, data, batch_size=5)  # batches of 5 over 12 samples: a partial last batch
    one_by_one = torch.cat([old.embed(data.load_images([i])) for i in range(len(data))])
    assert whole.shape == (12, 3) and torch.allclose(whole, one_by_one, atol=1e-6)
    model = old.model.train()
    assert torch.allclose(embed_dataset(model, data), whole, atol=1e-6) and model.training  # eval inside, restored


def test_load_frozen_run_names_the_flag(tmp_path):
    with pytest.raises(CompatError, match="--side-info .*no compat run directory"):
        load_frozen_run(str(tmp_path), "--side-info")


def test_cached_old_features_under_random_augmentation_follow_the_rule(tmp_path):
    old, data = make_old(["0", "1", "2"]), make_data()
    path = tmp_path / "old.npz"
    save(path, FeatureSet(np.zeros((12, 3), np.float32), np.zeros(12, dtype=np.int64), np.arange(12)))
    with pytest.raises(CompatError, match="--augment none"):
        OldEmbeddings(old, str(path), data, augment="crop-flip", method="l2")
    # a method that reads only whole-dataset statistics may keep its augmentation
    assert OldEmbeddings(old, str(path), data, augment="crop-flip", per_sample=False).cached
    assert OldEmbeddings(old, str(path), data, augment="none").cached


# -- memory-mapped and float16 caches ----------------------------------------------------------------
@pytest.mark.parametrize("fp16", [False, True])
def test_a_memory_mapped_cache_gives_the_rows_of_the_in_memory_one(tmp_path, fp16):
    from compat_core.models.cached import CachedFeatures

    data = make_data()
    feats = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
    index = np.arange(12)[::-1].copy()
    path = tmp_path / "old.npz"
    save(path, FeatureSet(feats[index], np.zeros(12, dtype=np.int64), index), fp16=fp16)
    mapped = CachedFeatures(path, dim=3, data=data, memory_map=True)
    loaded = CachedFeatures(path, dim=3, data=data, memory_map=False)
    assert mapped.memory_mapped and not loaded.memory_mapped and len(mapped.state_dict()) == 0
    wanted = torch.tensor([7, 0, 11])
    expected = torch.from_numpy(feats[[7, 0, 11]].astype(np.float16 if fp16 else np.float32).astype(np.float32))
    assert torch.equal(mapped(wanted), expected) and torch.equal(loaded(wanted), expected)
    assert mapped(wanted).dtype == torch.float32


def test_big_caches_are_memory_mapped_automatically(tmp_path, monkeypatch):
    from compat_core.models.cached import CachedFeatures

    path = tmp_path / "old.npz"
    save(path, FeatureSet(np.ones((12, 3), np.float32), np.zeros(12, dtype=np.int64), np.arange(12)))
    assert not CachedFeatures(path).memory_mapped
    monkeypatch.setenv("COMPAT_CACHE_IN_MEMORY_MAX", "100")  # 12 x 3 x 4 = 144 bytes
    assert CachedFeatures(path).memory_mapped


def test_a_compressed_cache_cannot_be_memory_mapped(tmp_path):
    from compat_core.models.cached import CachedFeatures

    path = tmp_path / "old.npz"
    np.savez_compressed(path, features=np.ones((4, 3), np.float32), labels=np.zeros(4, np.int64),
                        index=np.arange(4))
    with pytest.raises(CompatError, match="compressed"):
        CachedFeatures(path, memory_map=True)
    assert CachedFeatures(path).table.shape == (4, 3)  # read into memory instead
