"""compat-pct methods on real (tiny) old runs: what is distilled, on which classes, from which teachers."""

import json
import shutil

import numpy as np
import pytest
import torch
from compat_core.config import TrainConfig
from compat_core.data import open_dataset
from compat_core.data.selection import parse_classes
from compat_core.errors import CompatError
from compat_core.methods.base import Batch, MethodContext
from compat_core.models.old import load_old_model
from compat_core.testing import TINY, train_old_model
from compat_pct.config import CNAConfig, ELODIConfig, PCTConfig
from compat_pct.losses import cna_loss, ldi_loss
from compat_pct.methods import CNA, ELODI, PCT


@pytest.fixture(scope="module")
def olds(tmp_path_factory):
    root = tmp_path_factory.mktemp("pct-methods")
    return {"sub": train_old_model(root, "0-4", seed=1), "a": train_old_model(root, "0-9", seed=1),
            "b": train_old_model(root, "0-9", seed=2), "root": root}


def build(method_cls, config, old_runs, name="pct"):
    common = TrainConfig(**{**TINY, "out": "unused", "old": list(old_runs)})
    data = parse_classes(common.classes, open_dataset("digits", "train", common.image_size))
    ctx = MethodContext(config=common, data=data, old_models=[load_old_model(o) for o in old_runs], method_name=name)
    torch.manual_seed(0)
    return method_cls(config, ctx), data


def batch_of(data, labels=None, size=48):
    positions = [i for i, y in enumerate(data.labels) if labels is None or int(y) in labels][:size]
    return Batch(data.load_images(positions), torch.as_tensor(data.labels[positions]),
                 torch.as_tensor(data.base_indices[positions]))


def test_no_distillation_weight_is_plain_cross_entropy(olds):
    method, data = build(PCT, PCTConfig(kd_weight=0.0, mixing="sum"), [olds["a"]])
    batch = batch_of(data)
    terms = method(batch)
    ce = torch.nn.functional.cross_entropy(method.model(batch.images).logits, batch.targets)
    assert terms["total"].item() == pytest.approx(ce.item(), rel=1e-5) and terms["kd"].item() > 0


def test_pct_distils_only_the_shared_classes(olds):
    config = PCTConfig(kd_mode="l2", kd_filter="all_pass", filter_base=1.0, filter_scale=0.0)
    method, data = build(PCT, config, [olds["sub"]])  # old knows 0-4, the new model 0-9
    assert method.teachers.shared_new.tolist() == [0, 1, 2, 3, 4]
    assert method(batch_of(data, labels={5, 6, 7, 8, 9}))["kd"].item() == 0.0  # no sample of a shared class
    batch = batch_of(data, labels={0, 1, 2, 3, 4})
    kd = method(batch)["kd"].item()
    new = method.model(batch.images).logits[:, :5]
    old = load_old_model(olds["sub"])(batch.images).logits
    assert kd == pytest.approx(((new - old) ** 2).mean().item(), rel=1e-4)


def test_old_correct_filter_weights_only_samples_the_old_model_gets_right(olds):
    config = PCTConfig(kd_mode="l2", kd_filter="old_correct", filter_base=0.0, filter_scale=1.0)
    method, data = build(PCT, config, [olds["a"]])
    batch = batch_of(data)
    kd = method(batch)["kd"].item()
    old = load_old_model(olds["a"])(batch.images).logits
    right = old.argmax(dim=1) == batch.targets
    assert 0 < int(right.sum()) < len(right)  # the check below is not vacuous
    per_sample = ((method.model(batch.images).logits - old) ** 2).mean(dim=1)
    assert kd == pytest.approx((per_sample * right).sum().item() / len(right), rel=1e-4)


@pytest.mark.parametrize("weights", [[1.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
def test_elodi_ensemble_uses_every_teacher_with_its_weight(olds, weights):
    # The original kept only the first of several teacher paths and never applied the first weight
    # (while dividing by the sum of all): [0, 1] must equal teacher b alone, [3, 1] the 3:1 mean.
    config = ELODIConfig(recipe="ldi", teacher_weights=weights)  # LDI's options (m 0.5) with 2 teachers
    method, data = build(ELODI, config, [olds["a"], olds["b"]], "elodi")
    batch = batch_of(data)
    ldi = method(batch)["ldi"].item()
    za, zb = (load_old_model(olds[k])(batch.images).logits for k in ("a", "b"))
    teacher = (weights[0] * za + weights[1] * zb) / sum(weights)
    new = method.model(batch.images).logits
    expected = ldi_loss(new, teacher, batch.targets, p=2.0, margin=0.5)["ldi"].item()
    assert ldi == pytest.approx(expected, rel=1e-4)
    if weights == [3.0, 1.0]:  # the original's (z_a + 1 * z_b) / 4 is something else
        wrong = ldi_loss(new, (za + zb) / 4, batch.targets, p=2.0, margin=0.5)["ldi"].item()
        assert abs(wrong - ldi) > 1e-3


def test_cna_in_one_process_is_the_plain_cna_loss(olds):
    config = CNAConfig(kd_filter="all_pass", filter_base=1.0, filter_scale=0.0, cna_temperature=0.1)
    method, data = build(CNA, config, [olds["a"]], "cna")
    batch = batch_of(data)
    cna = method(batch)["cna"].item()
    new = method.model(batch.images).embedding
    old = load_old_model(olds["a"]).embed(batch.images)
    assert cna == pytest.approx(cna_loss(new, old, temperature=0.1)["cna"].item(), rel=1e-4)


def renamed_run(olds, names):
    run = olds["root"] / f"renamed-{'-'.join(names)}"
    if not run.exists():
        shutil.copytree(olds["sub"], run)
        spec = json.loads((run / "model.json").read_text())
        spec["classes"] = names
        (run / "model.json").write_text(json.dumps(spec))
    return str(run)


def test_class_lists_that_do_not_fit_are_user_errors(olds, tmp_path):
    with pytest.raises(CompatError, match="same classes in the same order"):
        build(ELODI, ELODIConfig(min_teachers=2), [olds["a"], olds["sub"]], "elodi")
    with pytest.raises(CompatError, match="2 weights for 1"):
        build(ELODI, ELODIConfig(recipe="ldi", teacher_weights=[1.0, 2.0]), [olds["a"]], "elodi")
    other = renamed_run(olds, ["cat", "dog", "cow", "owl", "emu"])
    with pytest.raises(CompatError, match="none of which is a class of the training data.*--label-map"):
        build(PCT, PCTConfig(), [other])
    with pytest.raises(CompatError, match="needs the old model"):
        build(PCT, PCTConfig(), [])
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"7": "cat", "8": "dog"}))
    method, _ = build(PCT, PCTConfig(label_map=str(mapping)), [other])
    assert method.teachers.shared_new.tolist() == [7, 8] and method.teachers.shared_old.tolist() == [0, 1]
    assert method.teachers.shared_targets(torch.tensor([7, 8, 0])).tolist() == [0, 1, -1]


def test_elodi_defaults_are_the_papers_ensemble_setting_and_ldi_is_a_recipe():
    paper = ELODIConfig()
    assert (paper.recipe, paper.alpha, paper.ldi_margin, paper.ldi_topk, paper.min_teachers) == ("elodi", 0.8, 0.0,
                                                                                                  10, 8)
    assert (paper.ldi_p, paper.ldi_exclude_gt, paper.ldi_topk_by, paper.mixing, paper.kd_weight) == (2.0, True, "new",
                                                                                                      "alpha", 1.0)
    assert (paper.kd_filter, paper.filter_base, paper.filter_scale) == ("all_pass", 0.0, 1.0)
    ldi = ELODIConfig(recipe="ldi")
    assert (ldi.alpha, ldi.ldi_margin, ldi.ldi_topk, ldi.min_teachers) == (0.5, 0.5, 0, 1)
    assert ELODIConfig(recipe="ldi", alpha=0.7, min_teachers=3).alpha == 0.7  # given values win
    assert ELODIConfig(alpha=0.6).ldi_margin == 0.0
    for config in (paper, ldi, ELODIConfig(recipe="ldi", ldi_topk=4)):  # a dumped config reads back the same
        assert ELODIConfig.model_validate(config.model_dump()) == config


def test_elodi_with_the_papers_defaults_against_an_independent_computation(olds):
    config = ELODIConfig(min_teachers=2)  # the paper's alpha 0.8, margin 0, top-10, p 2; 2 teachers here
    method, data = build(ELODI, config, [olds["a"], olds["b"]], "elodi")
    batch = batch_of(data)
    terms = method(batch)
    with torch.no_grad():
        za, zb = (load_old_model(olds[k])(batch.images).logits.double().numpy() for k in ("a", "b"))
        new = method.model(batch.images).logits.double().numpy()
    teacher, y = (za + zb) / 2, batch.targets.numpy()
    per_sample = []
    for i in range(len(y)):
        others = [c for c in np.argsort(-new[i]) if c != y[i]][:10]  # top-10 by the new logits, gt excluded
        per_sample.append(np.mean([max(abs(new[i, c] - teacher[i, c]) - 0.0, 0.0) ** 2 for c in others]))
    ldi = float(np.mean(per_sample))
    with torch.no_grad():
        ce = float(torch.nn.functional.cross_entropy(method.model(batch.images).logits, batch.targets))
    assert terms["ldi"].item() == pytest.approx(ldi, rel=1e-4)
    assert terms["total"].item() == pytest.approx(0.8 * 1.0 * ldi + 0.2 * ce, rel=1e-4)


def test_elodi_refuses_fewer_teachers_than_the_ensemble(olds):
    with pytest.raises(CompatError, match=r"at least 8 teacher runs.*--old RUN 8 times.*--min-teachers 1.*--recipe ldi"):
        build(ELODI, ELODIConfig(), [olds["a"]], "elodi")
    with pytest.raises(CompatError, match="at least 3 teacher runs"):
        build(ELODI, ELODIConfig(min_teachers=3), [olds["a"], olds["b"]], "elodi")
    method, _ = build(ELODI, ELODIConfig(recipe="ldi"), [olds["a"]], "elodi")  # single-teacher LDI
    assert method.config.min_teachers == 1
