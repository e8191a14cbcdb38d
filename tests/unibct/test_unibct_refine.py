"""The structural prototype refinement against a direct per-sample computation (the paper's Eq. 9-10 with an
explicit inverse), the column-normalised variant's identity with the plain class mean, the batched and the
iterative (memory-bounded) solvers against each other, and lonely samples."""

import pytest
import torch
import torch.nn.functional as F
from compat_core.old_space import class_means
from compat_unibct.refine import affinity_matrix, refined_prototypes


def direct(new: torch.Tensor, old: torch.Tensor, lam: float, tau: float, affinity: str) -> torch.Tensor:
    """P = (1 - lam)(I - lam S)^-1 by an explicit inverse, every sample's refined feature, then their mean."""
    x, o = F.normalize(new.double(), dim=1), F.normalize(old.double(), dim=1)
    logits = x @ x.T / tau
    logits.fill_diagonal_(float("-inf"))
    s = torch.softmax(logits, dim=1 if affinity == "row" else 0)
    p = (1 - lam) * torch.linalg.inv(torch.eye(len(x), dtype=x.dtype) - lam * s)
    return (p @ o).mean(0)


def data(seed=0, sizes=(7, 12, 3)):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    return torch.randn(len(labels), 5, generator=gen), torch.randn(len(labels), 4, generator=gen), labels


@pytest.mark.parametrize("affinity", ["row", "column"])
def test_prototypes_match_the_per_sample_computation(affinity):
    new, old, labels = data()
    got = refined_prototypes(new, old, labels, 3, lam=0.9, tau=0.5, affinity=affinity)
    for c in range(3):
        members = labels == c
        expected = direct(new[members], old[members], 0.9, 0.5, affinity)
        assert torch.allclose(got[c].double(), expected, atol=1e-5), (c, got[c], expected)


def test_column_normalisation_gives_back_the_plain_class_mean():
    """The original's softmax over dim 0 makes S column-stochastic: 1^T P = 1^T, so the mean of the refined
    features is the plain mean of the normalised old features, whatever the new model."""
    new, old, labels = data(seed=1)
    means, _ = class_means(old, labels, 3)
    assert torch.allclose(refined_prototypes(new, old, labels, 3, affinity="column", tau=0.05), means, atol=1e-5)
    assert not torch.allclose(refined_prototypes(new, old, labels, 3, affinity="row", tau=0.05), means, atol=1e-3)


@pytest.mark.parametrize("affinity", ["row", "column"])
def test_the_iterative_solver_of_large_classes_agrees_with_the_batched_one(affinity):
    new, old, labels = data(seed=2, sizes=(300, 40))
    batched = refined_prototypes(new, old, labels, 2, tau=0.2, affinity=affinity, memory_mb=512)
    # 300^2 x 4 bytes x 3 > 1 MiB: class 0 is solved block by block
    bounded = refined_prototypes(new, old, labels, 2, tau=0.2, affinity=affinity, memory_mb=1)
    assert torch.allclose(batched, bounded, atol=1e-5)


def test_a_class_of_one_image_keeps_its_old_feature_and_an_empty_class_is_zero():
    new, old, labels = data(sizes=(1, 5))
    got = refined_prototypes(new, old, labels, 3)
    assert torch.allclose(got[0], F.normalize(old[0], dim=0), atol=1e-6)
    assert torch.count_nonzero(got[2]) == 0


def test_affinity_rows_are_stochastic_without_the_diagonal():
    x = F.normalize(torch.randn(6, 3), dim=1)
    s = affinity_matrix(x, 0.05, "row")
    assert torch.allclose(s.sum(1), torch.ones(6)) and torch.count_nonzero(torch.diagonal(s)) == 0
