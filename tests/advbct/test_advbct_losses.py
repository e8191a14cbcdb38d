"""AdvBCT's pieces against hand-computed values and loops written from the paper's formulas."""

import doctest
import math

import compat_advbct.losses as module
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from compat_advbct.losses import (
    adversarial_terms,
    class_boundaries,
    class_quantiles,
    dann_lambda,
    elastic_radius,
    point_to_set,
    reverse_gradient,
)


def test_docstring_examples_hold():
    assert doctest.testmod(module).failed == 0


def test_tukey_rule_drops_the_obvious_outlier_and_keeps_small_classes_whole():
    feats = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]]  # class 0: 4 together, 1 far away (n = 5 >= 4)
                         + [[2.0, 0.0]] * 2 + [[0.0, 3.0]]  # class 1: n = 3 < 4, the far one is kept
                         + [[0.0, 1.0]])  # class 2: a single sample, no boundary
    labels = torch.tensor([0] * 5 + [1] * 3 + [2])
    centres, r_max, has = class_boundaries(feats, labels, 4)
    # class 0: centre (0.8, 0.2); radii sqrt(0.08) x 4 and sqrt(1.28); Q1 = Q3 = sqrt(0.08), so the fences
    # close on sqrt(0.08) and the 5th radius is out
    assert centres[0].tolist() == pytest.approx([0.8, 0.2])
    # class 1: centre (2/3, 1/3), not re-normalised; radii sqrt(2)/3, sqrt(2)/3, 2 sqrt(2)/3
    assert centres[1].tolist() == pytest.approx([2 / 3, 1 / 3])
    assert r_max.tolist() == pytest.approx([math.sqrt(0.08), 2 * math.sqrt(2) / 3, 0.0, 0.0], abs=1e-6)
    assert has.tolist() == [True, True, False, False]


def test_lower_fence_drops_a_radius_far_below_the_others():
    # six unit vectors at angles +-0.3 (about the same radius) and one at angle 0, next to the centre
    angles = torch.tensor([0.3, -0.3, 0.31, -0.31, 0.29, -0.29, 0.0])
    feats = torch.stack([angles.cos(), angles.sin()], dim=1)
    radii = (feats - feats.mean(0)).norm(dim=1).double().numpy()
    q1, q3 = np.percentile(radii, [25, 75])
    inside = (radii >= q1 - 1.5 * (q3 - q1)) & (radii <= q3 + 1.5 * (q3 - q1))
    assert inside.tolist() == [True] * 6 + [False]  # the set-up really has a low outlier
    _, r_max, has = class_boundaries(feats, torch.zeros(7, dtype=torch.long), 1)
    assert float(r_max[0]) == pytest.approx(radii[:6].max(), abs=1e-6) and has.tolist() == [True]


def loop_boundaries(feats, labels, num_classes):
    """The metadata written per class with numpy, as the paper describes it."""
    normed = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    r_max, has = np.zeros(num_classes), np.zeros(num_classes, dtype=bool)
    for c in range(num_classes):
        members = normed[labels == c]
        if not len(members):
            continue
        radii = np.sort(np.linalg.norm(members - members.mean(axis=0), axis=1))
        if len(radii) >= 4:
            q1, q3 = np.percentile(radii, [25, 75])
            radii = radii[(radii >= q1 - 1.5 * (q3 - q1)) & (radii <= q3 + 1.5 * (q3 - q1))]
        r_max[c], has[c] = radii.max(), len(radii) > 1
    return r_max, has


def test_vectorised_metadata_matches_a_per_class_loop():
    gen = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 6, (120,), generator=gen)
    feats = torch.randn(120, 5, generator=gen) + 3 * F.one_hot(labels, 6)[:, :5].float()
    feats[7] = -feats[7]  # an outlier
    r_max, has = loop_boundaries(feats.double().numpy(), labels.numpy(), 7)  # class 6 empty
    _, got_r, got_has = class_boundaries(feats, labels, 7)
    assert got_r.tolist() == pytest.approx(r_max.tolist(), abs=1e-5)
    assert got_has.tolist() == has.tolist()


def test_class_quantiles_match_torch_quantile_per_class():
    gen = torch.Generator().manual_seed(0)
    values, labels = torch.rand(50, generator=gen), torch.randint(0, 4, (50,), generator=gen)
    for q in (0.25, 0.5, 0.75):
        expected = [float(torch.quantile(values[labels == c], q)) for c in range(4)]
        assert class_quantiles(values, labels, 4, q).tolist() == pytest.approx(expected)


def test_elastic_boundary_grows_below_theta_and_shrinks_above():
    weights = torch.tensor([0.0, math.log(3.0)], requires_grad=True)  # sigmoid: 1/2 and 3/4
    radius = elastic_radius(torch.tensor([0.1, 0.7]), weights, 0.4)
    assert radius.tolist() == pytest.approx([0.1 + 0.3 * 0.5, 0.7 - 0.3 * 0.75])
    radius.sum().backward()  # dR/dw = +-|r - theta| sigmoid (1 - sigmoid)
    assert weights.grad.tolist() == pytest.approx([0.3 * 0.25, -0.3 * 0.75 * 0.25])


def test_point_to_set_against_hand_values():
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    radius = torch.tensor([0.5, 1.0, 0.1], requires_grad=True)
    has = torch.tensor([True, True, False])  # class 2 has no boundary
    normed = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 2])
    loss, violating = point_to_set(normed, labels, centres, radius, has)
    # sample 0: sqrt(2) - 0.5; sample 1 sits at its centre; sample 2: sqrt(2) - 1; sample 3: no boundary
    assert loss.item() == pytest.approx(((math.sqrt(2) - 0.5) + (math.sqrt(2) - 1.0)) / 2)
    assert violating.tolist() == [True, False, True, False]
    loss.backward()
    assert radius.grad.tolist() == pytest.approx([-0.5, -0.5, 0.0])
    assert normed.grad[1].tolist() == [0.0, 0.0] and normed.grad[3].tolist() == [0.0, 0.0]


def test_point_to_set_without_violation_is_a_zero_in_the_graph():
    weights = torch.zeros(1, requires_grad=True)
    radius = elastic_radius(torch.tensor([0.3]), weights, 0.4)
    loss, violating = point_to_set(torch.tensor([[1.0, 0.0]]), torch.tensor([0]), torch.tensor([[1.0, 0.0]]),
                                   radius, torch.tensor([True]))
    loss.backward()
    assert loss.item() == 0.0 and not violating.any() and weights.grad.tolist() == [0.0]


def test_gradient_reversal_is_identity_forward_and_minus_lambda_backward():
    x = torch.randn(3, 4, requires_grad=True)
    grad = torch.randn(3, 4)
    y = reverse_gradient(x, 0.3)
    assert torch.equal(y, x)
    y.backward(grad)
    assert torch.allclose(x.grad, -0.3 * grad)


def test_dann_schedule():
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert dann_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert dann_lambda(-1.0) == 0.0 and dann_lambda(2.0) == dann_lambda(1.0)  # progress is clamped


def test_adversarial_terms_against_hand_values():
    disc = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with torch.no_grad():
        disc[0].weight.zero_()
        disc[0].bias.copy_(torch.tensor([0.0, math.log(3.0)]))  # P(old) = 3/4 for every input
    new = torch.randn(3, 2, requires_grad=True)
    loss, accuracy, _ = adversarial_terms(disc, new, torch.randn(2, 2), 0.7)
    assert loss.item() == pytest.approx(-math.log(0.25) - math.log(0.75))
    assert float(accuracy) == pytest.approx(2 / 5)  # D says "old" everywhere: right on the 2 old rows only
    # the new half's gradient is the plain one times -0.7
    disc[0].weight.data = torch.tensor([[1.0, -2.0], [0.5, 1.0]])
    loss, _, _ = adversarial_terms(disc, new, torch.randn(2, 2), 0.7)
    loss.backward()
    plain = new.detach().clone().requires_grad_(True)
    F.cross_entropy(disc(plain), torch.zeros(3, dtype=torch.long)).backward()
    assert torch.allclose(new.grad, -0.7 * plain.grad)


def test_adversarial_terms_count_the_live_hidden_units():
    disc = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with torch.no_grad():
        disc[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
        disc[0].bias.copy_(torch.tensor([0.0, 0.0, -5.0, -5.0]))  # units 3 and 4 are 0 on inputs in [0, 1]^2
    new, old = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    assert adversarial_terms(disc, new, old, 1.0).active.item() == pytest.approx(1 / 4)  # unit 2 is 0 too
    assert adversarial_terms(disc, new, torch.tensor([[0.0, 1.0]]), 1.0).active.item() == pytest.approx(2 / 4)
    with torch.no_grad():
        disc[0].bias.fill_(-5.0)  # every unit dead: D's output is its last bias, whatever the input
    terms = adversarial_terms(disc, new, old, 1.0)
    assert terms.active.item() == 0.0
    logits = disc(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert torch.equal(logits[0], logits[1])
