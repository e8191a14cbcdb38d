"""NCCL's terms against loops written from the paper's formulas, on tiny tensors."""

import math

import pytest
import torch
import torch.nn.functional as F
from compat_nccl.losses import consensus_weights, entropy_credible, neighbourhood_contrastive


def loop_loss(anchors, keys, anchor_labels, key_labels, weights, tau, valid):
    total, used = 0.0, 0
    for i in range(len(anchors)):
        scores = [float(anchors[i] @ keys[k]) / tau for k in range(len(keys)) if valid[k]]
        log_norm = math.log(sum(math.exp(s) for s in scores))
        positives = [k for k in range(len(keys)) if valid[k] and key_labels[k] == anchor_labels[i]]
        if not positives:
            continue
        term = sum(float(weights[i, k]) * (float(anchors[i] @ keys[k]) / tau - log_norm) for k in positives)
        total += -term / len(positives)
        used += 1
    return total / used


@pytest.mark.parametrize("tau", [1.0, 0.1])
def test_weighted_contrastive_term_matches_a_loop(tau):
    gen = torch.Generator().manual_seed(0)
    anchors = F.normalize(torch.randn(5, 4, generator=gen), dim=1)
    keys = F.normalize(torch.randn(9, 4, generator=gen), dim=1)
    anchor_labels = torch.tensor([0, 1, 2, 0, 3])  # class 3 has no key: left out of the mean
    key_labels = torch.tensor([0, 1, 1, 2, 0, 2, 1, 0, 3])
    valid = torch.tensor([True] * 8 + [False])  # slot 8 (the only class-3 key) never written
    weights = torch.rand(5, 9, generator=gen)
    got = neighbourhood_contrastive(anchors, keys, anchor_labels, key_labels, weights, tau, valid)
    assert float(got) == pytest.approx(loop_loss(anchors, keys, anchor_labels, key_labels, weights, tau, valid),
                                       rel=1e-5)


def test_consensus_weights_map_cosine_to_zero_one():
    old = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    keys = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    assert consensus_weights(old, keys).tolist() == [[1.0, 0.0, 0.5], [0.5, 0.5, 1.0]]


def test_no_positive_key_gives_a_zero_term_with_a_graph():
    anchors = torch.ones(1, 2, requires_grad=True)
    loss = neighbourhood_contrastive(anchors, torch.ones(1, 2), torch.tensor([0]), torch.tensor([1]),
                                     torch.ones(1, 1), 1.0)
    loss.backward()
    assert loss.item() == 0.0 and anchors.grad is not None


def test_entropy_filter_matches_a_loop():
    gen = torch.Generator().manual_seed(1)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    old = torch.randn(8, 3, generator=gen) + 2 * F.one_hot(labels, 3).float()
    normed = F.normalize(old, dim=1)
    centres = [F.normalize(normed[labels == c].mean(0), dim=0) for c in range(3)]
    d = torch.tensor([[float((normed[i] - centres[c]).norm()) for c in range(3)] for i in range(8)])
    p = (-d / d.var()).softmax(dim=1)
    entropy = -(p * p.log()).sum(dim=1)
    assert entropy_credible(old, labels, 4).tolist() == (entropy <= math.log(3) / 2).tolist()  # class 3 empty
