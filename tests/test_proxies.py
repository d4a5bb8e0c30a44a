"""Each proxy's θ̃ (eqs. 5.1, 8–11, App. B) against Monte-Carlo fits of the real modeler."""
import numpy as np
import pytest
import torch

from amlib.am.glm import add_intercept, irls
from amlib.am.missingness import (build_design, sample_patterns, weighted_mean_imputation,
                               weighted_regression_coefficients)

N = 40_000


def _setup(family, seed=0):
    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 1.0]])
    X = rng.multivariate_normal(np.zeros(3), cov, size=N)
    eta = 0.2 + X @ np.array([1.0, -0.7, 0.5])
    y = (eta + rng.normal(size=N) if family == "gaussian"
         else (rng.random(N) < 1 / (1 + np.exp(-eta))).astype(float))
    X, y = torch.tensor(X), torch.tensor(y)
    hide = torch.sigmoid(-1.0 + 1.5 * X[:, 0] + 1.0 * y)        # strongly MNAR in x0 and y
    probs = torch.stack([hide, 1 - hide], dim=1)                 # pattern 0 hides x0
    return X, y, probs


def _real_fit(X, y, observed, proxy, family):
    """What the modeler does on one sampled mask (Section 3, App. B)."""
    X = X.clone()
    if proxy == "cca":
        return irls(add_intercept(X[observed]), y[observed], family, tol=1e-13).theta
    if proxy == "mean":
        X[~observed, 0] = X[observed, 0].mean()
    else:
        A = add_intercept(X[:, 1:])
        beta = torch.linalg.lstsq(A[observed], X[observed, 0:1]).solution
        X[~observed, 0] = (A[~observed] @ beta).squeeze(1)
    return irls(add_intercept(X), y, family, tol=1e-13).theta


@pytest.mark.parametrize("family", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("proxy", ["cca", "mean", "regression"])
def test_proxy_matches_monte_carlo_modeler(proxy, family):
    X, y, probs = _setup(family)
    wd = build_design(proxy, X, [0], probs)
    theta_proxy = irls(wd.design, y, family, wd.weights, tol=1e-13).theta
    patterns = sample_patterns(probs, 4, seed=1)
    real = torch.stack([_real_fit(X, y, torch.tensor(p == 1), proxy, family) for p in patterns])
    theta_full = irls(add_intercept(X), y, family, tol=1e-13).theta
    gap = (theta_proxy - real.mean(0)).abs().max()
    shift = (theta_full - real.mean(0)).abs().max()
    assert gap < 0.03, f"proxy {proxy}/{family} differs from the modeler by {gap:.4f}"
    assert shift > 5 * gap, "the mechanism must move the modeler for the check to mean anything"


def test_mean_and_regression_imputation_parameters():
    X, y, probs = _setup("gaussian")
    observed = probs[:, 1]
    mu = weighted_mean_imputation(X, [0], probs)
    assert float(mu) == pytest.approx(float((observed * X[:, 0]).sum() / observed.sum()))
    beta, A = weighted_regression_coefficients(X, [0], probs)
    ref = torch.linalg.lstsq(A * observed.sqrt()[:, None], (X[:, 0] * observed.sqrt())[:, None])
    torch.testing.assert_close(beta, ref.solution)


def test_proxy_bad_inputs():
    X, y, probs = _setup("gaussian")
    Xn = X.clone()
    Xn[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        build_design("mean", Xn, [0], probs)
    with pytest.raises(ValueError, match="every feature"):
        build_design("mean", X, [0, 1, 2], torch.full((N, 8), 1 / 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown proxy"):
        build_design("knn", X, [0], probs)
    with pytest.raises(ValueError, match="probs"):
        build_design("cca", X, [0], probs[:, :1])


def test_cca_proxy_ignores_the_overall_observation_rate():
    """Eq. 5.1 weights rows by p(1|x_i)/P̄(1): scaling every row's observation probability by the
    same factor leaves the CCA fit, hence the KL objective g, unchanged, so only the penalty
    λ·Ω sets how much the CCA attack hides (chapter 06's convergence study)."""
    X = torch.tensor(np.random.default_rng(1).normal(size=(30, 3)))
    observed = torch.tensor(np.random.default_rng(2).uniform(0.2, 0.9, size=30))
    designs = [build_design("cca", X, [0], torch.stack([1 - c * observed, c * observed], 1))
               for c in (1.0, 0.1)]
    torch.testing.assert_close(designs[0].weights, designs[1].weights)
    torch.testing.assert_close(designs[0].design, designs[1].design)
    tilted = build_design("cca", X, [0], torch.stack([1 - observed ** 2, observed ** 2], 1))
    assert not torch.allclose(tilted.weights, designs[0].weights)   # relative weights do matter
