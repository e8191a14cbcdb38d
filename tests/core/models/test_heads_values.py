"""Classifier heads against hand-computed logits (math module only, no torch formulas)."""

from __future__ import annotations

import math

import pytest
import torch
from compat_core.models.embedding import EmbeddingModel, ModelSpec
from compat_core.models.heads import CosineHead, LinearHead, build_head, head_settings
from torch import nn

# Class rows of very different norms (3, 0.5, sqrt 2): only per-row normalization makes them unit rows.
WEIGHT = torch.tensor([[3.0, 0.0], [0.0, 0.5], [1.0, 1.0]])
# Embeddings of norm 2 and 4: normalized to (1, 0) and (0, -1).
EMBEDDING = torch.tensor([[2.0, 0.0], [0.0, -4.0]])
R = 1 / math.sqrt(2)
COS = [[1.0, 0.0, R], [0.0, -1.0, -R]]  # hand-computed cos(embedding, class row)


def cosine_head(kind: str, scale: float, margin: float = 0.0, weight: torch.Tensor = WEIGHT) -> CosineHead:
    head = CosineHead(weight.shape[1], weight.shape[0], scale=scale, margin=margin, kind=kind)
    with torch.no_grad():
        head.weight.copy_(weight)
    return head


def logits(head: nn.Module, embedding: torch.Tensor = EMBEDDING, targets=None) -> list[list[float]]:
    with torch.no_grad():
        return head(embedding, None if targets is None else torch.tensor(targets)).tolist()


def assert_close(actual, expected, tol=1e-4):
    assert len(actual) == len(expected)
    for row_a, row_e in zip(actual, expected, strict=True):
        assert row_a == pytest.approx(row_e, abs=tol)


def test_linear_head_is_wf_plus_b():
    head = LinearHead(2, 3)
    with torch.no_grad():
        head.fc.weight.copy_(WEIGHT)
        head.fc.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    # row 0: (2,0): [6, 0, 2] + b ; row 1: (0,-4): [0, -2, -4] + b
    expected = [[6.5, -1.0, 4.0], [0.5, -3.0, -2.0]]
    assert_close(logits(head), expected)
    assert_close(logits(head, targets=[0, 1]), expected)  # targets change nothing
    assert head.weight is head.fc.weight


def test_normface_is_scaled_cosine_with_per_row_normalization():
    head = cosine_head("normface", scale=30.0)
    out = logits(head)
    assert_close(out, [[30 * c for c in row] for row in COS])
    # normalizing along the class axis (OpenBCT's bug) would give other logits for these weights
    column_norm = WEIGHT / WEIGHT.norm(dim=0, keepdim=True)
    wrong = (30 * torch.nn.functional.normalize(EMBEDDING, dim=1) @ column_norm.T).tolist()
    assert abs(wrong[0][0] - out[0][0]) > 1.0
    # scaling one class row changes nothing: the normalization is per row
    rescaled = cosine_head("normface", scale=30.0, weight=WEIGHT * torch.tensor([[10.0], [1.0], [0.1]]))
    assert_close(logits(rescaled), logits(head))


def test_normface_ignores_targets():
    head = cosine_head("normface", scale=30.0)
    assert_close(logits(head, targets=[2, 0]), logits(head))


def test_cosine_is_invariant_to_embedding_norm():
    head = cosine_head("normface", scale=1.0)
    assert_close(logits(head, embedding=EMBEDDING * 100), COS)
    assert_close(head.cosine(EMBEDDING).tolist(), COS)


def test_cosface_subtracts_margin_from_target_only():
    head = cosine_head("cosface", scale=64.0, margin=0.4)
    out = logits(head, targets=[2, 0])
    expected = [[64 * 1.0, 0.0, 64 * (R - 0.4)], [64 * (0.0 - 0.4), -64.0, -64 * R]]
    assert_close(out, expected, tol=1e-3)


def test_arcface_adds_angle_to_target():
    m, s = 0.5, 64.0
    head = cosine_head("arcface", scale=s, margin=m)
    out = logits(head, targets=[2, 0])
    theta_a, theta_b = math.acos(R), math.acos(0.0)  # pi/4 and pi/2: theta + m < pi
    assert theta_a + m < math.pi and theta_b + m < math.pi
    expected = [[s * 1.0, 0.0, s * math.cos(theta_a + m)], [s * math.cos(theta_b + m), -s, -s * R]]
    assert_close(out, expected, tol=1e-3)
    assert out[0][2] == pytest.approx(64 * math.cos(math.pi / 4 + 0.5), abs=1e-3)


def test_arcface_falls_back_to_linear_penalty_past_pi():
    m, s = 0.5, 64.0
    c = -0.95  # theta = acos(-0.95) = 2.824 > pi - m = 2.642
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    embedding = torch.tensor([[c, math.sqrt(1 - c * c)]])
    head = cosine_head("arcface", scale=s, margin=m, weight=weight)
    assert math.acos(c) + m > math.pi
    out = logits(head, embedding=embedding, targets=[0])
    assert out[0][0] == pytest.approx(s * (c - math.sin(math.pi - m) * m), abs=1e-3)
    assert out[0][1] == pytest.approx(s * math.sqrt(1 - c * c), abs=1e-3)
    # the fallback is not cos(theta + m), which would rise again past pi
    assert abs(out[0][0] - s * math.cos(math.acos(c) + m)) > 1.0


def test_arcface_margin_is_monotonic_in_angle():
    head = cosine_head("arcface", scale=1.0, margin=0.5, weight=torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    angles = torch.linspace(0.05, math.pi - 0.05, 60)
    embedding = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    target = torch.tensor(logits(head, embedding=embedding, targets=[0] * 60))[:, 0]
    assert bool((target[1:] < target[:-1]).all())


@pytest.mark.parametrize("kind, margin", [("cosface", 0.4), ("arcface", 0.5)])
def test_no_margin_without_targets(kind, margin):
    head = cosine_head(kind, scale=64.0, margin=margin)
    assert_close(logits(head), [[64 * c for c in row] for row in COS], tol=1e-3)


def test_zero_margin_arcface_equals_normface():
    arc = cosine_head("arcface", scale=10.0, margin=0.0)
    assert_close(logits(arc, targets=[2, 0]), [[10 * c for c in row] for row in COS])


def test_margin_does_not_modify_cosine_in_place():
    head = cosine_head("cosface", scale=1.0, margin=0.4)
    before = head.cosine(EMBEDDING).tolist()
    logits(head, targets=[0, 1])
    assert_close(head.cosine(EMBEDDING).tolist(), before)


@pytest.mark.parametrize("kind, scale, margin, head_margin", [
    ("normface", 30.0, 0.0, None),
    ("normface", 30.0, 0.0, 0.3),  # normface never has a margin
    ("cosface", 64.0, 0.4, None),
    ("arcface", 64.0, 0.5, None),
])
def test_build_head_defaults(kind, scale, margin, head_margin):
    head = build_head(kind, 4, 3, margin=head_margin)
    assert isinstance(head, CosineHead)
    assert (head.kind, head.scale, head.margin) == (kind, scale, margin)
    assert tuple(head.weight.shape) == (3, 4)


def test_build_head_explicit_values_and_linear():
    head = build_head("arcface", 4, 3, scale=16.0, margin=0.2)
    assert (head.scale, head.margin) == (16.0, 0.2)
    head = build_head("cosface", 4, 3, scale=8.0, margin=0.0)
    assert (head.scale, head.margin) == (8.0, 0.0)
    linear = build_head("linear", 4, 3, scale=5.0, margin=0.1)
    assert isinstance(linear, LinearHead) and tuple(linear.weight.shape) == (3, 4)


def test_head_settings():
    assert head_settings("linear", 3.0, 0.2) == {"type": "linear"}
    assert head_settings("normface", None, None) == {"type": "normface", "scale": 30.0, "margin": 0.0}
    assert head_settings("normface", 10.0, 0.3) == {"type": "normface", "scale": 10.0, "margin": 0.0}
    assert head_settings("cosface", None, None) == {"type": "cosface", "scale": 64.0, "margin": 0.4}
    assert head_settings("arcface", None, None) == {"type": "arcface", "scale": 64.0, "margin": 0.5}
    assert head_settings("arcface", 32.0, 0.25) == {"type": "arcface", "scale": 32.0, "margin": 0.25}


class FlatBackbone(nn.Module):
    num_features = 12

    def forward(self, x):
        return x.mean(dim=(2, 3)).repeat(1, 4)


@pytest.mark.parametrize("kind, scale, margin", [("arcface", None, None), ("cosface", 16.0, 0.1),
                                                 ("normface", None, None)])
def test_embedding_model_builds_head_from_spec(kind, scale, margin):
    spec = ModelSpec.from_options(backbone="flat", embedding_dim=6, classes=["a", "b", "c"], head=kind,
                                  head_scale=scale, head_margin=margin, image_size=8)
    model = EmbeddingModel(spec, backbone=FlatBackbone())
    assert spec.head == head_settings(kind, scale, margin)
    assert (model.head.kind, model.head.scale, model.head.margin) == (kind, spec.head["scale"], spec.head["margin"])
    assert tuple(model.classifier_weight.shape) == (3, 6)
    out = model(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    assert tuple(out.embedding.shape) == (2, 6) and tuple(out.logits.shape) == (2, 3)
