"""Fitting synthesized rows of the old classifier: against scikit-learn, frozen rows, cosine logits."""

import pytest
import torch
import torch.nn.functional as F
from compat_bct.row_fit import fit_rows, row_accuracy
from sklearn.linear_model import LogisticRegression


def blobs(n_per_class=60, centers=((3.0, 0.0, 0.0), (0.0, 3.0, 0.0), (2.4, 0.6, 0.5)), seed=0):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.cat([torch.tensor(c) + torch.randn(n_per_class, 3, generator=gen) for c in centers])
    labels = torch.arange(len(centers)).repeat_interleave(n_per_class)
    return feats, labels


def test_all_rows_free_matches_sklearn_multinomial_logistic_regression():
    feats, labels = blobs()
    c = 0.5
    # sklearn minimises 0.5 ||W||^2 + C sum_i loss_i  ==  mean loss + ||W||^2 / (2 C N)  (bias unpenalised)
    weight_decay = 1.0 / (2 * c * len(feats))
    ref = LogisticRegression(C=c, tol=1e-12, max_iter=10_000).fit(feats.double().numpy(), labels.numpy())
    w, b = fit_rows(feats.double(), labels, torch.zeros(3, 3), torch.zeros(3), torch.ones(3, dtype=torch.bool),
                    weight_decay=weight_decay, max_iter=500)
    # softmax regression is invariant to a common shift of the biases; compare centred values
    assert torch.allclose(w, torch.as_tensor(ref.coef_, dtype=w.dtype), atol=2e-3)
    ref_b = torch.as_tensor(ref.intercept_, dtype=b.dtype)
    assert torch.allclose(b - b.mean(), ref_b - ref_b.mean(), atol=2e-3)


def test_real_rows_stay_frozen_and_the_fit_repairs_a_row_that_claims_an_old_class():
    feats, labels = blobs()
    real = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    # class 2 lies next to class 0: its mean row (norm-scaled) wins over class 0's real row on class 0
    mean_row = F.normalize(feats[labels == 2].mean(0), dim=0) * 1.5
    weight, bias = torch.cat([real, mean_row[None]]), torch.zeros(3)
    free = torch.tensor([False, False, True])
    before = row_accuracy(feats, labels, weight, bias)
    w, b = fit_rows(feats, labels, weight, bias, free)
    after = row_accuracy(feats, labels, w, b)
    assert torch.equal(w[:2], real) and torch.equal(b[:2], bias[:2])
    assert before[0] < 0.5 and after[0] > before[0] + 0.3
    assert after.mean() > before.mean()
    # the penalised objective went down from the starting rows
    def objective(w_, b_):
        return (F.cross_entropy(feats @ w_.T + b_, labels) + 1e-3 * w_[2].pow(2).sum()).item()
    assert objective(w, b) < objective(weight, bias)


def test_cosine_logits_fit_directions_only():
    feats, labels = blobs()
    weight = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # row 2 points away from class 2
    bias = torch.full((3,), 7.0)
    w, b = fit_rows(feats, labels, weight, bias, torch.tensor([False, False, True]), kind="cosine", scale=10.0)
    assert torch.equal(b, bias)  # cosine logits have no bias to fit
    before = row_accuracy(feats, labels, weight, bias, "cosine", 10.0)
    after = row_accuracy(feats, labels, w, b, "cosine", 10.0)
    assert before[2] < 0.3 and after[2] > before[2] + 0.3
    assert torch.equal(w[:2], weight[:2])


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_chunked_loss_gives_the_fit_of_the_whole_batch(kind):
    feats, labels = blobs()
    weight = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    free = torch.tensor([False, True, True])
    whole = fit_rows(feats, labels, weight, torch.zeros(3), free, kind=kind, scale=5.0)
    chunked = fit_rows(feats, labels, weight, torch.zeros(3), free, kind=kind, scale=5.0, chunk_logits=3 * 7)
    # the same optimum: summation order moves L-BFGS's path by a few 1e-4 at most
    for a, b in zip(whole, chunked, strict=True):
        assert torch.allclose(a, b, atol=2e-3)
    assert row_accuracy(feats, labels, *whole, kind, 5.0).tolist() == row_accuracy(feats, labels, *chunked, kind,
                                                                                      5.0).tolist()


def test_row_accuracy_counts_hits_per_target_row():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    acc = row_accuracy(feats, torch.tensor([0, 1, 1]), torch.eye(2), torch.zeros(2))
    assert acc.tolist() == [1.0, 0.5]
    unused = row_accuracy(feats, torch.tensor([0, 0, 0]), torch.eye(3, 2), torch.zeros(3))
    assert unused[0] == pytest.approx(2 / 3) and torch.isnan(unused[1:]).all()


def test_nothing_free_returns_the_rows_unchanged():
    feats, labels = blobs()
    weight = torch.randn(3, 3)
    w, b = fit_rows(feats, labels, weight, torch.zeros(3), torch.zeros(3, dtype=torch.bool))
    assert torch.equal(w, weight) and torch.equal(b, torch.zeros(3))
