"""Weighted IRLS (Algorithm 1) against statsmodels, constrained MLE (eq. 22), KL and ATE (App. C.2)."""
import numpy as np
import pytest
import statsmodels.api as sm
import torch

from amlib.am.glm import (IRLSConvergenceError, SingularDesignError, add_intercept, ate,
                       constrained_mle, get_family, irls, kl_divergence, solve_lower_level)

SM = {"gaussian": sm.families.Gaussian, "bernoulli": sm.families.Binomial,
      "poisson": sm.families.Poisson}


def _data(family, n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    eta = 0.3 + X @ np.array([0.8, -0.5, 0.2])
    if family == "gaussian":
        y = eta + rng.normal(size=n)
    elif family == "bernoulli":
        y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    else:
        y = rng.poisson(np.exp(0.5 * eta)).astype(float)
    w = rng.uniform(0.1, 2.0, size=n)
    return add_intercept(torch.tensor(X)), torch.tensor(y), torch.tensor(w)


@pytest.mark.parametrize("family", ["gaussian", "bernoulli", "poisson"])
def test_weighted_irls_matches_statsmodels(family):
    X, y, w = _data(family)
    ours = irls(X, y, family, w, tol=1e-14).theta.numpy()
    ref = sm.GLM(y.numpy(), X.numpy(), family=SM[family](), freq_weights=w.numpy()).fit(tol=1e-14)
    np.testing.assert_allclose(ours, ref.params, atol=1e-8)


def test_pattern_stack_equals_concatenated_rows():
    X, y, w = _data("bernoulli")
    X2 = X.clone()
    X2[:, 1] = 0.0
    stacked = irls(torch.stack([X, X2]), y, "bernoulli", torch.stack([w, 2 * w]), tol=1e-14)
    ref = sm.GLM(np.concatenate([y, y]), np.concatenate([X, X2]), family=sm.families.Binomial(),
                 freq_weights=np.concatenate([w, 2 * w])).fit(tol=1e-14)
    np.testing.assert_allclose(stacked.theta.numpy(), ref.params, atol=1e-8)


def test_gaussian_converges_in_one_newton_step():
    X, y, w = _data("gaussian")
    result = irls(X, y, "gaussian", w)
    assert result.n_iter == 1  # a quadratic objective: one exact Newton step


def test_l2_matches_ridge_closed_form():
    X, y, w = _data("gaussian")
    l2 = 0.3
    theta = irls(X, y, "gaussian", w, l2=l2).theta
    N = X.shape[0]
    closed = torch.linalg.solve(X.T @ (w[:, None] * X) / N + l2 * torch.eye(4), X.T @ (w * y) / N)
    np.testing.assert_allclose(theta.numpy(), closed.numpy(), atol=1e-10)


def test_separable_data_raises_then_fallback_regularises():
    x = torch.linspace(-1, 1, 40, dtype=torch.float64)
    X = add_intercept(x[:, None])
    y = (x > 0).double()
    with pytest.raises(IRLSConvergenceError, match="diagnostics"):
        irls(X, y, "bernoulli", max_iter=30)
    result = solve_lower_level(X, y, "bernoulli", max_iter=30)
    assert result.l2 == pytest.approx(1e-3) and torch.isfinite(result.theta).all()


def test_singular_design_raises():
    X, y, _ = _data("gaussian")
    X = torch.cat([X, X[:, 1:2]], dim=1)
    with pytest.raises(SingularDesignError, match="collinear"):
        irls(X, y, "gaussian")


def test_bad_inputs():
    X, y, w = _data("bernoulli")
    with pytest.raises(ValueError, match="l2"):
        irls(X, y, "bernoulli", l2=-1.0)
    with pytest.raises(ValueError, match="non-negative"):
        irls(X, y, "bernoulli", -w)
    Xn = X.clone()
    Xn[0, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        irls(Xn, y, "bernoulli")
    with pytest.raises(ValueError, match="0/1"):
        irls(X, y + 0.5, "bernoulli")
    with pytest.raises(ValueError, match="unknown GLM family"):
        get_family("gamma")


def test_constrained_mle_is_the_fit_without_the_column():
    X, y, _ = _data("bernoulli")
    theta = constrained_mle(X, y, "bernoulli", zero=[2])
    assert theta[2] == 0.0
    ref = sm.GLM(y.numpy(), X.numpy()[:, [0, 1, 3]], family=sm.families.Binomial()).fit(tol=1e-14)
    np.testing.assert_allclose(theta.numpy()[[0, 1, 3]], ref.params, atol=1e-8)


def test_kl_matches_direct_formulas():
    X, _, _ = _data("bernoulli")
    a = torch.tensor([0.1, 0.5, -0.2, 0.3], dtype=torch.float64)
    b = torch.tensor([-0.3, 0.1, 0.4, 0.0], dtype=torch.float64)
    p, q = torch.sigmoid(X @ a), torch.sigmoid(X @ b)
    direct = (p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))).mean()
    assert float(kl_divergence(X, a, b, "bernoulli")) == pytest.approx(float(direct), rel=1e-10)
    gauss = ((X @ a - X @ b) ** 2 / (2 * 2.0)).mean()
    assert float(kl_divergence(X, a, b, "gaussian", 2.0)) == pytest.approx(float(gauss), rel=1e-12)
    lam_a, lam_b = torch.exp(X @ a), torch.exp(X @ b)
    pois = (lam_a * torch.log(lam_a / lam_b) - lam_a + lam_b).mean()
    assert float(kl_divergence(X, a, b, "poisson")) == pytest.approx(float(pois), rel=1e-10)
    assert float(kl_divergence(X, a, a, "bernoulli")) == pytest.approx(0.0, abs=1e-15)


def test_ate_regression_estimator():
    X, _, _ = _data("bernoulli")
    X1, X0 = X.clone(), X.clone()
    X1[:, 3], X0[:, 3] = 1.0, 0.0
    theta = torch.tensor([0.0, 0.0, 0.0, 0.7], dtype=torch.float64)
    assert float(ate(theta, X1, X0)) == pytest.approx(float(torch.sigmoid(torch.tensor(0.7)) - 0.5))
