"""The solver choices of issue 15: the cached feature Gram (a changed X is never reused), the
condition-number rule of ``precondition="auto"``, and the precision that ``rtol`` picks.

Every choice changes the work, never the answer: each solve is checked against the float64
exact (Cholesky) solution. No timings: the counts compared are iterations and Hessian products.
"""
import gc

import pytest
import torch

from amlib.influence import (KFAC_MIN_CONDITION, FeatureGram, HessianOperator, InverseHVP,
                             LogisticModel, condition_estimate, dense_hessian, fit_logistic,
                             influence_values, query_gradient)
from amlib.influence.refinement import FLOAT32_MIN_RTOL

from test_influence_kfac import power_law_data
from test_influence_refinement import conditioned_problem

torch.set_num_threads(1)


@pytest.fixture
def fresh_cache():
    FeatureGram.clear_cache()
    yield
    FeatureGram.clear_cache()


def _builds(fn):
    before = FeatureGram.builds
    out = fn()
    return out, FeatureGram.builds - before


def test_gram_cache_reuses_an_unchanged_x_and_rebuilds_for_a_changed_one(fresh_cache):
    X, *_ = power_law_data(n=200, d=12, C=3, seed=1)
    model = LogisticModel(12, 3)
    g1, n1 = _builds(lambda: FeatureGram.cached(model, X))
    g2, n2 = _builds(lambda: FeatureGram.cached(model, X))
    assert (n1, n2) == (1, 0) and g2 is g1
    # an in-place change through torch (the version counter), however small
    X[3, 4] += 1e-9
    g3, n3 = _builds(lambda: FeatureGram.cached(model, X))
    assert n3 == 1 and g3 is not g1
    # a change behind torch's back, through a NumPy view: the checksum
    arr = X.numpy()
    arr[7, 2] += 0.5
    g4, n4 = _builds(lambda: FeatureGram.cached(model, X))
    assert n4 == 1 and g4 is not g3
    reference = FeatureGram.from_features(model, X)
    assert torch.allclose(g4.eigenvalues, reference.eigenvalues, rtol=1e-12, atol=1e-14)
    # an equal copy is another tensor: its own Gram; other weights or layout: another Gram
    _, n5 = _builds(lambda: FeatureGram.cached(model, X.clone()))
    w = torch.rand(200, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    _, n6 = _builds(lambda: FeatureGram.cached(model, X, sample_weight=w))
    _, n7 = _builds(lambda: FeatureGram.cached(LogisticModel(12, 3, bias=False), X))
    assert (n5, n6, n7) == (1, 1, 1)


def test_gram_cache_never_matches_a_new_tensor_in_freed_memory(fresh_cache):
    model = LogisticModel(8, 3)
    X = torch.randn(100, 8, dtype=torch.float64)
    FeatureGram.cached(model, X)
    del X
    gc.collect()
    for seed in range(5):   # whatever address the allocator hands out, a new tensor rebuilds
        Y = torch.randn(100, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        g, n = _builds(lambda: FeatureGram.cached(model, Y))
        assert n == 1
        assert torch.allclose(g.eigenvalues, FeatureGram.from_features(model, Y).eigenvalues)
        del Y, g
        gc.collect()
    # a freed tensor's entry is dropped with it: no Gram is kept for data that is gone
    assert len(FeatureGram._cache) == 0


def test_kfac_solves_build_the_gram_once_per_data_set(fresh_cache):
    X, y, Xt, yt = power_law_data(n=200, d=10, C=3, seed=2)
    fit = fit_logistic(X, y, l2=0.01)
    G = query_gradient(fit.model, fit.theta, Xt, yt)
    _, builds = _builds(lambda: [InverseHVP(fit.model, fit.theta * s, X, tol=1e-10,
                                            precondition="kfac").solve(G)
                                 for s in (1.0, 0.9, 1.1)])
    assert builds == 1


@pytest.mark.parametrize("C", [2, 4], ids=["binary", "multiclass"])
@pytest.mark.parametrize("kappa", [10, 1e3, 1e5], ids=["kappa=10", "kappa=1e3", "kappa=1e5"])
def test_condition_estimate_bounds_the_condition_number(C, kappa):
    model, theta, X, *_, measured = conditioned_problem(kappa, C)
    estimate = condition_estimate(HessianOperator(model, theta, X))
    # from above (H ⪯ I ⊗ G_c; binary: equality), short only by the 20 power iterations' error,
    # and not a loose one on these problems
    assert measured * (1 - 1e-3) <= estimate <= 3 * measured


def test_auto_uses_kfac_only_above_the_crossover():
    X, y, Xt, yt = power_law_data(n=400, d=40, C=5, seed=3, spectrum=2.0)
    fit = fit_logistic(X, y, n_classes=5, l2=1e-3)
    lam = (condition_estimate(HessianOperator(fit.model, fit.theta, X)) - 1) * 1e-3
    chosen = {}
    for kappa in (KFAC_MIN_CONDITION / 10, KFAC_MIN_CONDITION * 10):
        model = LogisticModel(40, 5, l2=lam / (kappa - 1))
        G = query_gradient(model, fit.theta, Xt, yt)
        exact = InverseHVP(model, fit.theta, X, method="exact").solve(G)
        auto = InverseHVP(model, fit.theta, X, tol=1e-12, precondition="auto").solve(G)
        assert auto.extra["condition_estimate"] == pytest.approx(kappa, rel=1e-6)
        assert torch.allclose(auto.solution, exact.solution, rtol=1e-8, atol=1e-12)
        chosen[kappa > KFAC_MIN_CONDITION] = auto.extra["precondition"]
        # the rtol path follows the same rule
        refined = influence_values(model, fit.theta, X, y, Xt, yt, rtol=1e-6,
                                   precondition="auto", check_stationary=False)
        assert refined.ihvp_info.extra["precondition"] == auto.extra["precondition"]
    assert chosen == {False: None, True: "kfac"}


def test_rtol_picks_float64_below_the_float32_threshold_and_needs_no_more_iterations():
    """At rtol 1e-8 CG runs in float64 and stops on the error bound: on a well-conditioned
    problem that takes no more iterations than the default tolerance (1e-10), and the only
    float64 product besides them is the one residual check."""
    model, theta, X, y, Xt, yt, _ = conditioned_problem(10, 4)
    exact = influence_values(model, theta, X, y, Xt, yt, method="exact")
    default = influence_values(model, theta, X, y, Xt, yt, method="cg")
    tight = influence_values(model, theta, X, y, Xt, yt, rtol=1e-8)
    info = tight.ihvp_info
    assert info.extra["precision"] == "float64" and info.extra["float32_iterations"] == 0
    assert info.iterations <= default.ihvp_info.iterations
    assert tight.solver.operator.n_matvecs == pytest.approx(info.iterations + 1)
    assert info.hvp_passes == pytest.approx(info.iterations + 1)
    assert float((tight.values - exact.values).norm() / exact.values.norm()) <= 1e-8
    for rtol in (FLOAT32_MIN_RTOL, 1e-3):
        loose = influence_values(model, theta, X, y, Xt, yt, rtol=rtol)
        extra = loose.ihvp_info.extra
        assert extra["precision"] == "float32" and extra["float64_iterations"] == 0
        # one float64 product per refinement round — its residual check — and no other
        assert loose.solver.operator.n_matvecs == pytest.approx(extra["rounds"])
        assert loose.ihvp_info.hvp_passes == pytest.approx(loose.ihvp_info.iterations
                                                           + extra["rounds"])
        assert float((loose.values - exact.values).norm() / exact.values.norm()) <= rtol
    assert extra["rounds"] == 1   # rtol 1e-3: one float32 round


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_forced_precision_meets_rtol(precision):
    model, theta, X, y, Xt, yt, _ = conditioned_problem(1e3, 3)
    exact = influence_values(model, theta, X, y, Xt, yt, method="exact")
    res = influence_values(model, theta, X, y, Xt, yt, rtol=1e-4, precision=precision)
    assert res.ihvp_info.extra["precision"] == precision
    assert float((res.values - exact.values).norm() / exact.values.norm()) <= 1e-4
    with pytest.raises(ValueError, match="unknown precision"):
        influence_values(model, theta, X, y, Xt, yt, rtol=1e-4, precision="half")


def test_dense_reference_of_the_estimate_is_the_hessian():
    """The estimate's premise, H ⪯ I_K ⊗ G_c, on one small multiclass problem."""
    model, theta, X, *_ = conditioned_problem(10, 3, n=120, d=5)
    H = dense_hessian(model, theta, X)
    P = model.probs(theta, X)
    c = (2 * P * (1 - P)).amax(dim=1)
    A = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1)
    Gc = (A * c[:, None]).T @ A / len(X)
    bound = torch.kron(torch.eye(3, dtype=X.dtype), Gc)
    assert float(torch.linalg.eigvalsh(bound - H).min()) >= -1e-12


def test_the_attack_runs_on_the_rtol_path_with_the_same_gradient_and_ranks():
    """The targeted attack's faster path: rankings and surrogate gradients from the rtol
    solver agree with the exact ones (the gradient check of Alg. 1), and the attack takes the
    same steps as with the default solver."""
    from amlib.influence import attack_coefficients, surrogate_gradient
    from amlib.influence.attacks import TargetedInfluenceAttack
    X, y, Xt, yt = power_law_data(n=200, d=10, C=3, seed=8, spectrum=1.0)
    fit = fit_logistic(X, y, l2=0.01)
    honest = influence_values(fit.model, fit.theta, X, y, Xt, yt, method="exact")
    target = int((honest.ranks() == 100).nonzero()[0, 0])
    c = attack_coefficients(honest.values, target, 1)
    exact = surrogate_gradient(fit.model, fit.theta, X, y, Xt, yt, c, method="exact")
    fast = surrogate_gradient(fit.model, fit.theta, X, y, Xt, yt, c, rtol=1e-8)
    assert float((fast.grad - exact.grad).norm() / exact.grad.norm()) < 1e-7
    common = dict(k=1, eps=0.5, lr=0.05, steps=4, early_stop=False)
    default = TargetedInfluenceAttack(fit.model, fit.theta, X, y, Xt, yt, target, **common)
    refined = TargetedInfluenceAttack(fit.model, fit.theta, X, y, Xt, yt, target,
                                      solver_opts={"rtol": 1e-8}, **common)
    default.fit(), refined.fit()
    assert [h["rank"] for h in refined.history] == [h["rank"] for h in default.history]
    assert torch.allclose(refined.theta, default.theta, rtol=1e-6, atol=1e-8)


def test_float32_features_with_a_float64_theta_are_not_copied_on_the_rtol_path():
    model, theta, X, y, Xt, yt, _ = conditioned_problem(1e3, 3)
    X32 = X.float()
    exact = influence_values(model, theta, X32.double(), y, Xt, yt, method="exact")
    for rtol in (1e-3, 1e-8):
        res = influence_values(model, theta, X32, y, Xt, yt, rtol=rtol)
        assert res.solver.features is X32 and res.values.dtype == torch.float64
        if rtol >= 1e-5:
            assert res.solver.inner.X is X32      # float32 iterations on the caller's tensor
        assert float((res.values - exact.values).norm() / exact.values.norm()) <= rtol
    many = torch.randn(6, model.n_params, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(4))   # more than are kept
    from amlib.influence import values_and_ranks
    # six solutions: more than the solver keeps direction logits for, so some values take the
    # fallback product — in float64, on the solver's own copy
    res = values_and_ranks(model, theta, X32, y, query_grad=many, rtol=1e-8)
    ref = values_and_ranks(model, theta, X32.double(), y, query_grad=many, method="exact")
    assert res.values.dtype == torch.float64
    errors = (res.s_test - ref.s_test).norm(dim=1) / ref.s_test.norm(dim=1)
    assert float(errors.max()) <= res.ihvp_info.extra["error_bound"] <= 1e-8
    value_errors = (res.values - ref.values).norm(dim=0) / ref.values.norm(dim=0)
    assert float(value_errors.max()) <= 1e-8
