"""FCT and FastFill losses against hand-computed values (math module) and torch's own losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from compat_fct.losses import (
    fastfill_loss,
    fct_loss,
    label_smoothing_ce_per_sample,
    similarity_per_sample,
    uncertainty_weighted,
)

PRED = torch.tensor([[1.0, 3.0], [1.0, 0.0]])
TARGET = torch.tensor([[0.0, 1.0], [1.0, 1.0]])


def test_similarity_per_sample_by_hand():
    # sample 0: diffs (1, 2); sample 1: diffs (0, -1) and cos((1,0),(1,1)) = 1/sqrt 2
    assert similarity_per_sample(PRED, TARGET, "mse").tolist() == [2.5, 0.5]
    assert similarity_per_sample(PRED, TARGET, "l1").tolist() == [1.5, 0.5]
    cos0 = (0 * 1 + 3 * 1) / (math.sqrt(10) * 1)
    expected = [1 - cos0, 1 - 1 / math.sqrt(2)]
    assert similarity_per_sample(PRED, TARGET, "cosine").tolist() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="similarity"):
        similarity_per_sample(PRED, TARGET, "l3")


def test_fct_loss_is_torch_mse_loss():
    terms = fct_loss(PRED, TARGET)
    assert set(terms) == {"total", "similarity"}
    assert terms["total"].item() == pytest.approx(1.5)  # (2.5 + 0.5) / 2
    assert terms["total"].item() == pytest.approx(torch.nn.MSELoss()(PRED, TARGET).item())


def test_label_smoothing_cross_entropy_by_hand_and_against_torch():
    logits = torch.log(torch.tensor([[1.0, 2.0, 7.0]]))  # p = (0.1, 0.2, 0.7)
    nll = -math.log(0.7)
    mean_neg_log = -(math.log(0.1) + math.log(0.2) + math.log(0.7)) / 3
    value = label_smoothing_ce_per_sample(logits, torch.tensor([2]), 0.1).item()
    assert value == pytest.approx(0.9 * nll + 0.1 * mean_neg_log, abs=1e-6)
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 3, 1, 1, 2])
    ours = label_smoothing_ce_per_sample(logits, targets, 0.2)
    assert torch.allclose(ours, F.cross_entropy(logits, targets, label_smoothing=0.2, reduction="none"), atol=1e-6)


def test_uncertainty_weighting_by_hand():
    value = uncertainty_weighted(torch.tensor([2.0, 8.0]), torch.tensor([0.0, math.log(4.0)]), 0.5).item()
    # 1/2 e^0 2 + 0 = 1 and 1/2 (1/4) 8 + 0.5 ln 4 = 1 + ln 2
    assert value == pytest.approx((1.0 + 1.0 + math.log(2.0)) / 2, abs=1e-6)


def test_uncertainty_is_minimised_at_the_log_of_the_loss():
    loss, weight = 3.0, 0.5
    sigma = torch.tensor([math.log(loss / (2 * weight))], requires_grad=True)
    uncertainty_weighted(torch.tensor([loss]), sigma, weight).backward()
    assert abs(sigma.grad.item()) < 1e-6
    for other in (sigma.item() - 0.3, sigma.item() + 0.3):
        assert uncertainty_weighted(torch.tensor([loss]), torch.tensor([other]), weight) > \
            uncertainty_weighted(torch.tensor([loss]), sigma.detach(), weight)


def test_fastfill_loss_by_hand():
    pred, target = torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2)  # mse 0.5
    logits = torch.zeros(1, 2)  # uniform over two classes: CE = ln 2 for any smoothing
    terms = fastfill_loss(pred, target, logits, torch.tensor([0]), torch.tensor([1.0]), similarity_weight=2.0,
                          discriminative_weight=3.0, uncertainty_weight=0.25, smoothing=0.1)
    per_sample = 2.0 * 0.5 + 3.0 * math.log(2.0)
    assert terms["total"].item() == pytest.approx(0.5 * math.exp(-1.0) * per_sample + 0.25 * 1.0, abs=1e-6)
    assert terms["similarity"].item() == pytest.approx(0.5)
    assert terms["discriminative"].item() == pytest.approx(math.log(2.0), abs=1e-6)
    assert terms["sigma"].item() == pytest.approx(1.0)


def test_fastfill_without_uncertainty_or_discriminative_term():
    pred, target = torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.zeros(2, 2)
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])  # p(class 0) = 1/4 and 1/2
    terms = fastfill_loss(pred, target, logits, torch.tensor([0, 0]), None, smoothing=0.0)
    assert terms["total"].item() == pytest.approx((0.5 + math.log(4.0) + 0.0 + math.log(2.0)) / 2, abs=1e-6)
    assert "sigma" not in terms
    only_sim = fastfill_loss(pred, target, None, torch.tensor([0, 0]), None, discriminative_weight=0.0)
    assert set(only_sim) == {"total", "similarity"}
    assert only_sim["total"].item() == pytest.approx(fct_loss(pred, target)["total"].item())


def test_registered_loss_factories_compute_the_same_terms():
    from compat_fct.losses import fastfill_loss_factory, fct_loss_factory

    assert fct_loss_factory("l1")(prediction=PRED, target=TARGET)["total"].item() == pytest.approx(1.0)
    loss = fastfill_loss_factory(smoothing=0.0)
    terms = loss(prediction=PRED, target=TARGET, logits=torch.zeros(2, 3), labels=torch.tensor([0, 1]),
                 sigma=torch.zeros(2))
    assert terms["total"].item() == pytest.approx(0.5 * (1.5 + math.log(3.0)), abs=1e-6)
