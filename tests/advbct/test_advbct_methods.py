"""compat-advbct end to end: the method's metadata, terms and parameter groups on a real old model, the
conformance kit (one step, export, kill and --resume bit-identical, two gloo processes), and the CLI."""

import json
import math
from pathlib import Path

import compat_advbct.plugin
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cli_runner import assert_user_error, compat
from compat_advbct.config import AdvBCTConfig
from compat_advbct.losses import adversarial_terms, class_boundaries, dann_lambda, point_to_set
from compat_advbct.methods import AdvBCT
from compat_core.config import TrainConfig
from compat_core.data import open_dataset
from compat_core.methods.base import Batch, MethodContext
from compat_core.models.old import load_old_model
from compat_core.old_space import embed_dataset
from compat_core.testing import TINY, run_conformance, train_old_model
from safetensors.torch import load_file


@pytest.fixture(scope="module")
def old(tmp_path_factory):
    return Path(train_old_model(tmp_path_factory.mktemp("advbct-old")))


def build(old, tmp_path, epochs=3, steps_per_epoch=5, **options):
    common = TrainConfig(**{**TINY, "epochs": epochs, "out": str(tmp_path / "x"), "old": [str(old)]})
    data = open_dataset("digits", "train", common.image_size)
    ctx = MethodContext(config=common, data=data, old_models=[load_old_model(str(old))], method_name="advbct",
                        steps_per_epoch=steps_per_epoch, total_steps=epochs * steps_per_epoch)
    torch.manual_seed(0)
    method = AdvBCT(AdvBCTConfig(**options), ctx)
    positions = list(range(32))
    batch = Batch(data.load_images(positions), torch.as_tensor(data.labels[positions]),
                  torch.as_tensor(data.base_indices[positions]), epoch=1, step=7)
    return method, ctx, batch


def test_boundaries_come_from_the_old_embeddings_of_the_whole_training_set(old, tmp_path):
    method, ctx, _ = build(old, tmp_path)
    features = embed_dataset(load_old_model(str(old)), ctx.data)
    labels = torch.as_tensor(np.asarray(ctx.data.labels))
    centres, r_max, has = class_boundaries(features, labels, len(ctx.data.classes))
    for c in range(len(ctx.data.classes)):  # centres by hand, per class
        expected = F.normalize(features[labels == c], dim=1).mean(0)
        assert torch.allclose(method.boundary.centres[c], expected, atol=1e-6)
    assert torch.equal(method.boundary.r_max, r_max) and torch.equal(method.boundary.has_boundary, has)
    assert has.all() and method.boundary.weight.abs().max() <= 1  # U(-1, 1)
    assert "advbct: old-class boundaries for 10 of 10 classes" in method.notes[0]


def test_forward_weights_and_schedules_the_terms(old, tmp_path):
    method, ctx, batch = build(old, tmp_path, p2s_weight=2.0, adv_weight=3.0)
    method.train()
    terms = method(batch)
    out = method.model(batch.images, batch.targets)
    new = F.normalize(out.embedding.float(), dim=1)
    p2s, violating = point_to_set(new, batch.targets, method.boundary.centres, method.boundary(),
                                  method.boundary.has_boundary)
    old_feats = F.normalize(method.old_embeddings(batch.images, batch.indices), dim=1)
    strength = dann_lambda(7 / 15)
    adv, accuracy, active = adversarial_terms(method.discriminator, new, old_feats, strength)
    assert terms["grl_lambda"].item() == pytest.approx(2 / (1 + math.exp(-10 * 7 / 15)) - 1)
    assert terms["p2s"].item() == pytest.approx(2.0 * p2s.item(), rel=1e-5)
    assert terms["adv"].item() == pytest.approx(3.0 * (3 - 1) / 3 * adv.item(), rel=1e-5)  # epoch 1 of 3
    assert terms["total"].item() == pytest.approx((terms["ce"] + terms["p2s"] + terms["adv"]).item(), rel=1e-6)
    assert terms["violating"].item() == pytest.approx(violating.float().mean().item())
    assert terms["disc_acc"].item() == pytest.approx(accuracy.item())
    assert terms["disc_active"].item() == pytest.approx(active.item()) and active.item() > 0.5  # D starts alive
    terms["total"].backward()  # both the new model and the boundary weights get gradients
    assert method.boundary.weight.grad is not None and method.discriminator[0].weight.grad is not None


def test_a_dead_discriminator_is_a_warning(old, tmp_path):
    method, _, batch = build(old, tmp_path)
    method.train()
    assert method.epoch_warnings(0, {"disc_active": 0.6}) == []
    with torch.no_grad():
        method.discriminator[1].bias.fill_(-100.0)  # the BatchNorm shifts below every unit's range
    terms = method(batch)
    assert terms["disc_active"].item() == 0.0
    (warning,) = method.epoch_warnings(2, {"disc_active": terms["disc_active"].item()})
    assert "in epoch 3" in warning and "--disc-lr than 0.01" in warning and "\n" not in warning
    assert build(old, tmp_path, adv_weight=0.0)[0].epoch_warnings(0, {"disc_active": 0.0}) == []


def test_discriminator_has_its_own_learning_rate(old, tmp_path):
    method, _, _ = build(old, tmp_path, disc_lr=0.5)
    groups = method.param_groups(0.1, 1e-4)
    disc = {id(p) for p in method.discriminator.parameters()}
    for group in groups:
        ids = {id(p) for p in group["params"]}
        assert ids <= disc or not ids & disc  # a group is all discriminator or none of it
        assert group["lr"] == (0.5 if ids <= disc else 0.1)
        assert group["weight_decay"] == (1e-4 if all(p.ndim > 1 for p in group["params"]) else 0.0)
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in method.parameters()) and len(set(seen)) == len(seen)
    default = build(old, tmp_path)[0].param_groups(0.1, 1e-4)
    assert {g["lr"] for g in default} == {0.1, 0.01}  # the default --disc-lr, chosen on val
    same = build(old, tmp_path, disc_lr=None)[0].param_groups(0.1, 1e-4)
    assert {g["lr"] for g in same} == {0.1}  # none: the run's --lr


@pytest.mark.slow
def test_conformance(tmp_path, old):
    run_conformance(compat_advbct.plugin, "advbct", tmp_path, needs_old=True, distribution="compat-advbct",
                    old_run=old)


@pytest.mark.slow
def test_conformance_two_processes(tmp_path, old):
    run_conformance(compat_advbct.plugin, "advbct", tmp_path, needs_old=True, distribution="compat-advbct",
                    old_run=old, options={"theta": 0.3, "disc_lr": 0.01}, distributed=True)


SMALL = ["--data", "digits", "--backbone", "test_resnet", "--image-size", "8", "--embedding-dim", "8", "--device",
         "cpu"]


@pytest.mark.slow
def test_cli_trains_exports_only_the_new_model_and_rejects_bad_input(tmp_path):
    compat("train", "baseline", *SMALL, "--classes", "0-4", "--epochs", "1", "--out", tmp_path / "old")
    compat("train", "advbct", *SMALL, "--epochs", "2", "--old", tmp_path / "old", "--out", tmp_path / "new")
    history = [json.loads(line) for line in (tmp_path / "new" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2 and set(history[0]["loss"]) == {"total", "ce", "p2s", "adv"}
    assert set(history[0]["scalars"]) == {"grl_lambda", "violating", "disc_acc", "disc_active"}
    assert 0 <= history[0]["scalars"]["grl_lambda"] < history[1]["scalars"]["grl_lambda"] < 1
    exported = load_file(tmp_path / "new" / "model.safetensors")
    assert not [k for k in exported if "discriminator" in k or "boundary" in k]
    state = torch.load(tmp_path / "new" / "checkpoint" / "state.pt", weights_only=True)["method"]
    assert "boundary.weight" in state and "discriminator.0.weight" in state  # trained, checkpointed parts
    assert json.loads((tmp_path / "new" / "model.json").read_text())["method"] == "advbct"

    theta = compat("train", "advbct", *SMALL, "--old", tmp_path / "old", "--theta", "-1", "--out", tmp_path / "a",
                   check=False)
    assert_user_error(theta, "theta")
    no_old = compat("train", "advbct", *SMALL, "--out", tmp_path / "b", check=False)
    assert_user_error(no_old, "--old")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
