"""compat-mixbct: which rows are replaced and which get gradient, the seeded draw, the credible mask from
`compat features denoise`, the conformance kit, the CLI on digits and bad input."""

from pathlib import Path

import compat_mixbct.plugin
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cli_runner import assert_user_error, compat
from compat_core.config import TrainConfig
from compat_core.data import open_dataset
from compat_core.methods.base import Batch, MethodContext
from compat_core.models.old import load_old_model
from compat_core.old_space import credible_mask, embed_dataset
from compat_core.testing import TINY, run_conformance, train_old_model
from compat_mixbct.config import MixBCTConfig
from compat_mixbct.methods import MixBCT


@pytest.fixture(scope="module")
def old(tmp_path_factory):
    return Path(train_old_model(tmp_path_factory.mktemp("mixbct-old")))


def context(old, tmp_path, **overrides):
    cfg = TrainConfig(**{**TINY, "out": str(tmp_path / "new"), "old": [str(old)], "augment": "none", **overrides})
    data = open_dataset(cfg.data, cfg.split, cfg.image_size)
    return MethodContext(config=cfg, data=data, old_models=[load_old_model(str(old))], method_name="mixbct")


def batch(ctx, n=32, step=0):
    positions = list(range(n))
    return Batch(ctx.data.load_images(positions), torch.as_tensor(ctx.data.labels[positions]),
                 torch.as_tensor(ctx.data.base_indices[positions]), epoch=0, step=step)


def test_the_credible_mask_is_the_denoising_of_the_old_features(old, tmp_path):
    ctx = context(old, tmp_path)
    method = MixBCT(MixBCTConfig(keep_ratio=0.5), ctx)
    feats = embed_dataset(ctx.old_model, ctx.data)
    expected = credible_mask(feats, ctx.data.labels, 0.5)
    assert method.credible[torch.as_tensor(ctx.data.base_indices)].tolist() == expected.tolist()
    assert 0.45 < expected.mean() < 0.6


def test_draw_takes_credible_rows_only_and_is_seeded_by_step(old, tmp_path):
    method = MixBCT(MixBCTConfig(keep_ratio=0.5), context(old, tmp_path))
    b = batch(method.ctx)
    credible = method.credible[b.indices]
    first = method._draw(credible, b)
    assert int(first.sum()) == int(32 * 0.3) and not (first & ~credible).any()
    assert torch.equal(first, method._draw(credible, b))  # the same step draws the same rows
    assert not torch.equal(first, method._draw(credible, batch(method.ctx, step=1)))


def test_replaced_rows_send_no_gradient_to_the_backbone(old, tmp_path):
    ctx = context(old, tmp_path)
    method = MixBCT(MixBCTConfig(mix_ratio=1.0, keep_ratio=1.0), ctx)  # every row replaced
    method(batch(ctx))["total"].backward()
    backbone = [p.grad for p in method.model.backbone.parameters()]
    assert all(g is None or not g.any() for g in backbone)
    assert method.model.head.weight.grad.abs().sum() > 0
    # the loss is the head's CE on the normalised old features
    b = batch(ctx)
    old_rows = F.normalize(ctx.old_model.embed(b.images).float(), dim=1)
    expected = F.cross_entropy(method.model.classify(old_rows, b.targets), b.targets)
    assert method(b)["ce"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_no_mixing_is_the_plain_classification_loss(old, tmp_path):
    ctx = context(old, tmp_path)
    method = MixBCT(MixBCTConfig(mix_ratio=0.0), ctx)
    b = batch(ctx)
    out = method.model(b.images, b.targets)
    terms = method(b)
    assert terms["ce"].item() == pytest.approx(F.cross_entropy(out.logits, b.targets).item(), rel=1e-6)
    assert terms["replaced_share"].item() == 0.0


@pytest.mark.slow
def test_conformance(tmp_path, old):
    run_conformance(compat_mixbct.plugin, "mixbct", tmp_path, needs_old=True, options={"keep_ratio": 0.8},
                    distribution="compat-mixbct", old_run=old)


TRAIN = ["--data", "digits", "--backbone", "test_resnet", "--epochs", "1", "--image-size", "16", "--embedding-dim",
         "16", "--device", "cpu"]


@pytest.mark.slow
def test_cli_with_a_denoise_file_and_bad_input(old, tmp_path):
    compat("features", "extract", "--model", old, "--data", "digits", "--split", "train", "--out", tmp_path / "o.npz")
    compat("features", "denoise", tmp_path / "o.npz", "--keep-ratio", "0.7", "--out", tmp_path / "d.npz")
    proc = compat("train", "mixbct", *TRAIN, "--old", old, "--credible", tmp_path / "d.npz", "--out", tmp_path / "new")
    assert "are credible (from" in proc.stdout + proc.stderr
    assert (tmp_path / "new" / "model.safetensors").is_file()
    mask = np.load(tmp_path / "d.npz")["credible"]
    assert abs(mask.mean() - 0.7) < 0.05
    # a mask of other samples, another dimension, a keep ratio outside (0, 1]
    compat("features", "extract", "--model", old, "--data", "digits", "--split", "test", "--out", tmp_path / "t.npz")
    compat("features", "denoise", tmp_path / "t.npz", "--out", tmp_path / "dt.npz")
    other = compat("train", "mixbct", *TRAIN, "--old", old, "--credible", tmp_path / "dt.npz", "--out",
                   tmp_path / "x", check=False)
    assert_user_error(other, "has no flag for", "same --data")
    dims = compat("train", "mixbct", *TRAIN[:-3], "24", "--device", "cpu", "--old", old, "--out", tmp_path / "y",
                  check=False)
    assert_user_error(dims, "one dimension", "--embedding-dim 16")
    keep = compat("train", "mixbct", *TRAIN, "--old", old, "--keep-ratio", "1.5", "--out", tmp_path / "z", check=False)
    assert_user_error(keep, "keep_ratio")
    assert not any((tmp_path / name).exists() for name in ("x", "y", "z"))


@pytest.mark.slow
def test_conformance_two_processes(tmp_path, old):
    """MixBCT draws rows per process (seeded by rank), so it is checked to train, not to equal one process."""
    run_conformance(compat_mixbct.plugin, "mixbct", tmp_path, needs_old=True, distribution="compat-mixbct",
                    old_run=old, distributed=True)
