"""K-FAC-preconditioned CG (amlib.influence.preconditioners) and the cheap finiteness check of the features.

A preconditioner may change the number of CG iterations, never the solution: every solve is
compared with the exact (Cholesky) solution in float64.
"""
import pytest
import torch

from amlib.influence import (FeatureGram, InverseHVP, LogisticModel, as_features, fit_logistic,
                             fit_logistic_sgd, influence_values, query_gradient)

torch.set_num_threads(1)


def power_law_data(n=400, d=40, C=3, seed=0, spectrum=2.0):
    """Features with covariance eigenvalues k^(−spectrum) (ill-conditioned, like deep features)."""
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    basis = torch.arange(1, d + 1, dtype=torch.float64)[:, None] ** (-spectrum / 2) * Q
    means = torch.zeros(C, d, dtype=torch.float64)
    means[:, :5] = torch.randn(C, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (n + n // 4,), generator=g)
    X = (torch.randn(len(y), d, generator=g, dtype=torch.float64) + means[y]) @ basis
    X = (X - X[:n].mean(0)) / X[:n].std(0)
    return X[:n], y[:n], X[n:], y[n:]


@pytest.mark.parametrize("C", [2, 4], ids=["binary", "multiclass"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("l2,damping", [(0.01, 0.0), (0.0, 0.01)], ids=["l2", "damping"])
def test_kfac_cg_equals_exact(C, bias, l2, damping):
    X, y, Xt, yt = power_law_data(C=C, seed=C)
    fit = fit_logistic(X, y, n_classes=C, bias=bias, l2=l2, max_iter=30, warn=False)
    model, theta = fit.model, fit.theta
    G = query_gradient(model, theta, Xt, yt)
    V = torch.stack([G, torch.randn(model.n_params, dtype=torch.float64,
                                    generator=torch.Generator().manual_seed(1))])
    exact = InverseHVP(model, theta, X, method="exact", damping=damping).solve(V)
    kfac = InverseHVP(model, theta, X, method="cg", damping=damping, tol=1e-12,
                      precondition="kfac").solve(V)
    assert kfac.extra["precondition"] == "kfac" and kfac.relative_residual < 1e-10
    assert torch.allclose(kfac.solution, exact.solution, rtol=1e-8, atol=1e-10)


def test_kfac_needs_fewer_iterations_on_ill_conditioned_features():
    X, y, Xt, yt = power_law_data(n=600, d=60, C=5, seed=3, spectrum=2.0)
    fit = fit_logistic_sgd(X, y, n_classes=5, epochs=20)
    model, theta = fit.model, fit.theta
    G = query_gradient(model, theta, Xt, yt)
    iters = {}
    for precondition in (False, "jacobi", "kfac"):
        res = InverseHVP(model, theta, X, method="cg", damping=1e-3, tol=1e-8,
                         precondition=precondition).solve(G)
        assert res.relative_residual < 1e-7
        iters[precondition] = res.iterations
    assert iters["kfac"] <= iters[False] and iters["kfac"] < 0.5 * iters[False], iters


def test_unregularised_multiclass_kfac_matches_exact_influence():
    X, y, Xt, yt = power_law_data(n=300, d=8, C=3, seed=5, spectrum=1.0)
    fit = fit_logistic(X, y)   # singular Hessian along the softmax null space: shift = 0
    a = influence_values(fit.model, fit.theta, X, y, Xt, yt, method="exact").values
    b = influence_values(fit.model, fit.theta, X, y, Xt, yt, method="cg", tol=1e-12,
                         precondition="kfac").values
    assert torch.allclose(a, b, rtol=1e-7, atol=1e-9)


def test_kfac_with_sample_weights_and_a_shared_gram():
    X, y, Xt, yt = power_law_data(n=300, d=20, C=3, seed=6)
    w = torch.rand(len(y), dtype=torch.float64, generator=torch.Generator().manual_seed(2)) + 0.5
    model = LogisticModel(20, 3, l2=0.01)
    theta = fit_logistic(X, y, l2=0.01, sample_weight=w).theta
    G = query_gradient(model, theta, Xt, yt)
    exact = InverseHVP(model, theta, X, method="exact", sample_weight=w).solve(G)
    gram = FeatureGram.from_features(model, X, sample_weight=w)
    for g in (gram, None):   # prebuilt, or built inside from X and the weights
        res = InverseHVP(model, theta, X, method="cg", tol=1e-12, sample_weight=w,
                         precondition="kfac", gram=g).solve(G)
        assert torch.allclose(res.solution, exact.solution, rtol=1e-8, atol=1e-10)


def test_precondition_options_and_errors():
    X, y, _, _ = power_law_data(n=100, d=6, C=3, seed=7)
    fit = fit_logistic(X, y, l2=0.1)
    model, theta = fit.model, fit.theta
    assert InverseHVP(model, theta, X, precondition=True).precondition == "jacobi"
    assert InverseHVP(model, theta, X, precondition=None).precondition is None
    with pytest.raises(ValueError, match="unknown precondition"):
        InverseHVP(model, theta, X, precondition="ilu")
    other = LogisticModel(6, 3, bias=False)
    with pytest.raises(ValueError, match="FeatureGram"):
        InverseHVP(model, theta, X, precondition="kfac",
                   gram=FeatureGram.from_features(other, X))


def test_cheap_feature_check_still_rejects_nan_and_inf_and_does_not_copy():
    X = torch.randn(50, 4, dtype=torch.float64)
    assert as_features(X) is X and as_features(X, dtype=torch.float64) is X
    assert as_features(X, dtype=torch.float32).dtype == torch.float32
    for bad in (float("nan"), float("inf"), -float("inf")):
        Xb = X.clone()
        Xb[7, 2] = bad
        with pytest.raises(ValueError, match=r"non-finite.*rows \[7\]"):
            as_features(Xb)
    big = torch.full((4, 3), 3e38, dtype=torch.float32)   # finite entries, overflowing sum
    assert as_features(big) is big
    with pytest.raises(ValueError, match="2-D"):
        as_features(torch.zeros(5))
    with pytest.raises(ValueError, match="non-finite"):
        as_features([[1.0, float("nan")]])


def test_attack_chooses_its_preconditioner_by_default_uses_one_gram_and_can_turn_it_off():
    from amlib.influence.attacks import TargetedInfluenceAttack, run_targeted_attack
    X, y, Xt, yt = power_law_data(n=200, d=10, C=3, seed=8, spectrum=1.0)
    fit = fit_logistic(X, y, l2=0.01)
    common = dict(k=1, eps=0.5, lr=0.05, steps=3, early_stop=False)
    auto = TargetedInfluenceAttack(fit.model, fit.theta, X, y, Xt, yt, 5, **common)
    assert auto.solver_opts == {"precondition": "auto"}
    kfac = TargetedInfluenceAttack(fit.model, fit.theta, X, y, Xt, yt, 5, precondition="kfac",
                                   **common)
    assert kfac.solver_opts["precondition"] == "kfac"
    assert isinstance(kfac.solver_opts["gram"], FeatureGram)
    # the Gram is cached per data set: a second attack on the same X reuses it
    again = TargetedInfluenceAttack(fit.model, fit.theta, X, y, Xt, yt, 6, precondition="kfac",
                                    **common)
    assert again.solver_opts["gram"] is kfac.solver_opts["gram"]
    plain = TargetedInfluenceAttack(fit.model, fit.theta, X, y, Xt, yt, 5, precondition=False,
                                    **common)
    assert plain.solver_opts == {"precondition": False}
    kfac.fit(), plain.fit(), auto.fit()
    for other in (plain, auto):
        assert torch.allclose(kfac.theta, other.theta, rtol=1e-6, atol=1e-8)
        assert [h["rank"] for h in kfac.history] == [h["rank"] for h in other.history]
    res = run_targeted_attack(fit.model, fit.theta, X, y, Xt, yt, 5, n_inits=2, **common)
    assert res.steps == 3
