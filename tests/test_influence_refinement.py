"""influence_values(..., rtol=...): float32 CG refined with float64 residuals, to a requested
accuracy, checked against the float64 exact (Cholesky) solution for condition numbers 10..1e5."""
import pytest
import torch

from amlib.influence import (LogisticModel, dense_hessian, fit_logistic, influence_values,
                             values_and_ranks)

torch.set_num_threads(1)


def conditioned_problem(kappa: float, C: int, n: int = 400, d: int = 20, seed: int = 0,
                        depth: float = 3.0):
    """A fitted logistic regression whose Hessian H + l2·I has condition number ≈ kappa.

    Features with scales from 1 to 10^-depth make the data Hessian nearly singular; l2 = λ_max/kappa
    then sets the condition number. Returns the model, θ*, the data and the measured condition
    number (dense eigenvalues)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n + 100, d, generator=g, dtype=torch.float64) * torch.logspace(0, -depth, d,
                                                                                 dtype=torch.float64)
    W = torch.randn(C, d, generator=g, dtype=torch.float64)
    logits = X @ W.T
    if C == 2:
        y = (torch.rand(n + 100, generator=g, dtype=torch.float64)
             < torch.sigmoid(logits[:, 0])).long()
    else:
        y = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=g)[:, 0]

    def eigenvalues(fit):
        H = dense_hessian(fit.model, fit.theta, X[:n])
        H.diagonal().add_(fit.model.l2)
        return torch.linalg.eigvalsh(H)

    rough = fit_logistic(X[:n], y[:n], n_classes=C, l2=1e-6)
    fit = fit_logistic(X[:n], y[:n], n_classes=C, l2=float(eigenvalues(rough).max()) / kappa)
    ev = eigenvalues(fit)
    return fit.model, fit.theta, X[:n], y[:n], X[n:], y[n:], float(ev.max() / ev.min())


def relative_error(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("kappa", [10, 1e3, 1e5], ids=["kappa=10", "kappa=1e3", "kappa=1e5"])
@pytest.mark.parametrize("C", [2, 4], ids=["binary", "multiclass"])
def test_values_within_rtol_of_the_exact_solution(kappa, C):
    model, theta, X, y, Xt, yt, measured = conditioned_problem(kappa, C)
    assert kappa / 2 < measured < 2 * kappa
    exact = influence_values(model, theta, X, y, Xt, yt, method="exact")
    for rtol in (1e-3, 1e-8):
        result = influence_values(model, theta, X, y, Xt, yt, rtol=rtol)
        info = result.ihvp_info
        s_error = relative_error(result.s_test, exact.s_test)
        assert info.extra["converged"] and info.extra["error_bound"] <= rtol
        assert s_error <= info.extra["error_bound"]          # the bound holds
        assert relative_error(result.values, exact.values) <= rtol
        # float32 iterations where rtol allows them, float64 CG below FLOAT32_MIN_RTOL
        assert info.extra["precision"] == ("float32" if rtol >= 1e-5 else "float64")
        assert info.extra["rounds"] >= 1
        # the reported residual is the true float64 residual of the returned solution
        H = dense_hessian(model, theta, X)
        H.diagonal().add_(model.l2)
        G = result.test_grad
        true = float((G - H @ result.s_test).norm() / G.norm())
        assert info.relative_residual == pytest.approx(true, rel=1e-3, abs=1e-15)


def test_float32_features_give_float64_accurate_values():
    """Features stored in float32: the residuals, the solution and the values are float64."""
    model, theta, X, y, Xt, yt, _ = conditioned_problem(1e3, 3)
    X32, Xt32, theta32 = X.float(), Xt.float(), theta.float()
    result = values_and_ranks(model, theta32, X32, y, Xt32, yt, rtol=1e-8)
    # the same θ, data and query gradient, in float64, solved exactly
    exact = values_and_ranks(model, theta32.double(), X32.double(), y,
                             query_grad=result.test_grad.double(), method="exact")
    assert result.values.dtype == torch.float64
    assert relative_error(result.values, exact.values) <= 1e-8
    assert torch.equal(result.ranks(), exact.ranks())


def test_rtol_needs_a_positive_shift_and_cg():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(50, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (50,), generator=g)
    fit = fit_logistic(X, y, n_classes=3)                # l2 = 0: H is singular
    with pytest.raises(ValueError, match="l2 \\+ damping > 0"):
        influence_values(fit.model, fit.theta, X, y, X, y, rtol=1e-6)
    ok = influence_values(fit.model, fit.theta, X, y, X, y, rtol=1e-6, damping=1e-3)
    assert ok.ihvp_info.extra["converged"]
    # a zero right-hand side beside a real one: solved exactly, with a zero bound
    solver = ok.solver
    zero = solver.solve(torch.stack([torch.zeros(fit.model.n_params, dtype=torch.float64),
                                     ok.test_grad]))
    assert torch.equal(zero.solution[0], torch.zeros(fit.model.n_params, dtype=torch.float64))
    assert zero.extra["converged"] and zero.extra["error_bound"] <= 1e-6
    with pytest.raises(ValueError, match="method='cg'"):
        influence_values(fit.model, fit.theta, X, y, X, y, rtol=1e-6, damping=1e-3,
                         method="exact")
    with pytest.raises(ValueError, match="rtol must lie"):
        influence_values(LogisticModel(3, 3, l2=0.1), fit.theta, X, y, X, y, rtol=2.0,
                         check_stationary=False)


def test_float64_rounds_take_over_where_float32_stalls():
    """At condition number ~1e12 float32 cannot resolve the system (κ·6e-8 ≫ 1): the refinement
    switches its inner solves to float64 and still meets rtol (the exact reference itself is
    only accurate to about κ·1e-16 ≈ 1e-4 in the worst case, so rtol is 1e-6 here)."""
    model, theta, X, y, Xt, yt, measured = conditioned_problem(1e12, 2, d=40, depth=9)
    assert measured > 1e11
    exact = influence_values(model, theta, X, y, Xt, yt, method="exact")
    result = influence_values(model, theta, X, y, Xt, yt, rtol=1e-6)
    extra = result.ihvp_info.extra
    assert extra["precision"] == "float64" and extra["converged"]
    assert relative_error(result.s_test, exact.s_test) <= 1e-6
    assert relative_error(result.values, exact.values) <= 1e-6


def test_float64_rows_match_a_float64_copy():
    """Float64Rows' products equal those of X.double() (block sums reorder the float64 sums)."""
    from amlib.influence.hessian import Float64Rows
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(1000, 7, generator=gen).float()
    rows, X64 = Float64Rows(X, chunk=96), X.double()
    M, A, a = (torch.randn(7, 3, generator=gen, dtype=torch.float64),
               torch.randn(5, 1000, generator=gen, dtype=torch.float64),
               torch.randn(1000, generator=gen, dtype=torch.float64))
    assert rows.dtype == torch.float64 and rows.shape == X.shape and len(rows) == 1000
    torch.testing.assert_close(rows @ M, X64 @ M, rtol=1e-14, atol=1e-13)
    torch.testing.assert_close(rows @ M[:, 0], X64 @ M[:, 0], rtol=1e-14, atol=1e-13)
    torch.testing.assert_close(A @ rows, A @ X64, rtol=1e-13, atol=1e-12)
    torch.testing.assert_close(rows.T @ a, X64.T @ a, rtol=1e-13, atol=1e-12)
    torch.testing.assert_close(rows[10:20], X64[10:20], rtol=0, atol=0)
    with pytest.raises(ValueError, match="chunk"):
        Float64Rows(X, chunk=0)


def test_refined_solver_holds_no_float64_copy_of_float32_features():
    """The refined solver on float32 features gives the float64 operator's answer (same
    precision of the residual) without a float64 copy of X."""
    from amlib.influence.hessian import Float64Rows
    from amlib.influence.refinement import RefinedCGSolver
    gen = torch.Generator().manual_seed(1)
    n, d, K = 600, 12, 4
    X = torch.randn(n, d, generator=gen).float()
    y = torch.randint(0, K, (n,), generator=gen)
    fit = fit_logistic(X.double(), y, l2=1e-2)
    v = torch.randn(fit.model.n_params, generator=gen, dtype=torch.float64)
    exact = torch.linalg.solve(dense_hessian(fit.model, fit.theta, X.double())
                               + 1e-2 * torch.eye(fit.model.n_params, dtype=torch.float64), v)
    solver = RefinedCGSolver(fit.model, fit.theta, X, rtol=1e-4)   # float32 iterations
    assert solver.precision == "float32"
    assert isinstance(solver.operator.X, Float64Rows) and solver.features is X
    assert float((solver.solve(v).solution - exact).norm() / exact.norm()) <= 1e-4
    # float64 CG runs every product in float64: it converts the features once instead
    solver = RefinedCGSolver(fit.model, fit.theta, X, rtol=1e-9)
    assert solver.precision == "float64" and solver.operator.X.dtype == torch.float64
    assert isinstance(solver.operator.X, torch.Tensor)
    assert float((solver.solve(v).solution - exact).norm() / exact.norm()) <= 1e-9
