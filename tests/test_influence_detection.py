"""Detecting manipulated models: the Newton-decrement stationarity test, its calibration and ROC,
and the audit with the real test query (amlib.influence.detection)."""
import numpy as np
import pytest
import torch
from influence_data import gaussian_classes

from amlib.influence import fit_logistic, honest_score_fn, influence_values, scale_model
from amlib.influence.attacks import run_targeted_attack
from amlib.influence.detection import (audit_with_real_query, calibrate_threshold, detection_roc,
                                       honest_models, model_for, stationarity_statistic)

torch.set_num_threads(1)
L2 = 0.01


@pytest.fixture(scope="module")
def problem():
    X, y, Xt, yt = gaussian_classes(120, 6, 3, 0, 60, 1.0)
    fit = fit_logistic(X, y, l2=L2)
    return fit.model, fit.theta, X, y, Xt, yt


@pytest.fixture(scope="module")
def honest(problem):
    model, theta, X, y, _, _ = problem
    models = honest_models(X, y, L2, 20, seed=0, adam_iters=600)
    return models, np.array([stationarity_statistic(X, y, m.theta, L2) for m in models])


def _brute_force_decrement(model, theta, X, y):
    """gᵀH⁻¹g with g and H from autograd on the objective (independent of the closed forms)."""
    f = lambda t: model.objective(t, X, y)  # noqa: E731
    g = torch.autograd.functional.jacobian(f, theta)
    H = torch.autograd.functional.hessian(f, theta)
    return float(g @ torch.linalg.solve(H, g))


@pytest.mark.parametrize("C", [2, 3])
def test_newton_decrement_matches_dense_autograd_and_cg(C):
    X, y, _, _ = gaussian_classes(60, 4, C, C, 10, 1.0)
    fit = fit_logistic(X, y, l2=L2)
    gen = torch.Generator().manual_seed(0)
    theta = fit.theta + 0.3 * torch.randn(fit.theta.shape, generator=gen, dtype=torch.float64)
    exact = stationarity_statistic(X, y, theta, L2, method="exact")
    brute = _brute_force_decrement(fit.model, theta, X, y)
    assert exact == pytest.approx(brute, rel=1e-9)
    assert stationarity_statistic(X, y, theta, L2, method="cg") == pytest.approx(brute, rel=1e-7)
    # numpy arrays and float32 θ give the same number (computed in float64)
    assert stationarity_statistic(X.numpy(), y.numpy(), theta.float(), L2) == pytest.approx(
        stationarity_statistic(X, y, theta.float().double(), L2), rel=1e-12)


def test_decrement_predicts_the_excess_objective(problem):
    """Near θ*, λ²/2 ≈ R(θ′) − R(θ*) (the Newton model of R), to second order in the step."""
    model, theta, X, y, _, _ = problem
    gen = torch.Generator().manual_seed(3)
    direction = torch.randn(theta.shape, generator=gen, dtype=torch.float64)
    for size in (1e-2, 1e-3):
        moved = theta + size * direction / direction.norm()
        excess = float(model.objective(moved, X, y) - model.objective(theta, X, y))
        half = 0.5 * stationarity_statistic(X, y, moved, L2)
        assert half == pytest.approx(excess, rel=30 * size)


def test_statistic_is_invariant_to_feature_rescaling(problem):
    """A reparameterisation (features ×A, weights ×A⁻¹) leaves λ² unchanged, unlike ‖g‖."""
    model, theta, X, y, _, _ = problem
    moved = theta + 0.05
    scale = torch.tensor([10.0, 0.1, 3.0, 1.0, 0.5, 2.0], dtype=torch.float64)
    W = model.weights(moved).clone()
    W[:, :-1] /= scale
    # the penalty must follow the reparameterisation too: compare without L2
    base = stationarity_statistic(X, y, moved, 0.0)
    rescaled = stationarity_statistic(X * scale, y, W.reshape(-1), 0.0)
    assert rescaled == pytest.approx(base, rel=1e-8)
    plain = model_for(X, moved, 0.0)
    g_base = float(plain.gradient(moved, X, y).norm())
    g_resc = float(plain.gradient(W.reshape(-1), X * scale, y).norm())
    assert abs(g_resc / g_base - 1) > 0.5


def test_honest_fits_pass_and_manipulated_models_are_caught(problem, honest):
    model, theta, X, y, Xt, yt = problem
    models, stats = honest
    assert {m.optimiser for m in models} == {"lbfgs", "newton", "adam"}
    assert stationarity_statistic(X, y, theta, L2) < 1e-20        # the Newton optimum
    threshold = calibrate_threshold(stats, fpr=0.05)
    assert threshold < 1e-3
    # a targeted attack (Eq. 4) at ε = 0.1 and random points on the ε-sphere
    attacked = run_targeted_attack(model, theta, X, y, Xt, yt, 5, k=3, eps=0.1, lr=0.05,
                                   steps=25)
    assert float((attacked.theta - theta).norm()) > 0.05 * float(theta.norm())
    gen = torch.Generator().manual_seed(1)
    radius = 0.1 * float(theta.norm())
    sphere = []
    for _ in range(10):
        d = torch.randn(theta.shape, generator=gen, dtype=torch.float64)
        sphere.append(stationarity_statistic(X, y, theta + radius * d / d.norm(), L2))
    attacked_stats = np.array([stationarity_statistic(X, y, attacked.theta, L2), *sphere])
    assert (attacked_stats > threshold).all()
    roc = detection_roc(stats, attacked_stats)
    assert roc["tpr_at_5pct"] == 1.0 and roc["auc"] == 1.0


def test_paper_sgd_recipe_is_far_from_stationary(problem):
    """The paper's SGD recipe (lr 1e-3, 100 epochs) stops far from θ*: were it counted as honest,
    the threshold would have to admit every ε ≤ 0.1 manipulation above."""
    model, theta, X, y, _, _ = problem
    sgd = honest_models(X, y, L2, 1, seed=0, optimisers=("sgd",))[0]
    radius = 0.1 * float(theta.norm())
    d = torch.ones_like(theta)
    on_sphere = stationarity_statistic(X, y, theta + radius * d / d.norm(), L2)
    assert stationarity_statistic(X, y, sgd.theta, L2) > on_sphere


def test_conformal_threshold_controls_false_positives():
    rng = np.random.default_rng(0)
    flagged = []
    for _ in range(2000):
        sample = rng.exponential(size=40)
        flagged.append(rng.exponential() > calibrate_threshold(sample, fpr=0.05))
    # exact level: P(flag) = 1 − ⌈0.95·41⌉/41 = 2/41 ≈ 0.049; 2000 draws, 4 s.e. ≈ 0.019
    assert abs(np.mean(flagged) - 2 / 41) < 0.02
    with pytest.raises(ValueError, match="at least 19"):
        calibrate_threshold(np.arange(10.0), fpr=0.05)
    with pytest.raises(ValueError, match="fpr"):
        calibrate_threshold(np.arange(30.0), fpr=0.0)


def test_roc_agrees_with_sklearn():
    from sklearn.metrics import roc_auc_score, roc_curve

    rng = np.random.default_rng(1)
    h = np.round(rng.normal(0, 1, 60), 1)      # rounding makes ties
    a = np.round(rng.normal(1.5, 1, 40), 1)
    roc = detection_roc(h, a)
    labels = np.r_[np.zeros(60), np.ones(40)]
    scores = np.r_[h, a]
    assert roc["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    assert roc["tpr_at_5pct"] == pytest.approx(tpr[fpr <= 0.05].max())
    assert roc["fpr"][0] == 0 and roc["tpr"][0] == 0 and roc["fpr"][-1] == 1 and roc["tpr"][-1] == 1
    flagged = (h > roc["threshold_at_5pct"]).mean()
    assert flagged <= 0.05 and (a > roc["threshold_at_5pct"]).mean() == roc["tpr_at_5pct"]


def test_scaling_attack_without_l2_on_separable_data_is_invisible():
    """No L2 + separable data: no finite optimum, so s·θ with s > 1 looks *more* stationary."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(80, 3, generator=gen, dtype=torch.float64)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()
    fit = fit_logistic(X, y, l2=0.0, method="lbfgs", tol=1e-4, warn=False)
    base = stationarity_statistic(X, y, fit.theta, 0.0)
    assert stationarity_statistic(X, y, scale_model(fit.theta, 2.0), 0.0) < base
    assert stationarity_statistic(X, y, scale_model(fit.theta, 0.3), 0.0) > 10 * base
    # with L2 the optimum is unique and scaling either way is caught
    fit2 = fit_logistic(X, y, l2=L2)
    for s in (0.5, 2.0):
        assert stationarity_statistic(X, y, scale_model(fit2.theta, s), L2) > 1e-3


def test_audit_with_the_real_query(problem):
    model, theta, X, y, Xt, yt = problem
    attacked = run_targeted_attack(model, theta, X, y, Xt, yt, 5, k=3, eps=0.1, lr=0.05,
                                   steps=5)
    # honest scores of a manipulated θ′ (the paper's attack) are linear: the audit passes
    report = audit_with_real_query(honest_score_fn(model, attacked.theta, X, y), model,
                                   attacked.theta, Xt, yt)
    assert report.passed and report.n_checks == 1 + len(yt) + 3
    # a calculator that answers audit queries from θ* but the real test query from θ′ fails
    honest_fn = honest_score_fn(model, theta, X, y)
    real_values = influence_values(model, attacked.theta, X, y, Xt, yt,
                                   check_stationary=False).values
    from amlib.influence import test_gradient
    g_test = test_gradient(model, theta, Xt, yt)

    def two_faced(Q):
        out = honest_fn(Q)
        hit = torch.isclose(Q, g_test[None], rtol=0, atol=1e-12).all(dim=1)
        out[hit] = real_values.to(out)
        return out

    caught = audit_with_real_query(two_faced, model, theta, Xt, yt)
    assert not caught.passed and caught.rel_errors[0] > 1e-3 and caught.rel_errors[1:].max() < 1e-8


def test_bad_input_is_refused(problem):
    model, theta, X, y, _, _ = problem
    with pytest.raises(ValueError, match="bias"):
        stationarity_statistic(X, y, theta[:-1], L2)
    with pytest.raises(ValueError, match="n_classes"):
        model_for(X, theta, L2, n_classes=4)
    with pytest.raises(ValueError, match="kind"):
        stationarity_statistic(X, y, theta, L2, kind="hessian")
    with pytest.raises(ValueError, match="optimisers"):
        honest_models(X, y, L2, 2, optimisers=("rmsprop",))
