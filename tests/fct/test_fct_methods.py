"""The fct and fastfill methods on untrained runs: inputs, loss, BatchNorm freeze, export, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from compat_core.config import TrainConfig
from compat_core.data import open_dataset
from compat_core.errors import CompatError
from compat_core.features import extract, save
from compat_core.methods.base import Batch, MethodContext
from compat_core.models.embedding import EmbeddingModel, ModelSpec
from compat_core.models.old import load_old_model
from compat_core.models.run import load_model, save_model
from compat_fct.config import FastFillConfig, FCTConfig
from compat_fct.methods import FCT, FastFill
from compat_fct.transformed import TransformedModel

DIGITS = [str(i) for i in range(10)]


def random_run(path, dim, classes, seed):
    torch.manual_seed(seed)
    spec = ModelSpec(backbone="test_resnet", embedding_dim=dim, num_classes=len(classes), classes=list(classes),
                     input={"size": 16, "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3})
    save_model(EmbeddingModel(spec), path)
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fct-methods")
    return {"old": random_run(root / "old", 8, DIGITS[:5], 1), "new": random_run(root / "new", 6, DIGITS, 2),
            "side": random_run(root / "side", 5, ["x", "y"], 3), "root": root}


@pytest.fixture(scope="module")
def data():
    return open_dataset("digits", "train", 16)


def context(runs, data, method="fct", **common):
    config = TrainConfig(**{"data": "digits", "out": str(runs["root"] / "out"), "old": [runs["old"]],
                            "image_size": 16, "epochs": 4, **common})
    return MethodContext(config=config, data=data, old_models=[load_old_model(runs["old"])], method_name=method)


def batch(data, n=16):
    positions = np.arange(n)
    return Batch(data.load_images(positions), torch.as_tensor(data.labels[positions]),
                 torch.as_tensor(data.base_indices[positions]))


def test_fct_loss_is_mse_between_h_of_old_and_new(runs, data):
    method = FCT(FCTConfig(new=runs["new"], mixer_width=16), context(runs, data))
    spec = method.transformation.spec
    assert (spec.old_dim, spec.side_dim, spec.new_dim) == (8, 8, 6)  # no side info: old fills in
    b = batch(data)
    method.eval()
    terms = method(b)
    old = load_old_model(runs["old"]).embed(b.images)
    new = load_old_model(runs["new"]).embed(b.images)
    expected = torch.mean((method.transformation(old, old).embedding - new) ** 2)
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert [n for n, p in method.named_parameters() if p.requires_grad] == \
        [n for n, _ in method.named_parameters() if n.startswith("transformation.")]


def test_side_info_model_feeds_the_side_branch(runs, data):
    method = FCT(FCTConfig(new=runs["new"], side_info=runs["side"], mixer_width=16), context(runs, data))
    assert method.transformation.spec.side_dim == 5
    old, side, target = method.inputs(batch(data, 4))
    assert side.shape == (4, 5) and torch.equal(side, load_old_model(runs["side"]).embed(batch(data, 4).images))


def test_batchnorm_is_frozen_for_the_second_half(runs, data):
    method = FCT(FCTConfig(new=runs["new"], mixer_width=16), context(runs, data, epochs=4))
    for epoch, training in ((0, True), (1, True), (2, False), (3, False)):
        method.train()
        method.on_epoch_start(epoch)
        assert method.transformation.training is training, epoch
    kept = FCT(FCTConfig(new=runs["new"], mixer_width=16, freeze_bn_second_half=False), context(runs, data))
    kept.train()
    kept.on_epoch_start(3)
    assert kept.transformation.training


def test_export_is_a_gallery_model_that_round_trips(runs, data, tmp_path):
    method = FCT(FCTConfig(new=runs["new"], side_info=runs["side"], mixer_width=16), context(runs, data))
    exported = method.export()
    assert isinstance(exported, TransformedModel)
    save_model(exported.eval(), tmp_path / "fct")
    loaded = load_model(tmp_path / "fct")
    images = batch(data, 8).images
    with torch.no_grad():
        assert torch.allclose(loaded(images).embedding, exported(images).embedding, atol=1e-6)
    assert loaded.embedding_dim == 6 and loaded.spec.extra["fct"]["sources"]["side_info"] == runs["side"]


def test_fastfill_discriminative_term_uses_the_new_classifier_by_class_name(runs, data):
    config = FastFillConfig(new=runs["new"], mixer_width=16, similarity_weight=0.0, uncertainty=False)
    method = FastFill(config, context(runs, data, method="fastfill"))
    assert method.new_label.tolist() == list(range(10))
    terms = method(batch(data))
    assert set(terms) == {"total", "similarity", "discriminative"}
    terms["total"].backward()  # the gradient reaches h through the frozen classifier only
    grads = [p.grad for p in method.transformation.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in load_old_model(runs["new"]).model.parameters())


def test_fastfill_has_an_uncertainty_head_and_logs_sigma(runs, data):
    method = FastFill(FastFillConfig(new=runs["new"], mixer_width=16), context(runs, data, method="fastfill"))
    assert method.transformation.uncertainty_head is not None
    assert set(method(batch(data))) == {"total", "similarity", "discriminative", "sigma"}


def test_fastfill_with_a_class_the_new_model_lacks_is_a_user_error(runs, data, tmp_path):
    new = random_run(tmp_path / "new-few", 6, DIGITS[:3], 4)
    with pytest.raises(CompatError, match="class '3'"):
        FastFill(FastFillConfig(new=new, mixer_width=16), context(runs, data, method="fastfill"))
    FastFill(FastFillConfig(new=new, mixer_width=16, discriminative_weight=0.0), context(runs, data, method="fastfill"))


def test_old_features_are_looked_up_and_need_no_augmentation(runs, data, tmp_path):
    feats = extract(load_model(runs["old"]), data)
    feats.features[:] = np.arange(feats.features.size, dtype=np.float32).reshape(feats.features.shape)
    path = save(tmp_path / "old-train.npz", feats)
    with pytest.raises(CompatError, match="--augment none"):
        FCT(FCTConfig(new=runs["new"], old_features=str(path)), context(runs, data))
    method = FCT(FCTConfig(new=runs["new"], old_features=str(path), mixer_width=16),
                 context(runs, data, augment="none"))
    b = batch(data, 4)
    old, side, _ = method.inputs(b)
    assert torch.equal(old, torch.from_numpy(feats.features[:4])) and torch.equal(side, old)


def test_missing_runs_are_user_errors_naming_the_flag(runs, data, tmp_path):
    with pytest.raises(CompatError, match="--new"):
        FCT(FCTConfig(new=str(tmp_path / "nope")), context(runs, data))
    with pytest.raises(CompatError, match="--side-info"):
        FCT(FCTConfig(new=runs["new"], side_info=str(tmp_path / "nope")), context(runs, data))
    ctx = context(runs, data)
    ctx.old_models = []
    with pytest.raises(CompatError, match="--old"):
        FCT(FCTConfig(new=runs["new"]), ctx)
