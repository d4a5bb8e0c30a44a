"""amlib.influence surrogate (Alg. 1) and attacks (Eqs. 4-5, the baseline), float64, small."""
import numpy as np
import pytest
import torch

from amlib.influence import (attack_coefficients, dense_objective_and_gradient, fit_logistic,
                             influence_values, naive_objective, project_to_ball, ranks,
                             surrogate_gradient, surrogate_objective)
from amlib.influence.attacks import (TargetedInfluenceAttack, loss_reweighing_baseline,
                                     run_targeted_attack)
from amlib.influence.examples import gaussian_classes

torch.set_num_threads(1)


def make_data(n=100, d=5, C=3, seed=1, n_test=40, sep=1.0):
    return gaussian_classes(n, d, C, seed, n_test, sep)


@pytest.fixture(scope="module")
def fitted():
    X, y, Xt, yt = make_data()
    fit = fit_logistic(X, y, l2=0.01)
    values = influence_values(fit.model, fit.theta, X, y, Xt, yt, method="exact").values
    return fit.model, fit.theta, X, y, Xt, yt, values


def index_of_rank(values, rank):
    return int((ranks(values) == rank).nonzero()[0, 0])


# ----- linearisation -------------------------------------------------------------------------
def test_attack_coefficients_for_the_three_objectives():
    v = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    assert attack_coefficients(v, 3, 1, "max_target").tolist() == [0, 0, 0, -1, 0]
    assert attack_coefficients(v, 3, 2, "top_k").tolist() == [0.5, 0.5, 0, -1, 0]
    hr = attack_coefficients(v, 3, 1, "higher_ranked")
    assert torch.allclose(hr, torch.tensor([1 / 3, 1 / 3, 1 / 3, -1, 0], dtype=torch.float64))
    assert attack_coefficients(v, 0, 1, "higher_ranked").tolist() == [-1, 0, 0, 0, 0]
    multi = attack_coefficients(v, [3, 4], 1, "higher_ranked")   # Eq. 5: summed
    assert torch.allclose(multi, hr + attack_coefficients(v, 4, 1, "higher_ranked"))


def test_bad_targets_and_k():
    v = torch.arange(5.0)
    with pytest.raises(IndexError, match="out of range"):
        attack_coefficients(v, 5, 1)
    with pytest.raises(IndexError, match="out of range"):
        attack_coefficients(v, -1, 1)
    with pytest.raises(ValueError, match="k >= n"):
        attack_coefficients(v, 1, 5)
    with pytest.raises(ValueError, match="unknown objective"):
        attack_coefficients(v, 1, 1, "min_everything")


# ----- the backward-friendly gradient ----------------------------------------------------------
@pytest.mark.parametrize("C,damping,objective", [(2, 0.0, "higher_ranked"), (3, 0.0, "top_k"),
                                                 (3, 0.1, "higher_ranked"),
                                                 (4, 0.0, "max_target")])
def test_surrogate_matches_backprop_through_unrolled_cg(C, damping, objective):
    X, y, Xt, yt = make_data(n=60, d=3, C=C, seed=C)
    fit = fit_logistic(X, y, l2=0.05)
    model = fit.model
    theta = fit.theta + 0.1 * torch.randn(model.n_params, dtype=torch.float64,
                                          generator=torch.Generator().manual_seed(0))
    inf = influence_values(model, theta, X, y, Xt, yt, method="exact", damping=damping,
                           check_stationary=False)
    c = attack_coefficients(inf.values, index_of_rank(inf.values, 30), 3, objective)
    out = surrogate_gradient(model, theta, X, y, Xt, yt, c, method="cg", damping=damping,
                             tol=1e-14)
    param = theta.clone().requires_grad_(True)
    ref = naive_objective(model, param, X, y, Xt, yt, c, cg_iters=500, damping=damping)
    (ref_grad,) = torch.autograd.grad(ref, param)
    assert abs(out.value - float(ref.detach())) <= 1e-5 * abs(float(ref.detach()))
    assert abs(out.value - float(c @ inf.values)) <= 1e-8 * abs(out.value)
    assert float((out.grad - ref_grad).norm() / ref_grad.norm()) < 1e-5
    # the dense reference: autograd's Hessian, a dense solve, autograd through everything
    dense_value, dense_grad = dense_objective_and_gradient(model, theta, X, y, Xt, yt, c,
                                                           damping=damping)
    assert abs(out.value - dense_value) <= 1e-9 * abs(dense_value)
    assert float((out.grad - dense_grad).norm() / dense_grad.norm()) < 1e-9
    value, grad = out                                  # unpacks as (value, grad)
    assert grad is out.grad


def test_surrogate_gradient_matches_finite_differences(fitted):
    model, theta, X, y, Xt, yt, values = fitted
    c = attack_coefficients(values, index_of_rank(values, 50), 1)

    def F(t):
        v = influence_values(model, t, X, y, Xt, yt, method="exact", check_stationary=False)
        return float(c @ v.values)

    out = surrogate_gradient(model, theta, X, y, Xt, yt, c, method="exact")
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        u = torch.randn(model.n_params, dtype=torch.float64, generator=g)
        h = 1e-5
        fd = (F(theta + h * u) - F(theta - h * u)) / (2 * h)
        assert abs(fd - float(out.grad @ u)) < 1e-6 * max(1.0, abs(fd))


def test_joint_solve_equals_given_s_a(fitted):
    model, theta, X, y, Xt, yt, values = fitted
    c = attack_coefficients(values, index_of_rank(values, 70), 1)
    inf = influence_values(model, theta, X, y, Xt, yt, method="exact")
    given = surrogate_gradient(model, theta, X, y, Xt, yt, c, s_a=inf.s_test, method="exact")
    joint = surrogate_gradient(model, theta, X, y, Xt, yt, c, method="exact")
    assert torch.allclose(given.grad, joint.grad, rtol=1e-10, atol=1e-12)
    assert torch.allclose(joint.s_a, inf.s_test, rtol=1e-10)
    S = surrogate_objective(model, theta, X, y, Xt, yt, c, joint.s_a, joint.s_b)
    assert float(S) == pytest.approx(joint.value, rel=1e-12)


# ----- projection and the attack -------------------------------------------------------------
def test_project_to_ball():
    center = torch.tensor([1.0, 1.0], dtype=torch.float64)
    inside = torch.tensor([1.5, 1.0], dtype=torch.float64)
    assert torch.equal(project_to_ball(inside, center, 1.0), inside)
    out = project_to_ball(torch.tensor([4.0, 5.0], dtype=torch.float64), center, 1.0)
    assert float((out - center).norm()) == pytest.approx(1.0)
    assert torch.allclose((out - center) / 1.0, torch.tensor([0.6, 0.8], dtype=torch.float64))


def test_single_target_attack_reaches_the_top(fitted):
    model, theta, X, y, Xt, yt, values = fitted
    target = index_of_rank(values, 80)
    res = run_targeted_attack(model, theta, X, y, Xt, yt, target, k=1, eps=0.5, lr=0.05,
                              steps=100, method="cg", seed=0)
    assert res.initial_rank == 80
    assert res.success and res.final_rank == 0
    hist = res.history
    assert hist["rank"].iloc[0] == 80 and hist["rank"].iloc[-1] == 0
    assert res.steps < 100                               # stopped early
    assert (hist["distance_ratio"] <= 0.5 + 1e-12).all()
    assert res.accuracy == pytest.approx(hist["accuracy"].iloc[-1])
    assert res.accuracy_drop == pytest.approx(res.honest_accuracy - res.accuracy)
    # the same seed gives the same run
    again = run_targeted_attack(model, theta, X, y, Xt, yt, target, k=1, eps=0.5, lr=0.05,
                                steps=100, method="cg", seed=0)
    assert torch.equal(again.theta, res.theta)


def test_every_iterate_stays_in_the_ball_and_lr_drops(fitted):
    model, theta, X, y, Xt, yt, values = fitted
    target = index_of_rank(values, 50)
    attack = TargetedInfluenceAttack(model, theta, X, y, Xt, yt, target, k=1, eps=0.05, lr=0.5,
                                     steps=60, lr_drop_step=50, method="exact",
                                     early_stop=False)
    attack.fit()
    hist = attack.history_frame()
    assert len(hist) == 61                                   # 60 steps + the final θ
    assert (hist["distance_ratio"] <= 0.05 * (1 + 1e-9)).all()
    assert hist["distance_ratio"].max() == pytest.approx(0.05)   # the constraint is active
    assert hist["lr"].iloc[49] == pytest.approx(0.5) and hist["lr"].iloc[50] == pytest.approx(0.05)
    ratio = float((attack.theta.detach() - theta).norm() / theta.norm())
    assert ratio <= 0.05 * (1 + 1e-9)


def test_multi_target_and_random_initialisations(fitted):
    model, theta, X, y, Xt, yt, values = fitted
    targets = [index_of_rank(values, r) for r in (60, 90, 99)]
    res = run_targeted_attack(model, theta, X, y, Xt, yt, targets, k=3, eps=0.5, lr=0.05,
                              steps=40, n_inits=3, method="cg", seed=0)
    assert len(res.runs) == 3 and list(res.runs["start"]) == ["honest", "random", "random"]
    assert res.initial_rank == [60, 90, 99]
    assert res.success_rate == pytest.approx(np.mean([r < 3 for r in res.final_ranks]))
    assert res.success_rate >= 1 / 3                         # some targets make it
    best = res.runs["success_rate"].max()
    assert res.runs.loc[res.init_index, "success_rate"] == best
    assert res.history["success_rate"].iloc[0] == 0.0


def test_attack_rejects_bad_inputs(fitted):
    model, theta, X, y, Xt, yt, values = fitted
    with pytest.raises(IndexError, match="out of range"):
        run_targeted_attack(model, theta, X, y, Xt, yt, 100, steps=1)
    with pytest.raises(ValueError, match="k >= n"):
        run_targeted_attack(model, theta, X, y, Xt, yt, 3, k=100, steps=1)
    with pytest.raises(ValueError, match="unknown objective"):
        run_targeted_attack(model, theta, X, y, Xt, yt, 3, objective="maximise", steps=1)
    Xbad = X.clone()
    Xbad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        run_targeted_attack(model, theta, Xbad, y, Xt, yt, 3, steps=1)


def test_loss_reweighing_baseline(fitted):
    model, theta, X, y, Xt, yt, values = fitted
    target = index_of_rank(values, 50)
    table = loss_reweighing_baseline(model, X, y, Xt, yt, target, theta_star=theta,
                                     lambdas=(1, 10, 100, 1000), method="exact")
    assert list(table["lambda"]) == [1, 10, 100, 1000]
    assert table["target_rank"].iloc[0] == 50               # λ = 1 is the honest model
    assert table["distance_ratio"].iloc[0] == pytest.approx(0, abs=1e-8)
    assert table["fit_converged"].all()
    assert table["distance_ratio"].is_monotonic_increasing
    assert table["success"].tolist() == (table["target_rank"] < 1).tolist()
    with pytest.raises(ValueError, match="λ"):
        loss_reweighing_baseline(model, X, y, Xt, yt, target, theta_star=theta, lambdas=(0,))
