"""The closed-form fits against independent numpy computations, and the adapter module's parametrisation."""

import numpy as np
import pytest
import torch
from compat_adapter import fits
from compat_adapter.adapter import AdapterSpec, FeatureAdapter


def data(n=200, p=6, q=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    y = x @ rng.normal(size=(p, q)) + rng.normal(size=q) + 0.1 * rng.normal(size=(n, q))
    return x, y


def t(a):
    return torch.from_numpy(a)


def test_procrustes_recovers_a_rotation_and_matches_the_svd_formula():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 5))
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    w, b = fits.procrustes(t(x), t(x @ q))
    assert np.allclose(w.numpy(), q) and not b.any()
    x, y = data(q=3)  # p != q: the semi-orthogonal W = U V^T of x^T y = U S V^T
    u, _, vt = np.linalg.svd(x.T @ y, full_matrices=False)
    w, _ = fits.procrustes(t(x), t(y))
    assert np.allclose(w.numpy(), u @ vt) and np.allclose(w.numpy().T @ w.numpy(), np.eye(3))


def test_ridge_without_penalty_is_least_squares_with_an_intercept():
    x, y = data()
    coef, *_ = np.linalg.lstsq(np.hstack([x, np.ones((len(x), 1))]), y, rcond=None)
    w, b = fits.ridge(t(x), t(y), 0.0)
    assert np.allclose(w.numpy(), coef[:-1]) and np.allclose(b.numpy(), coef[-1])


def test_ridge_penalty_matches_the_normal_equations():
    x, y = data()
    lam = 0.5
    xc, yc = x - x.mean(0), y - y.mean(0)
    expected = np.linalg.solve(xc.T @ xc / len(x) + lam * np.eye(x.shape[1]), xc.T @ yc / len(x))
    w, b = fits.ridge(t(x), t(y), lam)
    assert np.allclose(w.numpy(), expected) and np.allclose(b.numpy(), y.mean(0) - x.mean(0) @ expected)


def test_reduced_rank_has_the_rank_asked_and_is_the_ridge_map_at_full_rank():
    x, y = data(p=8, q=6)
    w_full, b_full = fits.ridge(t(x), t(y), 1e-3)
    w, b = fits.reduced_rank(t(x), t(y), 1e-3, 6)
    assert np.allclose(w.numpy(), w_full.numpy()) and np.allclose(b.numpy(), b_full.numpy())
    w2, _ = fits.reduced_rank(t(x), t(y), 1e-3, 2)
    assert np.linalg.matrix_rank(w2.numpy(), tol=1e-8) == 2
    # the best rank-2 fit of the fitted values: their projection on the top-2 right singular vectors
    fitted = (x - x.mean(0)) @ w_full.numpy()
    _, _, vt = np.linalg.svd(fitted, full_matrices=False)
    assert np.allclose((x - x.mean(0)) @ w2.numpy(), fitted @ vt[:2].T @ vt[:2])


@pytest.mark.parametrize("kind", ["affine", "low-rank", "mlp"])
def test_the_module_computes_the_loaded_map(kind):
    x, y = data(p=8, q=6)
    w, b = fits.reduced_rank(t(x), t(y), 1e-3, 3) if kind == "low-rank" else fits.ridge(t(x), t(y), 1e-3)
    adapter = FeatureAdapter(AdapterSpec(kind, 8, 6, normalize=False, rank=3 if kind == "low-rank" else None,
                                         hidden=16 if kind == "mlp" else None))
    adapter.set_map(w, b)
    with torch.no_grad():
        out = adapter(t(x).float()).double().numpy()
    assert np.allclose(out, x @ w.numpy() + b.numpy(), atol=1e-4)  # mlp: its residual starts at zero
    assert sum(p.numel() for p in adapter.parameters()) == {"affine": 8 * 6 + 6, "low-rank": 8 * 3 + 3 * 6 + 6,
                                                            "mlp": 8 * 6 + 6 + 8 * 16 + 16 + 16 * 6 + 6}[kind]
