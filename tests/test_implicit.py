"""The implicit hypergradient (eq. 23, Algorithm 2) against central finite differences."""
import numpy as np
import pytest
import torch

from amlib.am.glm import add_intercept, irls
from amlib.am.implicit import directional_check, glm_argmin
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

    analytic, numeric = directional_check(loss, params, seed=1)
    rel = abs(analytic - numeric) / abs(numeric)
    assert rel < 1e-4, f"{proxy}/{family}: relative error {rel:.2e}"


def test_directional_check_on_a_known_gradient():
    """On ℓ(a, b) = Σ a³ + ⟨a, b⟩ the check returns ⟨(3a² + b, a), v⟩ for its own direction v,
    central differences agree to O(ε²), and the parameters come back unchanged."""
    a = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.5, 0.25, -0.5], dtype=torch.float64, requires_grad=True)
    before = (a.detach().clone(), b.detach().clone())
    analytic, numeric = directional_check(lambda: (a ** 3).sum() + (a * b).sum(), [a, b], seed=4)
    gen = torch.Generator().manual_seed(4)
    va, vb = (torch.randn(3, generator=gen, dtype=torch.float64) for _ in range(2))
    with torch.no_grad():
        expected = float(((3 * a ** 2 + b) * va).sum() + (a * vb).sum())
    assert analytic == pytest.approx(expected, rel=1e-12)
    assert numeric == pytest.approx(expected, rel=1e-8)
    torch.testing.assert_close(a.detach(), before[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(b.detach(), before[1], rtol=0, atol=1e-12)


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
