"""`compat train adapter` as a user runs it: each kind and direction fitted on tiny digits runs, the run as a
gallery (or query) model of `eval retrieval` and `index search`, stored vectors mapped by `features
transform` and `fct transform` as the run embeds them, a fit from paired feature files equal to the fit
from the runs, the conformance kit, and bad input."""

import json

import compat_adapter.plugin
import numpy as np
import pytest
from cli_runner import assert_user_error, compat
from compat_core.testing import TINY, run_conformance, train_old_model

pytestmark = pytest.mark.slow
TINY_FLAGS = ["--data", "digits", "--device", "cpu"]
FIT_FLAGS = ["--image-size", "16"]  # the models' input size: the pixels `features extract` embeds


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapter")
    old = train_old_model(root)  # classes 0-4, 16-d
    from compat_core.config import TrainConfig
    from compat_core.engine import train
    from compat_core.methods.configs import BaselineConfig

    new = root / "new"
    train("baseline", TrainConfig(**{**TINY, "embedding_dim": 24, "out": str(new), "seed": 2}), BaselineConfig())
    return {"root": root, "old": old, "new": str(new)}


def fit(runs, name, *extra):
    out = runs["root"] / name
    compat("train", "adapter", *TINY_FLAGS, *FIT_FLAGS, "--old", runs["old"], "--new", runs["new"], "--out", out,
           *extra)
    return out


@pytest.mark.parametrize("kind", ["procrustes", "affine", "low-rank", "mlp"])
def test_each_kind_fits_and_serves_as_the_gallery_model_of_the_new_one(runs, kind, tmp_path):
    out = fit(runs, f"a-{kind}", "--kind", kind, "--rank", "8", "--fit-epochs", "5")
    record = json.loads((out / "history.jsonl").read_text().splitlines()[0])
    assert record["fit"]["kind"] == kind and record["fit"]["pairs"] > 800 and record["loss"]["total"] > 0
    spec = json.loads((out / "model.json").read_text())
    assert spec["embeds_into"] == runs["new"] and spec["embedding_dim"] == 24
    proc = compat("eval", "retrieval", "--query", runs["new"], "--gallery", out, *TINY_FLAGS, "--split", "test",
                  "--json", tmp_path / "r.json")
    assert proc.returncode == 0 and 0 < json.loads((tmp_path / "r.json").read_text())["top1"] <= 1


def test_closed_forms_rank_by_flexibility_on_the_holdout(runs):
    cosine = {}
    for kind in ("procrustes", "affine", "mlp"):
        out = runs["root"] / f"a-{kind}"
        if not out.exists():
            fit(runs, f"a-{kind}", "--kind", kind, "--fit-epochs", "5")
        cosine[kind] = json.loads((out / "history.jsonl").read_text())["fit"]["fit_cosine"]
    assert cosine["procrustes"] < cosine["affine"] <= cosine["mlp"] + 1e-3


def test_stored_vectors_are_mapped_as_the_run_embeds_images(runs, tmp_path):
    out = runs["root"] / "a-affine"
    if not out.exists():
        fit(runs, "a-affine", "--kind", "affine")
    compat("features", "extract", "--model", runs["old"], *TINY_FLAGS, "--split", "test", "--out", tmp_path / "o.npz")
    compat("features", "extract", "--model", out, *TINY_FLAGS, "--split", "test", "--out", tmp_path / "a.npz")
    compat("features", "transform", "--model", out, "--features", tmp_path / "o.npz", "--out", tmp_path / "t.npz")
    compat("fct", "transform", "--model", out, "--old-features", tmp_path / "o.npz", "--out", tmp_path / "f.npz")
    embedded = np.load(tmp_path / "a.npz")["features"]
    for name in ("t.npz", "f.npz"):
        mapped = np.load(tmp_path / name)
        assert np.allclose(mapped["features"], embedded, atol=1e-5)
        assert np.array_equal(mapped["index"], np.load(tmp_path / "a.npz")["index"])


def test_the_map_exports_as_its_own_graph_and_composed_with_the_old_model(runs, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = runs["root"] / "a-affine"
    if not out.exists():
        fit(runs, "a-affine", "--kind", "affine")
    compat("export", out, "--out", tmp_path / "a.onnx", "--with-transformation", "--data", "digits")
    compat("features", "extract", "--model", runs["old"], *TINY_FLAGS, "--split", "test", "--out", tmp_path / "o.npz")
    compat("features", "transform", "--model", out, "--features", tmp_path / "o.npz", "--out", tmp_path / "t.npz")
    session = onnxruntime.InferenceSession(str(tmp_path / "a.transformation.onnx"))
    mapped = session.run(None, {"old": np.load(tmp_path / "o.npz")["features"]})[0]
    assert np.abs(mapped - np.load(tmp_path / "t.npz")["features"]).max() < 1e-4
    assert (tmp_path / "a.onnx").is_file()


def test_an_old_to_new_index_is_searched_by_the_new_model(runs, tmp_path):
    out = runs["root"] / "a-affine"
    if not out.exists():
        fit(runs, "a-affine", "--kind", "affine")
    compat("features", "extract", "--model", out, *TINY_FLAGS, "--split", "test", "--out", tmp_path / "g.npz")
    compat("index", "build", "--features", tmp_path / "g.npz", "--out", tmp_path / "idx")
    proc = compat("index", "search", tmp_path / "idx", "--query", runs["new"], *TINY_FLAGS, "--json", tmp_path / "s.json")
    assert "transformed into" in " ".join(proc.stderr.split() + proc.stdout.split())
    assert json.loads((tmp_path / "s.json").read_text())["top1"] > 0.2
    assert_user_error(compat("index", "search", tmp_path / "idx", "--query", runs["old"], *TINY_FLAGS, check=False),
                      "16 dimensions and the index 24")


def test_new_to_old_maps_queries_into_the_untouched_old_index(runs, tmp_path):
    out = fit(runs, "n2o", "--direction", "new-to-old")
    assert json.loads((out / "model.json").read_text())["embeds_into"] == runs["old"]
    compat("features", "extract", "--model", runs["old"], *TINY_FLAGS, "--split", "test", "--out", tmp_path / "o.npz")
    compat("index", "build", "--features", tmp_path / "o.npz", "--out", tmp_path / "idx")
    proc = compat("index", "search", tmp_path / "idx", "--query", out, *TINY_FLAGS, "--json", tmp_path / "s.json")
    assert proc.returncode == 0 and json.loads((tmp_path / "s.json").read_text())["top1"] > 0.2
    assert_user_error(compat("index", "search", tmp_path / "idx", "--query", runs["new"], *TINY_FLAGS, check=False),
                      "not trained to be compatible")


def test_a_fit_from_paired_feature_files_equals_the_fit_from_the_runs(runs, tmp_path):
    for side in ("old", "new"):
        compat("features", "extract", "--model", runs[side], *TINY_FLAGS, "--split", "train",
               "--out", tmp_path / f"{side}.npz")
    from_runs = fit(runs, "from-runs", "--kind", "affine", "--fit-samples", "300")
    from_files = fit(runs, "from-files", "--kind", "affine", "--fit-samples", "300",
                     "--old-features", tmp_path / "old.npz", "--new-features", tmp_path / "new.npz")
    from safetensors.numpy import load_file

    a, b = load_file(from_runs / "model.safetensors"), load_file(from_files / "model.safetensors")
    assert a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_from_paired_feature_files_alone_the_run_maps_stored_vectors_as_the_fit_from_runs(runs, tmp_path):
    for side in ("old", "new"):
        compat("features", "extract", "--model", runs[side], *TINY_FLAGS, "--split", "train",
               "--out", tmp_path / f"{side}.npz")
    from_runs = fit(runs, "runs-300", "--kind", "affine", "--fit-samples", "300")
    files_only = tmp_path / "files-only"
    proc = compat("train", "adapter", *TINY_FLAGS, "--kind", "affine", "--fit-samples", "300", "--old-features",
                  tmp_path / "old.npz", "--new-features", tmp_path / "new.npz", "--out", files_only)
    assert "no --old model" in proc.stderr
    assert json.loads((files_only / "model.json").read_text())["embeds_into"] == runs["new"]  # the file's run
    for run, name in ((from_runs, "a.npz"), (files_only, "b.npz")):
        compat("features", "transform", "--model", run, "--features", tmp_path / "old.npz", "--out", tmp_path / name)
    assert np.allclose(np.load(tmp_path / "a.npz")["features"], np.load(tmp_path / "b.npz")["features"], atol=1e-5)
    assert_user_error(compat("train", "adapter", *TINY_FLAGS, "--old", runs["old"], "--out", tmp_path / "x",
                             check=False), "needs the new space", "--new-features")


def test_without_the_old_model_the_run_maps_stored_vectors_only(runs, tmp_path):
    compat("features", "extract", "--model", runs["old"], *TINY_FLAGS, "--split", "train", "--out", tmp_path / "o.npz")
    out = tmp_path / "vectors-only"
    proc = compat("train", "adapter", *TINY_FLAGS, "--old-features", tmp_path / "o.npz", "--new", runs["new"],
                  "--out", out)
    assert "maps stored vectors" in proc.stderr
    compat("features", "transform", "--model", out, "--features", tmp_path / "o.npz", "--out", tmp_path / "t.npz")
    assert np.load(tmp_path / "t.npz")["features"].shape[1] == 24
    assert_user_error(compat("features", "extract", "--model", out, *TINY_FLAGS, "--out", tmp_path / "x.npz",
                             check=False), "cannot embed images", "features transform")


def test_bad_input_is_one_paragraph(runs, tmp_path):
    compat("features", "extract", "--model", runs["old"], *TINY_FLAGS, "--split", "train", "--out", tmp_path / "o.npz")
    compat("features", "extract", "--model", runs["new"], *TINY_FLAGS, "--split", "test", "--out", tmp_path / "n.npz")
    base = ["train", "adapter", *TINY_FLAGS, "--old", runs["old"], "--new", runs["new"]]
    assert_user_error(compat(*base, "--old-features", tmp_path / "o.npz", "--new-features", tmp_path / "n.npz",
                             "--out", tmp_path / "x", check=False), "do not list the same images")
    assert_user_error(compat(*base, "--kind", "low-rank", "--rank", "99", "--out", tmp_path / "y", check=False),
                      "--rank 99 exceeds")
    assert_user_error(compat(*base, "--new-features", tmp_path / "o.npz", "--out", tmp_path / "z", check=False),
                      "16-dim features", "24 dims")
    assert_user_error(compat("features", "transform", "--model", runs["new"], "--features", tmp_path / "o.npz",
                             "--out", tmp_path / "t.npz", check=False), "does not map stored vectors")
    assert not any((tmp_path / name).exists() for name in ("y/model.json", "z/model.json", "t.npz"))


@pytest.mark.parametrize("kind", ["procrustes", "mlp"])
def test_conformance(runs, kind, tmp_path):
    run_conformance(compat_adapter.plugin, "adapter", tmp_path, needs_old=True, old_run=runs["old"],
                    options={"new": runs["new"], "kind": kind, "fit_epochs": 2, "fit_samples": 200},
                    distribution="compat-adapter")


def test_a_transformed_old_gallery_splits_queries_by_the_classes_the_old_model_saw(runs, tmp_path):
    out = runs["root"] / "a-affine"
    if not out.exists():
        fit(runs, "a-affine", "--kind", "affine")
    compat("eval", "retrieval", "--query", runs["new"], "--gallery", out, *TINY_FLAGS, "--split", "test",
           "--json", tmp_path / "r.json")
    groups = json.loads((tmp_path / "r.json").read_text())["by_group"]
    assert groups["old_classes"]["n_query"] + groups["new_classes"]["n_query"] == 450
    assert json.loads((out / "model.json").read_text())["classes"] == ["0", "1", "2", "3", "4"]
