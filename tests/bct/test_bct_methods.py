"""The methods' loss terms, rebuilt independently from the old model and the new model's outputs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from compat_bct.config import BCTConfig, L2Config, TripletConfig
from compat_bct.methods import BCT, L2, Triplet
from compat_core.config import TrainConfig
from compat_core.data import open_dataset
from compat_core.data.selection import parse_classes
from compat_core.errors import CompatError
from compat_core.features import extract, save
from compat_core.methods.base import Batch, MethodContext
from compat_core.models.old import load_old_model
from compat_core.testing import TINY, train_old_model


@pytest.fixture(scope="module")
def old_run(tmp_path_factory):
    return train_old_model(tmp_path_factory.mktemp("bct-old"))


# the paper's recipe: the old head's rows + class-mean rows for new classes, scored like the old head
PAPER = {"synthesize": "new-only", "normalized_classifier": False, "fit_synthesized": False}


def context(old_run, tmp_path, method, **overrides):
    cfg = TrainConfig(**{**TINY, "out": str(tmp_path / "new"), "old": [old_run], **overrides})
    data = parse_classes(cfg.classes, open_dataset(cfg.data, cfg.split, cfg.image_size))
    return MethodContext(config=cfg, data=data, old_models=[load_old_model(old_run)], method_name=method)


def first_batch(ctx, n=24):
    positions = list(range(n))
    return Batch(ctx.data.load_images(positions), torch.as_tensor(ctx.data.labels[positions]),
                 torch.as_tensor(ctx.data.base_indices[positions]))


def test_bct_terms_match_an_independent_computation(old_run, tmp_path):
    ctx = context(old_run, tmp_path, "bct")
    torch.manual_seed(0)
    method = BCT(BCTConfig(**PAPER, influence_weight=2.0, scale_synthesized=False), ctx).eval()
    batch = first_batch(ctx)
    terms = method(batch)
    old = ctx.old_model
    # classes 0-4 are the old model's (real rows), 5-9 are synthesized from old class means
    assert method.old_classifier.synthesized.tolist() == [False] * 5 + [True] * 5
    out = method.model(batch.images, batch.targets)
    ce = F.cross_entropy(out.logits, batch.targets)
    head = old.classifier.fc
    w = torch.cat([head.weight, method.old_classifier.weight[5:]])
    b = torch.cat([head.bias, torch.zeros(5)])
    influence = F.cross_entropy(out.embedding @ w.T + b, batch.targets)
    assert terms["ce"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert terms["influence"].item() == pytest.approx(influence.item(), rel=1e-5)
    assert terms["total"].item() == pytest.approx(ce.item() + 2.0 * influence.item(), rel=1e-5)
    # a synthesized row is the mean of normalised old embeddings of that class (no augmentation)
    positions = np.flatnonzero(ctx.data.labels == 7)
    expected = F.normalize(old.embed(ctx.data.load_images(positions)), dim=1).mean(0)
    assert torch.allclose(method.old_classifier.weight[7], expected, atol=1e-5)


def test_bct_new_only_scales_synthesized_rows_to_the_real_rows_norm(old_run, tmp_path):
    ctx = context(old_run, tmp_path, "bct")
    method = BCT(BCTConfig(**PAPER), ctx)
    real_norm = ctx.old_model.classifier.fc.weight.norm(dim=1).mean()
    positions = np.flatnonzero(ctx.data.labels == 7)
    direction = F.normalize(F.normalize(ctx.old_model.embed(ctx.data.load_images(positions)), dim=1).mean(0), dim=0)
    assert torch.allclose(method.old_classifier.weight[7], direction * real_norm, atol=1e-5)
    assert torch.allclose(method.old_classifier.weight[:5], ctx.old_model.classifier.fc.weight)


def test_bct_default_influence_is_cosine_through_rows_fitted_to_old_embeddings(old_run, tmp_path):
    ctx = context(old_run, tmp_path, "bct")
    torch.manual_seed(0)
    method = BCT(BCTConfig(), ctx).eval()
    clf = method.old_classifier
    assert clf.kind == "cosine" and clf.scale == 4.0 and clf.synthesized.all()
    batch = first_batch(ctx)
    out = method.model(batch.images, batch.targets)
    expected = F.cross_entropy(4.0 * F.normalize(out.embedding, dim=1) @ F.normalize(clf.weight, dim=1).T,
                               batch.targets)
    assert method(batch)["influence"].item() == pytest.approx(expected.item(), rel=1e-5)
    # the rows started from the class means and were fitted: the cosine classifier labels the old
    # model's own training embeddings at least as well as the class means do
    old_feats = ctx.old_model.embed(ctx.data.load_images(np.arange(len(ctx.data)))).detach()
    labels = torch.as_tensor(ctx.data.labels)
    means = torch.stack([F.normalize(old_feats[labels == c], dim=1).mean(0) for c in range(10)])

    def accuracy(rows):
        return (F.normalize(old_feats, dim=1) @ F.normalize(rows, dim=1).T).argmax(1).eq(labels).float().mean()

    assert not torch.allclose(clf.weight, means, atol=1e-3)
    assert accuracy(clf.weight) >= accuracy(means)
    report = method.model.spec.extra["old_classifier"]
    assert report["accuracy_on_old_embeddings"] and report["accuracy_before_fit"]
    assert method.notes and "fitted" in method.notes[0]


def test_bct_only_trains_the_new_model(old_run, tmp_path):
    ctx = context(old_run, tmp_path, "bct")
    method = BCT(BCTConfig(), ctx)
    trainable = {name for name, p in method.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("model.") for name in trainable)
    before = ctx.old_model.classifier.weight.clone()
    method(first_batch(ctx))["total"].backward()
    assert torch.equal(before, ctx.old_model.classifier.weight)
    assert "old_classifier.weight" in method.state_dict()


def test_cached_old_features_give_the_same_l2_term(old_run, tmp_path):
    ctx = context(old_run, tmp_path, "l2", augment="none")
    path = tmp_path / "old.npz"
    save(path, extract(ctx.old_model.model, ctx.data))
    # core's rule: cached (un-augmented) old embeddings cannot be paired with augmented images...
    with pytest.raises(CompatError, match="--augment none"):
        L2(L2Config(old_features=str(path)), context(old_run, tmp_path, "l2", augment="crop-flip"))
    # ...but BCT's rows are whole-dataset class means, which a cache gives exactly
    BCT(BCTConfig(old_features=str(path)), context(old_run, tmp_path, "bct", augment="crop-flip"))
    torch.manual_seed(0)
    online = L2(L2Config(), ctx).eval()
    torch.manual_seed(0)
    cached = L2(L2Config(old_features=str(path)), ctx).eval()
    batch = first_batch(ctx)
    assert cached(batch)["l2"].item() == pytest.approx(online(batch)["l2"].item(), rel=1e-4)


def test_l2_no_ce_returns_only_the_regression(old_run, tmp_path):
    ctx = context(old_run, tmp_path, "l2")
    terms = L2(L2Config(no_ce=True, l2_weight=1.0), ctx)(first_batch(ctx))
    assert set(terms) == {"total", "l2"} and terms["total"].item() == terms["l2"].item()


def test_triplet_has_no_influence_term(old_run, tmp_path):
    ctx = context(old_run, tmp_path, "triplet")
    assert set(Triplet(TripletConfig(), ctx)(first_batch(ctx))) == {"total", "ce", "triplet"}


def test_dimension_mismatch_is_a_user_error(old_run, tmp_path):
    ctx = context(old_run, tmp_path, "bct", embedding_dim=8)
    with pytest.raises(CompatError, match="--dim-policy zero-pad"):
        BCT(BCTConfig(), ctx)
    with pytest.raises(CompatError, match="needs a new embedding longer"):
        BCT(BCTConfig(dim_policy="truncate"), ctx)
    method = BCT(BCTConfig(dim_policy="zero-pad"), ctx)
    assert torch.isfinite(method(first_batch(ctx))["total"])


def test_missing_old_model_is_a_user_error(tmp_path):
    cfg = TrainConfig(**{**TINY, "out": str(tmp_path / "new")})
    ctx = MethodContext(config=cfg, data=open_dataset("digits", "train", 16), method_name="bct")
    with pytest.raises(CompatError, match="--old"):
        BCT(BCTConfig(), ctx)
