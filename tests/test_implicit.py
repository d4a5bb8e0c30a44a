"""The implicit hypergradient (eq. 23, Algorithm 2) against central finite differences."""
import numpy as np
import pytest
import torch

from amlib.am.glm import add_intercept, irls
from amlib.am.implicit import glm_argmin
from amlib.am.missingness import NeuralMechanism, Standardizer, build_design


def _problem(family, n=150, seed=0):
    rng = np.random.default_rng(seed)
    X = torch.tensor(rng.normal(size=(n, 3)))
    eta = 0.2 + X @ torch.tensor([0.6, -0.4, 0.3], dtype=torch.float64)
    y = (eta + torch.tensor(rng.normal(size=n)) if family == "gaussian"
         else torch.bernoulli(torch.sigmoid(eta), generator=torch.Generator().manual_seed(seed)))
    return X, y


@pytest.mark.parametrize("family", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("proxy", ["cca", "mean", "regression"])
def test_hypergradient_matches_finite_differences(proxy, family):
    X, y = _problem(family)
    Z = torch.cat([X, y[:, None]], 1)
    torch.manual_seed(0)
    mech = NeuralMechanism(4, 2, 6, Standardizer(Z)).double()
    params = list(mech.parameters())
    target = torch.tensor([0.3, -0.2, 0.1, 0.4], dtype=torch.float64)

    def loss():
        wd = build_design(proxy, X, [0, 2], mech(Z))
        theta = glm_argmin(wd.design, wd.weights, y, family, tol=1e-15)
        return ((theta - target) ** 2).sum() + torch.sin(theta).sum()

    grads = torch.autograd.grad(loss(), params)
    gen = torch.Generator().manual_seed(1)
    direction = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
    analytic = sum((g * v).sum() for g, v in zip(grads, direction))
    eps = 1e-5
    with torch.no_grad():
        for p, v in zip(params, direction):
            p.add_(eps * v)
        plus = loss()
        for p, v in zip(params, direction):
            p.sub_(2 * eps * v)
        minus = loss()
        for p, v in zip(params, direction):
            p.add_(eps * v)
    numeric = (plus - minus) / (2 * eps)
    rel = abs(float(analytic - numeric)) / abs(float(numeric))
    assert rel < 1e-4, f"{proxy}/{family}: relative error {rel:.2e}"


def test_gradcheck_on_weights_and_design():
    X, y = _problem("bernoulli", n=30)
    design = add_intercept(X).unsqueeze(0).repeat(2, 1, 1).requires_grad_(True)
    weights = torch.rand(2, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    weights = (weights + 0.5).requires_grad_(True)
    fn = lambda D, w: glm_argmin(D, w, y, "bernoulli", l2=0.01, tol=1e-15)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (design, weights), eps=1e-6, atol=1e-7)


def test_forward_equals_irls_and_lower_l2_validated():
    X, y = _problem("gaussian")
    D = add_intercept(X)
    w = torch.ones(len(y), dtype=torch.float64)
    torch.testing.assert_close(glm_argmin(D, w, y, "gaussian"), irls(D, y, "gaussian", w).theta)
    with pytest.raises(ValueError, match=">= 0"):
        glm_argmin(D, w, y, "gaussian", l2=-0.1)
