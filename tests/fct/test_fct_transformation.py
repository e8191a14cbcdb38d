"""The FCT transformation: layer sizes of the reference architecture, parameter count by hand, and a
forward pass through hand-set weights computed by hand."""

from __future__ import annotations

import pytest
import torch
from compat_fct.transformation import Transformation, TransformationSpec
from torch import nn


def test_default_sizes_are_the_reference_architecture():
    h = Transformation(TransformationSpec.from_dims(128, 128, 128))
    linear = [(m.in_features, m.out_features, m.bias is not None) for m in h.modules() if isinstance(m, nn.Linear)]
    assert linear == [
        (128, 256, False), (256, 256, False),           # old branch: d_o -> 2 d_o -> 2 d_n
        (128, 256, False), (256, 256, False),           # side branch: d_s -> 2 d_s -> 2 d_n
        (512, 2048, False), (2048, 2048, False),        # mixer hidden layers on the 4 d_n concat
        (2048, 128, True),                               # last layer: bias, no BatchNorm, no ReLU
    ]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in h.modules()) == 6
    assert isinstance(h.mixer[-1], nn.Linear) and h.uncertainty_head is None


def test_parameter_count_by_hand():
    spec = TransformationSpec.from_dims(4, 3, 2, mixer_width=5, mixer_layers=2)
    assert (spec.old_hidden, spec.side_hidden, spec.branch_dim) == (8, 6, 4)
    old = 4 * 8 + 2 * 8 + 8 * 4 + 2 * 4        # linear weights + BatchNorm weight and bias
    side = 3 * 6 + 2 * 6 + 6 * 4 + 2 * 4
    mixer = 8 * 5 + 2 * 5 + 5 * 5 + 2 * 5 + 5 * 2 + 2
    count = sum(p.numel() for p in Transformation(spec).parameters())
    assert count == old + side + mixer == 247
    spec.uncertainty = True
    assert sum(p.numel() for p in Transformation(spec).parameters()) == 247 + 2 + 1


def set_weights(h: Transformation) -> None:
    """1-wide layers with chosen weights; BatchNorm made an exact identity plus a chosen shift."""
    with torch.no_grad():
        for bn in (m for m in h.modules() if isinstance(m, nn.BatchNorm1d)):
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)  # sqrt(var + eps) = 1
            bn.weight.fill_(1.0)
            bn.bias.zero_()
        h.old_branch[0][0].weight.fill_(2.0)
        h.old_branch[0][1].bias.fill_(-1.0)
        h.old_branch[1][0].weight.fill_(1.0)
        h.side_branch[0][0].weight.fill_(-1.0)
        h.side_branch[1][0].weight.fill_(3.0)
        h.mixer[0][0].weight.copy_(torch.tensor([[1.0, 0.5]]))
        h.mixer[1].weight.fill_(2.0)
        h.mixer[1].bias.fill_(0.1)
        h.uncertainty_head.weight.fill_(0.5)
        h.uncertainty_head.bias.fill_(-1.0)


def test_forward_through_hand_set_weights():
    spec = TransformationSpec(old_dim=1, side_dim=1, new_dim=1, old_hidden=1, side_hidden=1, branch_dim=1,
                              mixer_width=1, mixer_layers=1, uncertainty=True)
    h = Transformation(spec)
    set_weights(h)
    h.eval()
    out = h(torch.tensor([[1.5], [-1.0]]), torch.tensor([[-2.0], [1.0]]))
    # sample 0: old relu(2*1.5 - 1) = 2 -> relu(2) = 2; side relu(2) = 2 -> relu(6) = 6;
    #           mixer relu(2 + 0.5*6) = 5 -> 2*5 + 0.1 = 10.1; sigma = 0.5*10.1 - 1 = 4.05
    # sample 1: old relu(-3) = 0; side relu(-1) = 0; mixer 0 -> 0.1; sigma = 0.05 - 1 = -0.95
    assert out.embedding.squeeze(1).tolist() == pytest.approx([10.1, 0.1], abs=1e-5)
    assert out.sigma.tolist() == pytest.approx([4.05, -0.95], abs=1e-5)


def test_train_mode_batchnorm_uses_batch_statistics_and_updates_running_ones():
    h = Transformation(TransformationSpec.from_dims(3, 3, 2, mixer_width=4))
    before = h.old_branch[0][1].running_mean.clone()
    h.train()
    h(torch.randn(8, 3) + 5.0, torch.randn(8, 3))
    assert not torch.equal(h.old_branch[0][1].running_mean, before)
    frozen = h.old_branch[0][1].running_mean.clone()
    h.eval()
    h(torch.randn(8, 3) + 5.0, torch.randn(8, 3))
    assert torch.equal(h.old_branch[0][1].running_mean, frozen)


def test_spec_round_trips_through_json():
    spec = TransformationSpec.from_dims(8, 5, 6, mixer_width=16, mixer_layers=3, uncertainty=True)
    assert TransformationSpec.from_json(spec.to_json()) == spec
