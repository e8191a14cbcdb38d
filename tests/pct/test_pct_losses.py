"""compat-pct losses against hand-computed values and loop implementations, including the cases the
original code got wrong (LDI top-k along the batch axis)."""

import math

import numpy as np
import pytest
import torch
from compat_pct.losses import (
    cna_loss,
    cna_per_anchor,
    focal_distillation_loss,
    focal_weights,
    kl_per_sample,
    l2_per_sample,
    ldi_class_mask,
    ldi_loss,
    ldi_per_sample,
    mix,
    teacher_similarity,
    weighted_mean,
)

OLD_RIGHT = torch.tensor([True, True, False, False])
NEW_RIGHT = torch.tensor([True, False, True, False])


@pytest.mark.parametrize("kd_filter, expected", [
    ("all_pass", [3.0, 3.0, 3.0, 3.0]),
    ("old_correct", [3.0, 3.0, 1.0, 1.0]),
    ("neg_flip", [1.0, 3.0, 1.0, 1.0]),
    ("new_incorrect", [1.0, 3.0, 1.0, 3.0]),
])
def test_focal_weights_base_plus_scale_times_filter(kd_filter, expected):
    assert focal_weights(kd_filter, 1.0, 2.0, OLD_RIGHT, NEW_RIGHT).tolist() == expected
    with pytest.raises(ValueError):
        focal_weights("likelihood", 1.0, 2.0, OLD_RIGHT, NEW_RIGHT)


def test_weighted_mean_divides_by_the_samples_taking_part():
    values = torch.tensor([1.0, 2.0, 4.0, float("nan")])
    weights = torch.tensor([1.0, 6.0, 6.0, 6.0])
    mask = torch.tensor([True, True, False, False])
    assert weighted_mean(values, weights, mask).item() == pytest.approx((1 + 12) / 2)  # the NaN stays out
    leaf = torch.ones(3, requires_grad=True)
    none = weighted_mean(leaf * 2, None, torch.zeros(3, dtype=torch.bool))
    none.backward()
    assert none.item() == 0.0 and leaf.grad.tolist() == [0.0, 0.0, 0.0]


def test_mix_alpha_and_sum():
    ce, term = torch.tensor(2.0), torch.tensor(4.0)
    alpha = mix(ce, "kd", term, kd_weight=0.5, mixing="alpha", alpha=0.9)
    assert alpha["total"].item() == pytest.approx(0.9 * 0.5 * 4 + 0.1 * 2)
    assert mix(ce, "kd", term, kd_weight=0.5, mixing="sum")["total"].item() == pytest.approx(2 + 0.5 * 4)
    assert set(alpha) == {"total", "ce", "kd"}


def test_kl_is_t_squared_times_kl_of_softened_distributions():
    new = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    old = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    temperature = 2.0
    expected = []
    for z_new, z_old in zip(new.numpy().astype(np.float64), old.numpy().astype(np.float64), strict=True):
        p = np.exp(z_old / temperature) / np.exp(z_old / temperature).sum()
        q = np.exp(z_new / temperature) / np.exp(z_new / temperature).sum()
        expected.append(temperature**2 * float(np.sum(p * np.log(p / q))))
    assert kl_per_sample(new, old, temperature).tolist() == pytest.approx(expected, rel=1e-5)


def test_distillation_does_not_train_the_teacher():
    new = torch.randn(3, 4, requires_grad=True)
    old = torch.randn(3, 4, requires_grad=True)
    (kl_per_sample(new, old, 5.0).sum() + l2_per_sample(new, old).sum()).backward()
    assert new.grad is not None and old.grad is None


def test_l2_and_focal_distillation_hand_values():
    new = torch.tensor([[1.0, 3.0], [2.0, 2.0], [0.0, 0.0]])
    old = torch.zeros(3, 2)
    assert l2_per_sample(new, old).tolist() == [5.0, 4.0, 0.0]
    weights = torch.tensor([6.0, 1.0, 6.0])
    mask = torch.tensor([True, True, False])
    terms = focal_distillation_loss(new, old, weights, mask, mode="l2")
    assert terms["kd"].item() == pytest.approx((6 * 5 + 1 * 4) / 2) and terms["total"] is terms["kd"]
    with pytest.raises(ValueError):
        focal_distillation_loss(new, old, mode="gt")  # listed but never implemented by the original


def test_ldi_hand_values_margin_gt_and_p():
    new = torch.tensor([[3.0, 0.0, 1.0, -0.2]])
    old = torch.zeros(1, 4)
    target = torch.tensor([1])
    # |diff| - 0.5 clamped: [2.5, -, 0.5, 0]; gt (class 1) excluded: mean over 3 classes
    assert ldi_per_sample(new, old, target, p=2, margin=0.5).item() == pytest.approx((6.25 + 0.25) / 3)
    assert ldi_per_sample(new, old, target, p=1, margin=0.5).item() == pytest.approx(3.0 / 3)
    assert ldi_per_sample(new, old, target, p=2, margin=0.5, p_norm=True).item() == pytest.approx(math.sqrt(6.5))
    with_gt = ldi_per_sample(new + torch.tensor([[0.0, 2.0, 0.0, 0.0]]), old, target, p=2, margin=0.5,
                             exclude_gt=False)
    assert with_gt.item() == pytest.approx((6.25 + 2.25 + 0.25) / 4)


def test_ldi_inside_the_margin_has_no_gradient():
    new = torch.tensor([[0.3, -0.4]], requires_grad=True)
    ldi_per_sample(new, torch.zeros(1, 2), None, p=2, margin=0.5).sum().backward()
    assert new.grad.abs().sum().item() == 0.0


def ldi_topk_reference(new, old, targets, k, p=2.0, margin=0.0):
    """Per sample: the k classes with the highest new logits, ground truth excluded, averaged."""
    out = []
    for z_new, z_old, y in zip(new.tolist(), old.tolist(), targets.tolist(), strict=True):
        candidates = sorted((c for c in range(len(z_new)) if c != y), key=lambda c: -z_new[c])[:k]
        out.append(sum(max(abs(z_new[c] - z_old[c]) - margin, 0.0) ** p for c in candidates) / len(candidates))
    return out


def test_ldi_topk_picks_each_samples_own_classes():
    torch.manual_seed(0)
    new, old = torch.randn(6, 8), torch.randn(6, 8)
    targets = torch.randint(0, 8, (6,))
    got = ldi_per_sample(new, old, targets, p=2, margin=0.0, topk=3)
    assert got.tolist() == pytest.approx(ldi_topk_reference(new, old, targets, 3), rel=1e-5)
    mask = ldi_class_mask(new, old, targets, topk=3)
    assert mask.sum(dim=1).tolist() == [3] * 6 and not mask[torch.arange(6), targets].any()


def test_ldi_topk_is_not_the_originals_batch_axis_no_op():
    # The original took argsort(...)[:k] along the batch axis: every kept row was a full permutation
    # of the classes, so the top-k loss equalled the all-class loss. Ours must differ here.
    new = torch.tensor([[5.0, 4.0, 0.0, 0.0], [0.0, 0.0, 5.0, 4.0]])
    old = torch.tensor([[5.0, 4.0, 3.0, 3.0], [3.0, 3.0, 5.0, 4.0]])
    targets = torch.tensor([0, 2])
    top1 = ldi_loss(new, old, targets, p=2, margin=0.0, topk=1)["ldi"].item()
    everything = ldi_loss(new, old, targets, p=2, margin=0.0)["ldi"].item()
    assert top1 == pytest.approx(0.0)  # each sample's best non-gt class (1 and 3) already matches the teacher
    assert everything == pytest.approx((9 + 9) / 3)  # the other classes differ by 3


def test_ldi_topk_by_teacher_logits():
    new = torch.tensor([[0.0, 5.0, 1.0]])
    old = torch.tensor([[0.0, 1.0, 5.0]])
    assert ldi_class_mask(new, old, None, exclude_gt=False, topk=1, topk_by="old").tolist() == [[False, False, True]]
    assert ldi_class_mask(new, old, None, exclude_gt=False, topk=1, topk_by="new").tolist() == [[False, True, False]]


def cna_reference(new, teacher, temperature, k, form):
    """CNA written as loops over anchors (cosine similarities, self excluded everywhere)."""
    n = len(new)
    f = torch.nn.functional.normalize(new.double(), dim=1)
    t = torch.nn.functional.normalize(teacher.double(), dim=1)
    losses = []
    for i in range(n):
        others = [a for a in range(n) if a != i]
        positives = sorted(others, key=lambda j: -float(t[i] @ t[j]))[:k]
        s = {a: float(f[i] @ f[a]) / temperature for a in others}
        log_z = math.log(sum(math.exp(v) for v in s.values()))
        if form == "out":
            losses.append(sum(log_z - s[j] for j in positives) / len(positives))
        else:
            losses.append(log_z - math.log(sum(math.exp(s[j]) for j in positives)))
    return losses


@pytest.mark.parametrize("form, k", [("out", 1), ("out", 3), ("in", 2)])
def test_cna_matches_a_loop_implementation(form, k):
    torch.manual_seed(1)
    new, teacher = torch.randn(7, 5), torch.randn(7, 3)  # teacher and new dimensions may differ
    anchors = torch.arange(7)
    got = cna_per_anchor(new, teacher_similarity([teacher], anchors), anchors, 0.5, k, form)
    assert got.tolist() == pytest.approx(cna_reference(new, teacher, 0.5, k, form), rel=1e-5)


def test_cna_hand_value_and_subset_of_anchors():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    terms = cna_loss(f, f, temperature=1.0)
    expected = (math.log(1 + math.e) - 1) * 2 / 3 + math.log(2) / 3
    assert terms["cna"].item() == pytest.approx(expected, rel=1e-6)
    # computing only some anchors (one process's share of a gathered batch) gives those rows
    torch.manual_seed(2)
    new, teacher = torch.randn(6, 4), torch.randn(6, 4)
    rows = torch.tensor([3, 4, 5])
    full = cna_per_anchor(new, teacher_similarity([teacher], torch.arange(6)), torch.arange(6), 0.1, 2)
    part = cna_per_anchor(new, teacher_similarity([teacher], rows), rows, 0.1, 2)
    assert part.tolist() == pytest.approx(full[3:].tolist(), rel=1e-6)


def test_cna_single_sample_is_zero_not_nan():
    value = cna_per_anchor(torch.ones(1, 3), torch.ones(1, 1), torch.tensor([0]))
    assert value.tolist() == [0.0]


def test_teacher_similarity_weights_every_teacher():
    first = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    second = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # another dimension
    got = teacher_similarity([first, second], torch.arange(2), torch.tensor([0.75, 0.25]))
    assert got.flatten().tolist() == pytest.approx([1.0, 0.25, 0.25, 1.0])
