"""Every compat-bct loss pinned against hand-computed values and straightforward loop implementations."""

import math

import pytest
import torch
import torch.nn.functional as F
from compat_bct.losses import (
    influence_loss,
    l2_compat_loss,
    lwf_influence_loss,
    supcon_new_to_old,
    triplet_new_to_old,
)


def test_influence_loss_is_ce_of_old_logits():
    terms = influence_loss(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([2]))
    expected = math.log(math.e + math.e**2 + math.e**3) - 3.0
    assert terms["influence"].item() == pytest.approx(expected, abs=1e-6)
    assert terms["total"] is terms["influence"]


def test_lwf_influence_uses_old_softmax_as_soft_targets():
    new_logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax = [1/4, 3/4]
    old_logits = torch.tensor([[0.0, 0.0]])  # p = [1/2, 1/2]
    terms = lwf_influence_loss(new_logits, old_logits)
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert terms["influence"].item() == pytest.approx(expected, abs=1e-6)


def test_lwf_influence_sends_no_gradient_to_targets():
    new_logits = torch.randn(3, 4, requires_grad=True)
    old_logits = torch.randn(3, 4, requires_grad=True)
    lwf_influence_loss(new_logits, old_logits)["total"].backward()
    assert new_logits.grad is not None and old_logits.grad is None


def test_l2_norm_form_with_hinge_threshold():
    new = torch.tensor([[3.0, 4.0], [1.0, 0.0]])  # n = [.6, .8] and [1, 0]
    old = torch.tensor([[1.0, 0.0], [2.0, 0.0]])  # n = [1, 0] and [1, 0]
    # sample 0: ||[.4, -.8]|| = sqrt(.8); sample 1: 0
    assert l2_compat_loss(new, old)["l2"].item() == pytest.approx(math.sqrt(0.8) / 2, abs=1e-5)
    assert l2_compat_loss(new, old, threshold=0.2)["l2"].item() == pytest.approx((math.sqrt(0.8) - 0.2) / 2, abs=1e-5)
    assert l2_compat_loss(new, old, threshold=1.0)["l2"].item() == 0.0


def test_l2_squared_form_equals_mse_of_normalised_features():
    new = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    old = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    assert l2_compat_loss(new, old, form="squared")["l2"].item() == pytest.approx((0.16 + 0.64) / 2 / 2, abs=1e-6)
    torch.manual_seed(0)
    a, b = torch.randn(5, 7), torch.randn(5, 7)
    reference = torch.nn.MSELoss()(F.normalize(a, dim=1), F.normalize(b, dim=1))
    assert l2_compat_loss(a, b, form="squared")["l2"].item() == pytest.approx(reference.item(), abs=1e-6)


def test_l2_unknown_form_is_rejected():
    with pytest.raises(ValueError):
        l2_compat_loss(torch.ones(1, 2), torch.ones(1, 2), form="cube")


def test_triplet_hand_computed():
    new = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    old = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # each image's old embedding equals the other's new one
    labels = torch.tensor([0, 1])
    # anchor 0: d(positive) = sqrt(2), hardest negative o_1 = [1, 0] at distance 0
    assert triplet_new_to_old(new, old, labels)["triplet"].item() == pytest.approx(math.sqrt(2) + 1.0, abs=1e-5)
    assert triplet_new_to_old(new, old, labels, margin=0.5)["triplet"].item() == pytest.approx(math.sqrt(2) + 0.5, abs=1e-5)
    assert triplet_new_to_old(new, new, labels)["triplet"].item() == pytest.approx(0.0, abs=1e-6)


def _triplet_loop(new, old, labels, margin, normalize_new):
    losses = []
    anchors = F.normalize(new, dim=1) if normalize_new else new
    old = F.normalize(old, dim=1)
    for i in range(len(labels)):
        negatives = [torch.dist(anchors[i], old[j]).item() for j in range(len(labels)) if labels[j] != labels[i]]
        if negatives:
            losses.append(max(0.0, torch.dist(anchors[i], old[i]).item() - min(negatives) + margin))
    return sum(losses) / len(losses) if losses else 0.0


@pytest.mark.parametrize("normalize_new", [True, False])
def test_triplet_matches_a_loop_implementation(normalize_new):
    torch.manual_seed(1)
    new, old = torch.randn(9, 5), torch.randn(9, 5)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 0])
    got = triplet_new_to_old(new, old, labels, margin=0.3, normalize_new=normalize_new)["triplet"].item()
    assert got == pytest.approx(_triplet_loop(new, old, labels, 0.3, normalize_new), abs=1e-5)


def test_triplet_without_negatives_is_zero_and_differentiable():
    new = torch.randn(3, 4, requires_grad=True)
    loss = triplet_new_to_old(new, torch.randn(3, 4), torch.tensor([1, 1, 1]))["total"]
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(new.grad).all()


def test_supcon_hand_computed():
    new = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    # s_ii = 1, s_ij = 0 (tau = 1): -log(e / (e + 1)) for each anchor
    expected = -math.log(math.e / (math.e + 1))
    assert supcon_new_to_old(new, new, labels, temperature=1.0)["contrastive"].item() == pytest.approx(expected, abs=1e-6)
    # tau = 0.5: s_ii = 2
    expected = -math.log(math.e**2 / (math.e**2 + 1))
    assert supcon_new_to_old(new, new, labels, temperature=0.5)["contrastive"].item() == pytest.approx(expected, abs=1e-6)


def _supcon_loop(new, old, labels, tau):
    f, o = F.normalize(new, dim=1), F.normalize(old, dim=1)
    total = 0.0
    for i in range(len(labels)):
        negatives = sum(math.exp(f[i].dot(o[k]).item() / tau) for k in range(len(labels)) if labels[k] != labels[i])
        per = []
        for j in range(len(labels)):
            if labels[j] == labels[i]:
                pos = math.exp(f[i].dot(o[j]).item() / tau)
                per.append(-math.log(pos / (pos + negatives)))
        total += sum(per) / len(per)
    return total / len(labels)


def test_supcon_matches_a_loop_implementation():
    torch.manual_seed(2)
    new, old = torch.randn(8, 6), torch.randn(8, 6)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3, 3])
    got = supcon_new_to_old(new, old, labels, temperature=0.5)["contrastive"].item()
    assert got == pytest.approx(_supcon_loop(new, old, labels, 0.5), rel=1e-5)


def test_supcon_single_class_batch_is_zero():
    loss = supcon_new_to_old(torch.randn(4, 3), torch.randn(4, 3), torch.zeros(4, dtype=torch.long))["total"]
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_registered_losses_resolve():
    import compat_bct.plugin
    from compat_core.plugins import PluginHost, PluginInfo

    host = PluginHost()
    host.add_plugin(compat_bct.plugin, PluginInfo("bct", "compat-bct", "test", "compat_bct.plugin"))
    for name, fn in [("bct_influence", influence_loss), ("l2_compat", l2_compat_loss),
                     ("triplet_new_to_old", triplet_new_to_old), ("supcon_new_to_old", supcon_new_to_old),
                     ("bct_lwf_influence", lwf_influence_loss)]:
        assert host.losses.lookup(name).get("factory")() is fn


def test_plugin_module_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, compat_bct.plugin, compat_bct.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
