"""compat index: build and search equal to a brute-force computation, provenance on every vector (a BCT
model may query its old model's index, an independent one is refused), and files that do not belong
together refused."""

import json

import numpy as np
import pytest
from cli_runner import assert_user_error, compat
from compat_core.errors import CompatError
from compat_core.features import FeatureSet
from compat_core.index import store
from compat_core.index.search import search

pytest.importorskip("faiss")


def feature_set(n=60, dim=8, classes=4, seed=0, fingerprint="aaaa"):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centres = rng.normal(size=(classes, dim))
    return FeatureSet((centres[labels] + 0.8 * rng.normal(size=(n, dim))).astype(np.float32), labels,
                      np.arange(100, 100 + n), model="", data="toy", split="test",
                      classes=[str(c) for c in range(classes)], fingerprint=fingerprint)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_flat_search_equals_brute_force_with_leave_one_out(metric, tmp_path):
    feats = feature_set()
    index = store.read(store.write(store.build(feats, metric=metric), tmp_path / "idx"))
    result = search(index, feats, k=5)
    x = feats.features / np.linalg.norm(feats.features, axis=1, keepdims=True) if metric == "cosine" else feats.features
    score = x @ x.T if metric == "cosine" else -((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(score, -np.inf)  # the query's own item is left out
    expected = feats.index[np.argsort(-score, axis=1, kind="stable")[:, :5]]
    assert result["leave_one_out"] and np.array_equal(np.array(result["ids"]), expected)
    hits = feats.labels[expected - 100] == feats.labels[:, None]
    assert result["top1"] == pytest.approx(hits[:, 0].mean())
    n_pos = np.bincount(feats.labels)[feats.labels] - 1
    ap = (np.cumsum(hits, 1) / np.arange(1, 6) * hits).sum(1) / np.minimum(n_pos, 5)
    assert result["mAP@5"] == pytest.approx(ap.mean())


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_kinds_build_and_find_most_neighbours(kind, tmp_path):
    feats = feature_set(n=400)
    index = store.read(store.write(store.build(feats, kind=kind), tmp_path / kind))
    exact = search(store.build(feats), feats, k=5)
    approximate = search(index, feats, k=5)
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(exact["ids"], approximate["ids"], strict=True)])
    assert overlap > 0.6 and index.manifest["kind"] == kind


def test_a_query_model_unrelated_to_the_index_is_refused_unless_forced(tmp_path):
    index = store.build(feature_set(fingerprint="aaaa"))
    other = feature_set(seed=1, fingerprint="bbbb")
    with pytest.raises(CompatError, match="was not trained to be compatible"):
        search(index, other, k=3)
    assert search(index, other, k=3, force=True)["relation"] == "forced"


def test_files_that_do_not_belong_together_are_refused(tmp_path):
    folder = store.write(store.build(feature_set()), tmp_path / "a")
    store.write(store.build(feature_set(n=30)), tmp_path / "b")
    (folder / store.FAISS_FILE).write_bytes((tmp_path / "b" / store.FAISS_FILE).read_bytes())
    with pytest.raises(CompatError, match="do not belong together"):
        store.read(folder)


@pytest.mark.slow
def test_the_cli_builds_searches_with_provenance_and_describes(tmp_path):
    common = ["--data", "digits", "--backbone", "test_resnet", "--image-size", "8", "--embedding-dim", "8",
              "--epochs", "1", "--device", "cpu"]
    compat("train", "baseline", *common, "--classes", "0-4", "--out", tmp_path / "old")
    compat("train", "bct", *common, "--old", tmp_path / "old", "--out", tmp_path / "bct")
    compat("train", "baseline", *common, "--seed", "7", "--out", tmp_path / "independent")
    compat("features", "extract", "--model", tmp_path / "old", "--data", "digits", "--out", tmp_path / "old.npz")
    compat("index", "build", "--features", tmp_path / "old.npz", "--out", tmp_path / "idx")
    info = compat("index", "info", tmp_path / "idx").stdout
    assert "450 vectors, 8-d, flat index, cosine metric" in info and str(tmp_path / "old") in info
    same = json.loads(compat("index", "search", tmp_path / "idx", "--query", tmp_path / "old", "--data", "digits",
                             "-k", "5", "--json", "-").stdout)
    assert same["relation"] == "same" and same["leave_one_out"] and len(same["ids"][0]) == 5
    trained = json.loads(compat("index", "search", tmp_path / "idx", "--query", tmp_path / "bct", "--data",
                                "digits", "--json", "-").stdout)
    assert trained["relation"] == "trained" and trained["leave_one_out"]  # the same test images on both sides
    refused = compat("index", "search", tmp_path / "idx", "--query", tmp_path / "independent", "--data", "digits",
                     check=False)
    assert_user_error(refused, "was not trained to be compatible", "--force")
    missing = compat("index", "info", tmp_path / "nowhere", check=False)
    assert_user_error(missing, "is not a compat index")
    no_file = compat("index", "build", "--features", tmp_path / "gone.npz", "--out", tmp_path / "i2", check=False)
    assert_user_error(no_file, f"--features {tmp_path / 'gone.npz'}: no such file", "compat features extract")
    not_npz = compat("index", "build", "--features", tmp_path / "old", "--out", tmp_path / "i2", check=False)
    assert_user_error(not_npz, "is not a feature file (.npz)")


def test_an_index_partly_made_by_a_third_model_is_refused_naming_it():
    index = store.build(feature_set(fingerprint="aaaa"))
    index.manifest["models"].append({"fingerprint": "cccc", "run": "runs/stranger", "transformation": None})
    stranger = feature_set(seed=3, fingerprint="cccc")
    store.replace_vectors(index, stranger.index[:10], store.prepare(stranger.features[:10], "cosine"), 1)
    with pytest.raises(CompatError, match=r"cccc \(runs/stranger, 10 vectors\).*mixes vectors of several models"):
        search(index, feature_set(fingerprint="aaaa"), k=3)
    assert search(index, feature_set(fingerprint="aaaa"), k=3, force=True)["relation"] == "forced"
    store.replace_vectors(index, stranger.index[:10], store.prepare(feature_set().features[:10], "cosine"), 0)
    assert search(index, feature_set(fingerprint="aaaa"), k=3)["relation"] == "same"  # no vector of cccc left
