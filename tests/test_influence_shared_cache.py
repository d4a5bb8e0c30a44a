"""The logits cached by the Hessian operator at θ are shared with the ranking and the surrogate.

The sharing may skip passes over X, never change a result: every quantity computed with the
cache (a solver built at the same θ on the same X) equals the one computed without it, and a
solver built at another θ or on another feature tensor is not used.
"""
import pytest
import torch

from amlib.influence import (InverseHVP, LogisticModel, attack_coefficients, direction_logits,
                             fit_logistic, per_sample_grad_dot, query_gradient, residuals_at,
                             surrogate_gradient, surrogate_objective)

torch.set_num_threads(1)


def problem(C, bias, seed=0, n=300, d=12):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (n + 80,), generator=g)
    shift = 0.7 * torch.nn.functional.one_hot(y, d).to(torch.float64)
    X = torch.randn(n + 80, d, generator=g, dtype=torch.float64) + shift
    fit = fit_logistic(X[:n], y[:n], n_classes=C, bias=bias, l2=0.01, max_iter=30, warn=False)
    theta = fit.theta + 0.05 * torch.randn(fit.theta.shape, generator=g, dtype=torch.float64)
    return fit.model, theta, X[:n], y[:n], X[n:], y[n:]


@pytest.mark.parametrize("C", [2, 4], ids=["binary", "multiclass"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_cached_logits_give_the_same_ranking_and_surrogate(C, bias):
    model, theta, X, y, Xt, yt = problem(C, bias)
    solver = InverseHVP(model, theta, X, method="cg", damping=0.01, tol=1e-12,
                        precondition="kfac")
    op = solver.operator
    assert op.cached_at(theta, X) and op.cached_at(theta.clone().requires_grad_(True), X)
    assert not op.cached_at(theta + 1e-3, X) and not op.cached_at(theta, X.clone())
    torch.testing.assert_close(op.logits, model.logits(theta, X), rtol=0, atol=0)
    torch.testing.assert_close(residuals_at(model, theta, X, y, solver),
                               model.residuals(theta, X, y), rtol=0, atol=0)

    s_a = solver.solve(query_gradient(model, theta, Xt, yt)).solution
    values = per_sample_grad_dot(model, theta, X, y, s_a, solver=solver)
    torch.testing.assert_close(values, per_sample_grad_dot(model, theta, X, y, s_a),
                               rtol=0, atol=0)

    c = attack_coefficients(values, int(values.argsort()[len(values) // 2]), 1, "higher_ranked")
    shared = surrogate_gradient(model, theta, X, y, Xt, yt, c, s_a=s_a, solver=solver)
    fresh = surrogate_gradient(model, theta, X, y, Xt, yt, c, s_a=s_a, method="cg",
                               damping=0.01, tol=1e-12)
    torch.testing.assert_close(shared.s_b, fresh.s_b, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(shared.grad, fresh.grad, rtol=1e-9, atol=1e-12)
    assert shared.value == pytest.approx(fresh.value, rel=1e-10, abs=1e-12)
    assert not op.logits.requires_grad and op.cached_at(theta, X)   # the cache is untouched

    # the chain rule through the logits equals autograd through θ of the surrogate itself
    param = theta.clone().requires_grad_(True)
    S = surrogate_objective(model, param, X, y, Xt, yt, c, s_a, shared.s_b, damping=0.01)
    (reference,) = torch.autograd.grad(S, param)
    torch.testing.assert_close(shared.grad, reference, rtol=1e-10, atol=1e-12)
    assert shared.value == pytest.approx(float(S.detach()), rel=1e-12, abs=1e-14)


def test_a_solver_at_another_theta_is_not_used():
    model, theta, X, y, Xt, yt = problem(4, True)
    elsewhere = InverseHVP(model, theta + 0.1, X, method="cg", damping=0.01, tol=1e-12)
    s = torch.randn(model.n_params, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(per_sample_grad_dot(model, theta, X, y, s, solver=elsewhere),
                               per_sample_grad_dot(model, theta, X, y, s), rtol=0, atol=0)


def test_direction_logits_kept_by_the_residual_check_equal_fresh_ones():
    model, theta, X, y, Xt, yt = problem(4, True)
    solver = InverseHVP(model, theta, X, method="cg", damping=0.01, tol=1e-12)
    G = query_gradient(model, theta, Xt, yt)
    s = solver.solve(torch.stack([G, -G])).solution          # the residual check keeps X·s_j
    other = torch.randn(model.n_params, dtype=torch.float64)
    V = torch.stack([s[1], other, s[0]])
    assert solver.operator.n_kept == 2
    torch.testing.assert_close(solver.direction_logits(V, X), direction_logits(model, X, V),
                               rtol=1e-12, atol=1e-12)
