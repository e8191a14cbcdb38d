"""compat-bt2: the model's algebra (constant norm sqrt(1 + C^2), the old-compatible prefix, orthogonality),
the four-term loss against a direct computation, the conformance kit (export through the run loader,
kill and --resume), the CLI with the matrix evaluator comparing a BT^2 query with an old gallery on the
first d_old dimensions, and bad input."""

import json
import math
from pathlib import Path

import compat_bt2.plugin
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cli_runner import assert_user_error, compat
from compat_bt2.model import BT2Model, bt2_spec
from compat_core.errors import CompatError
from compat_core.features import features_of
from compat_core.models.embedding import ModelSpec
from compat_core.testing import run_conformance, train_old_model

TRAIN = ["--data", "digits", "--backbone", "test_resnet", "--image-size", "16", "--embedding-dim", "16",
         "--device", "cpu", "--epochs", "1"]


def tiny_model(d=16, d_old=8, add=4, scale_c=2.0) -> BT2Model:
    torch.manual_seed(0)
    spec = ModelSpec(backbone="test_resnet", embedding_dim=d, num_classes=3, classes=["a", "b", "c"])
    return BT2Model(bt2_spec(spec, d=d, d_old=d_old, add=add, scale_c=scale_c)).eval()


def test_the_embedding_has_a_constant_norm_and_an_old_compatible_prefix():
    model = tiny_model()
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        parts = model.parts(images)
    assert parts["embedding"].shape == (5, 20) and model.spec.dim_policy == "truncate"
    assert torch.allclose(parts["embedding"].norm(dim=1), torch.full((5,), math.sqrt(1 + 2.0**2)), atol=1e-5)
    assert torch.equal(parts["embedding"][:, :8], parts["bct"])
    for rotation in (model.rotate_new.weight, model.rotate_old.weight):
        assert torch.allclose(rotation @ rotation.T, torch.eye(len(rotation)), atol=1e-5)


def test_the_dimensions_are_checked():
    spec = ModelSpec(backbone="test_resnet", embedding_dim=16, num_classes=3, classes=["a", "b", "c"])
    with pytest.raises(CompatError, match="--add-dim 9"):
        bt2_spec(spec, d=16, d_old=8, add=9, scale_c=2.0)
    with pytest.raises(CompatError, match="--add-dim 2"):
        bt2_spec(spec, d=4, d_old=8, add=2, scale_c=2.0)  # 4 + 2 < 8: no room for the old part


def test_the_loss_is_the_four_terms_of_the_paper(monkeypatch):
    """The method's terms against the formulas computed here from the same parts and frozen embeddings."""
    from compat_bt2.methods import BT2

    torch.manual_seed(1)
    method = BT2.__new__(BT2)
    torch.nn.Module.__init__(method)
    model = tiny_model()
    method.model = model
    method.register_buffer("old_prototypes", torch.randn(3, 8) * 0.3)
    old, new_prime = torch.randn(4, 8), torch.randn(4, 16)
    method.old_embeddings = lambda images, indices: old
    method.new_prime = type("Frozen", (), {"embed": staticmethod(lambda images: new_prime)})()
    method.config = compat_bt2.config.BT2Config(new_prime="x", lambda1=1.0, lambda2=10.0, lambda3=5.0)
    method.ctx = type("Ctx", (), {"config": type("C", (), {"label_smoothing": 0.0})()})()
    images, targets = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), torch.tensor([0, 1, 2, 1])
    from compat_core.methods.base import Batch

    terms = method(Batch(images, targets, torch.arange(4)))
    parts = model.parts(images, targets)
    ce = F.cross_entropy(parts["logits"], targets)
    bct = parts["bct"]
    influence = F.cross_entropy((bct / bct.norm(dim=1, keepdim=True)) @ method.old_prototypes.T, targets)
    old_cos = 1 - ((old * bct).sum(1) / (old.norm(dim=1) * bct.norm(dim=1))).mean()
    v = parts["v"]
    new_cos = 1 - ((new_prime * v).sum(1) / (new_prime.norm(dim=1) * v.norm(dim=1))).mean()
    for name, value in (("ce", ce), ("influence", influence), ("old_cos", old_cos), ("new_cos", new_cos)):
        assert torch.allclose(terms[name], value, atol=1e-5), name
    assert torch.allclose(terms["total"], ce + 10 * influence + 5 * old_cos + new_cos, atol=1e-4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bt2")
    return Path(train_old_model(root)), Path(train_old_model(root, classes="0-9", seed=2))


@pytest.mark.slow
def test_conformance(runs, tmp_path):
    old, new_prime = runs
    run_conformance(compat_bt2.plugin, "bt2", tmp_path, needs_old=True, old_run=old,
                    options={"new_prime": str(new_prime), "add_dim": 8}, distribution="compat-bt2")


@pytest.mark.slow
def test_cli_trains_and_the_matrix_compares_on_the_old_dimensions(runs, tmp_path):
    old, new_prime = runs
    compat("train", "bt2", *TRAIN, "--old", old, "--new-prime", new_prime, "--add-dim", "8", "--out", tmp_path / "bt2")
    spec = json.loads((tmp_path / "bt2" / "model.json").read_text())
    assert spec["loader"] == "compat_bt2.model:load_bt2_run" and spec["embedding_dim"] == 24
    assert spec["dim_policy"] == "truncate"
    history = json.loads((tmp_path / "bt2" / "history.jsonl").read_text().splitlines()[0])
    assert set(history["loss"]) == {"total", "ce", "influence", "old_cos", "new_cos"}
    matrix = tmp_path / "m.json"
    compat("eval", "matrix", old, tmp_path / "bt2", "--data", "digits", "--json", matrix)
    rows = {(Path(r["query"]).name, Path(r["gallery"]).name): r for r in json.loads(matrix.read_text())["results"]}
    # independent of the evaluator: top-1 of BT^2 queries on their first 16 (= d_old) dimensions against the
    # old gallery, and of BT^2 against BT^2 on all 24, both leave-one-out, by cosine in numpy
    query = features_of(str(tmp_path / "bt2"), data="digits", split="test", scoring=False)
    gallery = features_of(str(old), data="digits", split="test", scoring=False)
    assert query.features.shape[1] == 24 and gallery.features.shape[1] == 16
    new_old = top1_leave_one_out(query.features[:, :16], gallery.features, query.labels)
    new_new = top1_leave_one_out(query.features, query.features, query.labels)
    one_query = 1.5 / len(query.labels)  # after one epoch some neighbours differ by 3e-8: float32 may swap one
    assert rows["bt2", old.name]["top1"] == pytest.approx(new_old, abs=one_query)
    assert rows["bt2", "bt2"]["top1"] == pytest.approx(new_new, abs=one_query)


@pytest.mark.slow
def test_a_chain_generation_grows_by_a_with_grow(runs, tmp_path):
    """Generation 3 against a 24-d BT^2 generation 2: with --grow, 24 + 8 = 32 dims, the first 24 of them
    old-compatible; without it, d + a = 24 (no extra dimension left); --grow that cannot reach d is refused."""
    old, new_prime = runs
    g2, g3, flat = tmp_path / "g2", tmp_path / "g3", tmp_path / "flat"
    compat("train", "bt2", *TRAIN, "--old", old, "--new-prime", new_prime, "--add-dim", "8", "--out", g2)
    compat("train", "bt2", *TRAIN, "--old", g2, "--new-prime", new_prime, "--add-dim", "8", "--grow", "--out", g3)
    compat("train", "bt2", *TRAIN, "--old", g2, "--new-prime", new_prime, "--add-dim", "8", "--out", flat)
    grown, same = (json.loads((run / "model.json").read_text()) for run in (g3, flat))
    assert grown["embedding_dim"] == 32 and grown["extra"]["bt2"]["d_old"] == 24 and grown["extra"]["bt2"]["add"] == 16
    assert same["embedding_dim"] == 24
    from compat_bt2.methods import extra_dims

    with pytest.raises(CompatError, match="Raise --add-dim to 8"):
        extra_dims(compat_bt2.config.BT2Config(new_prime="n", add_dim=2, grow=True), d=16, d_old=8)


def top1_leave_one_out(query: np.ndarray, gallery: np.ndarray, labels: np.ndarray) -> float:
    """Share of queries whose most cosine-similar gallery item (other than the same image) has their label."""
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    similarity = q.astype(np.float64) @ g.T.astype(np.float64)
    np.fill_diagonal(similarity, -np.inf)
    return float(np.mean(labels[similarity.argmax(axis=1)] == labels))


@pytest.mark.slow
def test_bad_input(runs, tmp_path):
    old, new_prime = runs
    dims = compat("train", "bt2", *TRAIN[:-6], "--embedding-dim", "8", "--device", "cpu", "--epochs", "1", "--old",
                  old, "--new-prime", new_prime, "--out", tmp_path / "a", check=False)
    assert_user_error(dims, "--embedding-dim 8 must equal", "--embedding-dim 16")
    missing = compat("train", "bt2", *TRAIN, "--old", old, "--out", tmp_path / "b", check=False)
    assert_user_error(missing, "new_prime")
    nowhere = compat("train", "bt2", *TRAIN, "--old", old, "--new-prime", tmp_path / "none", "--out", tmp_path / "c",
                     check=False)
    assert_user_error(nowhere, "--new-prime")
    assert not any((tmp_path / name).exists() for name in "abc")
