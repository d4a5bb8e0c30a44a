"""amlib.influence models, Hessian-vector products, inverse-HVP solvers and influence scores.

Everything in float64 on small problems; each check compares against an independent computation
(autograd, sklearn, leave-one-out retraining).
"""
import warnings

import numpy as np
import pytest
import torch

from amlib.influence import (InverseHVP, LiSSADivergence, LogisticModel, NotStationaryWarning,
                             SingularHessianError, dense_hessian, fit_logistic, fit_logistic_sgd,
                             hvp, influence_values, inverse_hvp, leave_one_out_values,
                             per_sample_grad_dot, per_sample_gradients, query_gradient, ranks,
                             scale_theta, values_and_ranks)
from amlib.influence.examples import gaussian_classes

torch.set_num_threads(1)


def make_data(n=120, d=4, C=3, seed=0, n_test=40, sep=1.5):
    return gaussian_classes(n, d, C, seed, n_test, sep)


# ----- models and fitting ------------------------------------------------------------------
def test_model_shapes_and_layout():
    m = LogisticModel(n_features=4, n_classes=3, bias=True)
    assert m.n_params == 15 and m.n_outputs == 3 and m.row_size == 5
    theta = torch.arange(15, dtype=torch.float64)
    W, b = m.split(theta)
    assert torch.equal(b, torch.tensor([4.0, 9.0, 14.0], dtype=torch.float64))
    X = torch.eye(4, dtype=torch.float64)
    assert torch.allclose(m.logits(theta, X), X @ W.T + b)
    assert LogisticModel(4, 2, bias=False).n_params == 4


@pytest.mark.parametrize("C", [2, 3])
def test_fit_matches_sklearn(C):
    from sklearn.linear_model import LogisticRegression
    X, y, _, _ = make_data(n=150, C=C, seed=11)
    l2 = 0.02
    fit = fit_logistic(X, y, l2=l2, bias=False)
    assert fit.grad_norm < 1e-10 and fit.converged
    # sklearn minimises C·Σℓ + ½‖w‖², i.e. ours with l2 = 1/(C·n)
    sk = LogisticRegression(C=1.0 / (l2 * len(y)), fit_intercept=False, tol=1e-12,
                            max_iter=10_000).fit(X.numpy(), y.numpy())
    coef = sk.coef_.reshape(-1)
    assert np.allclose(fit.theta.numpy(), coef, atol=1e-5)


def test_newton_cg_and_lbfgs_reach_the_dense_newton_optimum():
    X, y, _, _ = make_data(n=200, d=5, C=4, seed=3)
    dense = fit_logistic(X, y, l2=0.01)
    ncg = fit_logistic(X, y, l2=0.01, dense_limit=0)        # forces Newton-CG
    lbfgs = fit_logistic(X, y, l2=0.01, method="lbfgs")
    assert lbfgs.converged and lbfgs.grad_norm <= 1e-7
    assert ncg.grad_norm < 1e-10
    assert torch.allclose(ncg.theta, dense.theta, atol=1e-8)
    assert torch.allclose(lbfgs.theta, dense.theta, atol=1e-6)


def test_unregularised_multiclass_newton_handles_the_softmax_null_space():
    X, y, _, _ = make_data(n=300, d=3, C=3, seed=5, sep=0.7)
    fit = fit_logistic(X, y)
    assert fit.grad_norm < 1e-10
    # the optimum is only defined up to adding one vector to every class row: predictions agree
    shifted = fit.theta + fit.model.weights(torch.ones(3 * 4, dtype=torch.float64))[0].repeat(3)
    assert torch.equal(fit.model.predict(fit.theta, X), fit.model.predict(shifted, X))


def test_fit_warns_when_not_stationary():
    X, y, _, _ = make_data(n=60, d=3, C=2, seed=1, sep=6.0)   # separable, no penalty
    with pytest.warns(NotStationaryWarning, match="separable"):
        res = fit_logistic(X, y, max_iter=3)
    assert not res.converged


def test_sgd_recipe_is_seeded_and_lowers_the_loss():
    X, y, _, _ = make_data(n=100, d=4, C=3, seed=2)
    a = fit_logistic_sgd(X, y, epochs=5)
    b = fit_logistic_sgd(X, y, epochs=5)
    c = fit_logistic_sgd(X, y, epochs=5, seed=7)
    assert torch.equal(a.theta, b.theta) and not torch.equal(a.theta, c.theta)
    hist = [h["train_objective"] for h in a.history]
    assert hist[-1] < hist[0]
    assert a.grad_norm > 1e-6  # the paper's recipe stops far from a stationary point


def test_bad_inputs_raise_clear_errors():
    X, y, _, _ = make_data(n=30, d=3, C=2)
    Xbad = X.clone()
    Xbad[4, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        fit_logistic(Xbad, y)
    with pytest.raises(ValueError, match="one label per row"):
        fit_logistic(X, y[:-1])
    with pytest.raises(ValueError, match="negative labels"):
        fit_logistic(X, y - 1)
    fit = fit_logistic(X, y, l2=0.1)
    with pytest.raises(ValueError, match="only 2 classes"):
        influence_values(fit.model, fit.theta, X, y + 1, X, y)
    with pytest.raises(ValueError, match="columns"):
        influence_values(fit.model, fit.theta, X[:, :2], y, X, y)
    with pytest.raises(ValueError, match="flat vector"):
        hvp(fit.model, fit.theta[:-1], X, fit.theta)
    with pytest.raises(ValueError, match="s must be a finite number > 0"):
        scale_theta(fit.theta, 0.0)


def test_scaling_keeps_predictions(logistic_problem):
    model, theta, X, y, Xt, yt = logistic_problem
    for s in (0.01, 0.3, 5.0):
        assert torch.equal(model.predict(scale_theta(theta, s), Xt), model.predict(theta, Xt))
    v1 = influence_values(model, theta, X, y, Xt, yt, method="exact").values
    v2 = influence_values(model, scale_theta(theta, 0.1), X, y, Xt, yt, method="exact",
                          check_stationary=False).values
    assert not torch.allclose(v1, v2)   # the scores do change


# ----- Hessian-vector products -------------------------------------------------------------
def test_hvp_matches_autograd_hessian(logistic_problem):
    model, theta, X, y, _, _ = logistic_problem
    H = torch.autograd.functional.hessian(lambda t: model.objective(t, X, y), theta)
    V = torch.randn(3, model.n_params, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    assert torch.allclose(hvp(model, theta, X, V), V @ H, atol=1e-12)
    assert torch.allclose(hvp(model, theta, X, V[0], damping=0.5), H @ V[0] + 0.5 * V[0],
                          atol=1e-12)
    Hd = dense_hessian(model, theta, X)
    Hd.diagonal().add_(model.l2)
    assert torch.allclose(Hd, H, atol=1e-12)


def test_hvp_without_bias_and_unregularised_multiclass():
    X, y, _, _ = make_data(n=50, d=3, C=4, seed=9)
    model = LogisticModel(3, 4, bias=False)
    theta = 0.3 * torch.randn(12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    H = torch.autograd.functional.hessian(lambda t: model.objective(t, X, y), theta)
    v = torch.randn(12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(hvp(model, theta, X, v), H @ v, atol=1e-12)


def test_per_sample_grad_dot_matches_autograd(logistic_problem):
    model, theta, X, y, _, _ = logistic_problem
    rows = []
    for i in range(len(y)):
        t = theta.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model.loss(t, X[i:i + 1], y[i:i + 1], "sum"), t)
        rows.append(g)
    G = torch.stack(rows)
    assert torch.allclose(per_sample_gradients(model, theta, X, y), G, atol=1e-13)
    S = torch.randn(2, model.n_params, dtype=torch.float64)
    assert torch.allclose(per_sample_grad_dot(model, theta, X, y, S), G @ S.T, atol=1e-12)
    assert torch.allclose(per_sample_grad_dot(model, theta, X, y, S[0]), G @ S[0], atol=1e-12)
    assert torch.allclose(query_gradient(model, theta, X, y), G.sum(0), atol=1e-12)


def test_values_and_ranks_for_points_gradients_and_several_queries(logistic_problem):
    model, theta, X, y, Xt, yt = logistic_problem
    H = torch.autograd.functional.hessian(lambda t: model.objective(t, X, y), theta)
    G_train = per_sample_gradients(model, theta, X, y)
    Q = per_sample_gradients(model, theta, Xt[:3], yt[:3])       # three single-point queries
    expected = G_train @ torch.linalg.solve(H, Q.T)               # (n, 3), dense and independent
    points = values_and_ranks(model, theta, X, y, Xt, yt, method="exact")
    G = query_gradient(model, theta, Xt, yt)
    torch.testing.assert_close(points.values, G_train @ torch.linalg.solve(H, G),
                               rtol=1e-9, atol=1e-12)
    several = values_and_ranks(model, theta, X, y, query_grad=Q, method="cg", tol=1e-13)
    torch.testing.assert_close(several.values, expected, rtol=1e-8, atol=1e-11)
    assert several.ranks().shape == (len(y), 3)
    for j in range(3):
        assert torch.equal(several.ranks()[:, j], ranks(several.values[:, j]))
    # a solver built once serves further queries at the same θ
    again = values_and_ranks(model, theta, X, y, query_grad=Q[0], solver=several.solver)
    torch.testing.assert_close(again.values, expected[:, 0], rtol=1e-8, atol=1e-11)
    with pytest.raises(ValueError, match="query points"):
        values_and_ranks(model, theta, X, y)


# ----- inverse HVPs --------------------------------------------------------------------------
def test_exact_cg_and_lissa_agree(logistic_problem):
    model, theta, X, y, Xt, yt = logistic_problem
    G = query_gradient(model, theta, Xt, yt)
    exact = inverse_hvp(model, theta, X, G, method="exact")
    Hdense = torch.autograd.functional.hessian(lambda t: model.objective(t, X, y), theta)
    assert torch.allclose(exact.solution, torch.linalg.solve(Hdense, G), rtol=1e-10, atol=1e-12)
    cg = inverse_hvp(model, theta, X, G, method="cg", tol=1e-12)
    assert cg.relative_residual < 1e-10
    assert torch.allclose(cg.solution, exact.solution, rtol=1e-8, atol=1e-10)
    # LiSSA solves (H + lissa_damping·scale·I)⁻¹ v; compare with exact at that damping
    scale, damp = 5.0, 0.01
    ref = inverse_hvp(model, theta, X, G, method="exact", damping=scale * damp).solution
    full = inverse_hvp(model, theta, X, G, method="lissa", lissa_scale=scale,
                       lissa_damping=damp, lissa_batch=len(y), lissa_samples=len(y) * 4000)
    assert full.effective_damping == pytest.approx(0.05)
    assert torch.allclose(full.solution, ref, rtol=1e-8, atol=1e-10)   # full batch: Richardson
    stoch = inverse_hvp(model, theta, X, G, method="lissa", lissa_scale=scale,
                        lissa_damping=damp, lissa_batch=32, lissa_samples=32 * 3000)
    rel = float((stoch.solution - ref).norm() / ref.norm())
    assert rel < 0.1, rel


def test_cg_warm_start_and_batched_right_hand_sides(logistic_problem):
    model, theta, X, y, Xt, yt = logistic_problem
    solver = InverseHVP(model, theta, X, method="cg", tol=1e-12)
    G = query_gradient(model, theta, Xt, yt)
    cold = solver.solve(G)
    warm = solver.solve(G, x0=cold.solution)
    assert warm.iterations == 0 and warm.relative_residual < 1e-10
    near = solver.solve(G, x0=cold.solution * (1 + 1e-4))
    assert near.iterations <= cold.iterations
    assert torch.allclose(near.solution, cold.solution, rtol=1e-9)
    both = solver.solve(torch.stack([G, 2 * G]))
    assert torch.allclose(both.solution[1], 2 * cold.solution, rtol=1e-8)


def test_unregularised_multiclass_exact_equals_cg():
    X, y, Xt, yt = make_data(n=200, d=3, C=3, seed=4, sep=0.8)
    fit = fit_logistic(X, y)        # singular Hessian along the softmax null space
    a = influence_values(fit.model, fit.theta, X, y, Xt, yt, method="exact").values
    b = influence_values(fit.model, fit.theta, X, y, Xt, yt, method="cg", tol=1e-12).values
    assert torch.allclose(a, b, rtol=1e-7, atol=1e-9)


def test_solver_errors():
    X, y, _, _ = make_data(n=40, d=3, C=2, seed=8)
    X[:, 1] = 0.0                  # a dead column: H has an exactly zero row without l2
    model = LogisticModel(3, 2)
    theta = torch.zeros(4, dtype=torch.float64)
    with pytest.raises(SingularHessianError, match="l2 > 0"):
        InverseHVP(model, theta, X, method="exact")
    damped = InverseHVP(model, theta, X, method="exact", damping=1e-3)
    assert damped.solve(theta + 1).relative_residual < 1e-10
    big = LogisticModel(200, 101)
    with pytest.raises(ValueError, match="max_exact_params"):
        InverseHVP(big, torch.zeros(big.n_params, dtype=torch.float64),
                   torch.zeros(3, 200, dtype=torch.float64), method="exact")
    with pytest.raises(ValueError, match="unknown inverse-HVP method"):
        InverseHVP(model, theta, X, method="newton")


def test_lissa_divergence_names_a_larger_scale(logistic_problem):
    model, theta, X, y, Xt, yt = logistic_problem
    G = query_gradient(model, theta, Xt, yt)
    with pytest.raises(LiSSADivergence, match=r"Try lissa_scale=\d") as err:
        inverse_hvp(model, theta, X, G, method="lissa", lissa_scale=0.05,
                    lissa_samples=120 * 200, lissa_batch=120)
    suggested = err.value.suggested_scale
    assert suggested > 0.05
    ok = inverse_hvp(model, theta, X, G, method="lissa", lissa_scale=suggested,
                     lissa_samples=120 * 300, lissa_batch=120)
    assert ok.relative_residual < 1e-3


# ----- influence scores ----------------------------------------------------------------------
def test_ranks_convention():
    r = ranks(torch.tensor([0.5, 2.0, -1.0, 2.0]))
    assert r.tolist() == [2, 0, 3, 1]   # highest value first; ties by index


def test_influence_warns_off_the_optimum(logistic_problem):
    model, theta, X, y, Xt, yt = logistic_problem
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        influence_values(model, theta, X, y, Xt, yt, method="exact")   # stationary: silent
    with pytest.warns(NotStationaryWarning, match="not a stationary point"):
        influence_values(model, theta + 0.1, X, y, Xt, yt, method="exact")


def test_influence_predicts_leave_one_out_multiclass():
    X, y, Xt, yt = make_data(n=80, d=3, C=3, seed=6, sep=1.0)
    fit = fit_logistic(X, y, l2=0.01)
    values = influence_values(fit.model, fit.theta, X, y, Xt, yt, method="exact").values.numpy()
    loo = leave_one_out_values(fit.model, X, y, Xt, yt, theta=fit.theta)
    r = np.corrcoef(values / len(y), loo)[0, 1]
    assert r > 0.95, r
    # same sign convention and scale: ΔL_i ≈ value_i / n
    slope = np.polyfit(values / len(y), loo, 1)[0]
    assert 0.7 < slope < 1.3, slope


def test_influence_predicts_leave_one_out_on_german_credit(mirror):
    from amlib.data.fairness import load_fairness
    ds = load_fairness("german")
    n = len(ds.y_train)
    # Li & Liu's l2 = 5.85 in sklearn's units (C = 1/l2 on the summed loss) is l2/n here
    fit = fit_logistic(ds.x_train, ds.y_train, l2=ds.l2_reg / n, bias=False)
    assert fit.grad_norm < 1e-10
    res = influence_values(fit.model, fit.theta, ds.x_train, ds.y_train, ds.x_val, ds.y_val,
                           method="exact")
    idx = np.random.default_rng(0).choice(n, 120, replace=False)
    loo = leave_one_out_values(fit.model, ds.x_train, ds.y_train, ds.x_val, ds.y_val,
                               theta=fit.theta, indices=idx)
    r = np.corrcoef(res.values.numpy()[idx], loo)[0, 1]
    assert r > 0.95, r
