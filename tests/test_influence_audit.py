"""amlib.influence audit (App. A.0.1) and the impossibility construction (Theorem 1)."""
import numpy as np
import pytest
import torch

from amlib.influence import (audit_influence_calculator, fit_logistic, honest_score_fn,
                             influence_values, max_rank_search, one_hot_construction,
                             per_sample_gradients, ranks)
from amlib.influence.attacks import run_targeted_attack
from amlib.influence.examples import gaussian_classes

torch.set_num_threads(1)


def make_data(n=80, d=3, C=3, seed=0, n_test=60, sep=1.5):
    return gaussian_classes(n, d, C, seed, n_test, sep)


# ----- auditing --------------------------------------------------------------------------------
@pytest.mark.parametrize("basis", ["identity", "random"])
def test_honest_exact_scores_pass(logistic_problem, basis):
    model, theta, X, y, _, _ = logistic_problem
    report = audit_influence_calculator(honest_score_fn(model, theta, X, y), model.n_params,
                                        basis=basis, seed=1)
    assert report.passed and report.max_rel_error < 1e-10
    assert report.rank == model.n_params and report.implied_map.shape == (model.n_params, len(y))


def test_honest_iterative_solvers_pass(logistic_problem):
    model, theta, X, y, _, _ = logistic_problem
    cg = honest_score_fn(model, theta, X, y, method="cg", tol=1e-13)
    assert audit_influence_calculator(cg, model.n_params, rtol=1e-7).passed
    # LiSSA with a fixed seed uses the same batches for every query: exactly linear
    lissa = honest_score_fn(model, theta, X, y, method="lissa", lissa_scale=10.0,
                            lissa_samples=32 * 200, lissa_batch=32)
    assert audit_influence_calculator(lissa, model.n_params, rtol=1e-9).passed


def test_real_test_points_as_queries(logistic_problem):
    model, theta, X, y, Xt, yt = logistic_problem
    Q = per_sample_gradients(model, theta, Xt, yt)          # 60 test points ≥ p
    honest = honest_score_fn(model, theta, X, y)
    # multiclass test gradients sum to zero over classes: they span p − (d + 1) dimensions
    span = model.n_params - (0 if model.binary else model.row_size)
    report = audit_influence_calculator(honest, model.n_params, queries=Q[:40],
                                        check_queries=Q[40:], subspace=not model.binary)
    assert report.passed and report.n_queries == 40 and report.n_checks == 20
    assert report.rank == span
    if not model.binary:
        with pytest.raises(ValueError, match="span of the queries"):
            audit_influence_calculator(honest, model.n_params, queries=Q[:40], subspace=True)


def test_fabricated_scores_are_flagged(logistic_problem):
    model, theta, X, y, _, _ = logistic_problem
    honest = honest_score_fn(model, theta, X, y)
    n, target = len(y), 7

    def desired_ranking(Q):            # ignore the query: the ranking the calculator wants
        scores = torch.linspace(1, 0, n, dtype=torch.float64)
        scores[[0, target]] = scores[[target, 0]]
        return scores.expand(Q.shape[0], n)

    def promote_target(Q):             # honest scores, then lift the target to the top
        S = honest(Q).clone()
        S[:, target] = S.max(dim=1).values + 1.0
        return S

    def noisy(Q):
        S = honest(Q)
        return S + 1e-3 * S.abs().mean() * torch.randn(S.shape, dtype=S.dtype,
                                                       generator=torch.Generator().manual_seed(0))

    for fake in (desired_ranking, promote_target, noisy):
        report = audit_influence_calculator(fake, model.n_params)
        assert not report.passed, fake.__name__
        assert report.max_rel_error > 1e-4


def test_a_manipulated_model_passes_the_audit(logistic_problem):
    """The audit checks linearity only: honest scores of another model θ' pass (the paper's
    threat model manipulates the model for exactly this reason)."""
    model, theta, X, y, _, _ = logistic_problem
    other = honest_score_fn(model, 0.5 * theta, X, y)
    assert audit_influence_calculator(other, model.n_params).passed


def test_audit_rejects_bad_queries(logistic_problem):
    model, theta, X, y, Xt, yt = logistic_problem
    honest = honest_score_fn(model, theta, X, y)
    Q = per_sample_gradients(model, theta, Xt, yt)
    if not model.binary:   # multiclass gradients live in the range of H: rank < p
        with pytest.raises(ValueError, match="span only"):
            audit_influence_calculator(honest, model.n_params, queries=Q)
    with pytest.raises(ValueError, match="span only"):
        audit_influence_calculator(honest, model.n_params, queries=Q[:1])
    with pytest.raises(ValueError, match="one row of scores per query"):
        audit_influence_calculator(lambda q: honest(q)[:1], model.n_params)
    with pytest.raises(ValueError, match="unknown basis"):
        audit_influence_calculator(honest, model.n_params, basis="sobol")


# ----- Theorem 1 -------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["orthogonal", "opposite_label"])
@pytest.mark.parametrize("y_test", [0, 1])
def test_construction_values_follow_the_closed_form(variant, y_test):
    k, d, l2 = 2, 4, 1e-3
    X, y, Xt, yt, target = one_hot_construction(d, k, variant=variant, y_test=y_test)
    from amlib.influence import LogisticModel
    model = LogisticModel(d, 2, bias=False, l2=l2)
    gen = torch.Generator().manual_seed(0)
    n = len(y)
    n1 = int((X[:, 0] == 1).sum())
    for _ in range(10):
        theta = 3 * torch.randn(d, generator=gen, dtype=torch.float64)
        v = influence_values(model, theta, X, y, Xt, yt, method="exact",
                             check_stationary=False).values
        s = torch.sigmoid(theta[0])
        h1 = n1 / n * s * (1 - s) + l2
        assert torch.allclose(v[:k], ((s - y_test) ** 2 / h1).expand(k), rtol=1e-10)
        if variant == "orthogonal":
            assert v[target] == 0
        else:
            assert torch.isclose(v[target], -s * (1 - s) / h1, rtol=1e-10)
        assert int(ranks(v)[target]) >= k


@pytest.mark.parametrize("variant,k", [("orthogonal", 1), ("opposite_label", 1),
                                       ("opposite_label", 3)])
def test_target_never_reaches_the_top_under_random_parameters(variant, k):
    X, y, Xt, yt, target = one_hot_construction(4, k, variant=variant)
    df = max_rank_search(X, y, Xt, yt, target, k=k, n_draws=60, scales=(0.3, 3.0, 30.0))
    assert len(df) == 180
    assert df["target_rank"].min() >= k
    assert (df.loc[~df.saturated, "margin"] > 0).all()
    assert df["top_index"].isin(range(k)).any()


def test_control_without_the_construction_reaches_the_top():
    X, y, Xt, yt, target = one_hot_construction(4, 1, variant="orthogonal")
    Xt2 = torch.cat([Xt, X[target:target + 1]])          # a test point on the target's coordinate
    yt2 = torch.cat([yt, torch.tensor([1])])
    df = max_rank_search(X, y, Xt2, yt2, target, n_draws=60, scales=(3.0,))
    assert df["target_rank"].min() == 0


def test_the_attack_cannot_promote_the_target():
    X, y, Xt, yt, target = one_hot_construction(4, 1, variant="opposite_label")
    fit = fit_logistic(X, y, bias=False, l2=1e-3)
    res = run_targeted_attack(fit.model, fit.theta, X, y, Xt, yt, target, k=1, eps=10.0,
                              lr=0.5, steps=60, n_inits=2, method="exact")
    assert not res.success and min(res.history["rank"]) >= 1
    assert np.isfinite(res.history["objective"]).all()
