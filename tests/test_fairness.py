"""Influence-based fair reweighing (Li & Liu 2022) and the scaling attack (amlib.influence.fairness)."""
import numpy as np
import pytest

from amlib.influence.fairness import (LI_LIU_SETTINGS, InfeasibleLPError, dp_gap, eop_gap, fit_weighted,
                            influence_on_validation, reweigh, reweighing_lp, scaling_attack)


def toy(n=80, d=5, seed=0):
    """A small logistic problem whose label and group both depend on the first feature."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    s = (x[:, 0] + rng.normal(size=n) > 0).astype(float)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ np.linspace(1, -0.5, d) + 0.8 * s)))).astype(float)
    return x, y, s


@pytest.fixture(scope="module")
def german(mirror):
    from amlib.data.fairness import load_fairness
    return load_fairness("german")


# --- the linear programme --------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lp_solution_satisfies_its_constraints(seed):
    rng = np.random.default_rng(seed)
    fair, util = rng.normal(size=300) * 0.01, rng.normal(size=300)
    fair_loss, beta, gamma = 0.2, 0.5, 0.3
    assert fair_loss < -fair[fair < 0].sum()              # the normal programme applies
    lp = reweighing_lp(fair, util, fair_loss, beta, gamma)
    x = lp.removal
    assert lp.branch == "normal"
    assert x.min() >= 0 and x.max() <= 1 and np.allclose(lp.weights, 1 - x)
    assert fair @ x <= beta * -fair_loss + 1e-8
    assert util @ x <= gamma * util[util < 0].sum() + 1e-8
    # minimal: removing less (scaling x down) breaks a constraint
    assert fair @ (0.99 * x) > beta * -fair_loss - 1e-8 or util @ (0.99 * x) > gamma * util[util < 0].sum()


def test_lp_fallback_when_the_fairness_loss_is_out_of_reach():
    rng = np.random.default_rng(3)
    fair, util = rng.normal(size=200) * 1e-3, rng.normal(size=200)
    lp = reweighing_lp(fair, util, fair_loss=5.0, beta=0.5, gamma=0.1, alpha=0.1)
    assert lp.branch == "fallback"
    assert util @ lp.removal <= 1e-8 and lp.removal.sum() <= 0.1 * 200 + 1e-8
    assert fair @ lp.removal < 0                            # it still lowers F as much as it can
    with pytest.raises(InfeasibleLPError, match="fallback"):
        reweighing_lp(fair, util, fair_loss=5.0, beta=0.5, gamma=0.1, fallback=False)


def test_lp_infeasible_without_fallback_raises():
    # every removal raises the validation loss, yet γ > 0 demands that it fall
    fair, util = -np.full(10, 0.1), np.full(10, 1.0)
    util[0] = -1e-3
    with pytest.raises(InfeasibleLPError, match="no solution"):
        reweighing_lp(fair, util, fair_loss=0.5, beta=0.5, gamma=1.0, fallback=False)
    assert reweighing_lp(fair, util, fair_loss=0.5, beta=0.5, gamma=1.0).branch == "fallback"


# --- influences against refitting -----------------------------------------------------------

@pytest.mark.parametrize("metric", ["dp", "eop"])
def test_influence_predicts_leave_one_out(metric):
    from amlib.influence.fairness import fairness_function
    x, y, s = toy()
    xv, yv, sv = toy(200, seed=1)
    l2 = 1.0
    theta = fit_weighted(x, y, l2)
    infl = influence_on_validation(theta, x, y, xv, yv, sv, l2, metric)
    f0, _ = fairness_function(theta, xv, yv, sv, metric)

    def val_loss(t):
        p = 1 / (1 + np.exp(-(xv @ t)))
        return -(yv * np.log(p) + (1 - yv) * np.log(1 - p)).sum()

    actual_fair, actual_util = [], []
    for i in range(len(y)):
        w = np.ones(len(y))
        w[i] = 0.0
        t = fit_weighted(x, y, l2, w)
        actual_fair.append(fairness_function(t, xv, yv, sv, metric)[0] - f0)
        actual_util.append(val_loss(t) - val_loss(theta))
    assert np.corrcoef(infl.fairness, actual_fair)[0, 1] > 0.9
    assert np.corrcoef(infl.utility, actual_util)[0, 1] > 0.9
    assert np.isclose(infl.fairness_loss, f0) and np.isclose(infl.utility_loss, val_loss(theta))


@pytest.mark.parametrize("scale", [1.0, 0.05])
def test_influence_engine_conversion_matches_li_and_liu_formula(scale):
    """The library's engine (mean loss, up-weighting sign) divided by n equals Li & Liu's
    removal influence g_iᵀ H_Σ⁻¹ ∇F with the summed Hessian, written out here in numpy."""
    from amlib.influence.fairness import fairness_function
    x, y, s = toy()
    xv, yv, sv = toy(200, seed=1)
    l2 = 1.0
    theta = scale * fit_weighted(x, y, l2)
    infl = influence_on_validation(theta, x, y, xv, yv, sv, l2, "dp")
    p = 1 / (1 + np.exp(-(x @ theta)))
    H_sum = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(len(theta))
    grads = (p - y)[:, None] * x
    pv = 1 / (1 + np.exp(-(xv @ theta)))
    util_grad = ((pv - yv)[:, None] * xv).sum(0)
    fair_grad = fairness_function(theta, xv, yv, sv, "dp")[1]
    expected = grads @ np.linalg.solve(H_sum, np.column_stack([util_grad, fair_grad]))
    np.testing.assert_allclose(infl.utility, expected[:, 0], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(infl.fairness, expected[:, 1], rtol=1e-10, atol=1e-14)


def test_fit_weighted_matches_sklearn():
    from sklearn.linear_model import LogisticRegression
    x, y, _ = toy()
    w = np.random.default_rng(0).random(len(y))
    ours = fit_weighted(x, y, 2.0, w)
    ref = LogisticRegression(C=0.5, fit_intercept=False, tol=1e-10, max_iter=5000)
    ref.fit(x, y, sample_weight=w)
    np.testing.assert_allclose(ours, ref.coef_[0], atol=1e-5)


# --- the scaling attack ---------------------------------------------------------------------

def test_scaling_keeps_predictions_but_changes_the_reweighing(german):
    theta = fit_weighted(german.x_train, german.y_train, german.l2_reg)
    for s in (0.01, 0.5, 3.0):
        np.testing.assert_array_equal(german.x_test @ (s * theta) > 0, german.x_test @ theta > 0)
    beta, gamma = LI_LIU_SETTINGS[("german", "dp")]
    honest = reweigh(german, "dp", beta, gamma, 1.0, theta_erm=theta)
    attacked = reweigh(german, "dp", beta, gamma, 0.05, theta_erm=theta)
    assert attacked["removed"] != pytest.approx(honest["removed"], rel=0.1)
    assert attacked["dp_gap"] > honest["dp_gap"] + 0.05
    infl_1 = influence_on_validation(theta, german.x_train, german.y_train, german.x_val,
                                     german.y_val, german.s_val, german.l2_reg)
    infl_s = influence_on_validation(0.05 * theta, german.x_train, german.y_train, german.x_val,
                                     german.y_val, german.s_val, german.l2_reg)
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    assert np.corrcoef(rank(infl_1.fairness), rank(infl_s.fairness))[0, 1] < 0.99


def test_honest_reweighing_reduces_the_dp_gap_on_german(german):
    beta, gamma = LI_LIU_SETTINGS[("german", "dp")]
    out = scaling_attack(german, "dp", beta, gamma, scales=[1.0])
    honest = out["runs"][0]
    assert honest["branch"] == "normal"
    assert honest["dp_gap"] < 0.5 * out["no_reweighing"]["dp_gap"]
    assert honest["accuracy"] >= out["no_reweighing"]["accuracy"] - 0.02


# --- bad input ------------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors(german):
    x, y, s = toy()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit_weighted(x, y, 1.0, np.full(len(y), 1.5))
    with pytest.raises(ValueError, match="one sample weight per row"):
        fit_weighted(x, y, 1.0, np.ones(3))
    with pytest.raises(ValueError, match="group column is missing"):
        dp_gap(y, None)
    with pytest.raises(ValueError, match="both sensitive groups"):
        dp_gap(y, np.ones(len(y)))
    with pytest.raises(ValueError, match="among the positives"):
        eop_gap(y, y, 1 - y)
    with pytest.raises(ValueError, match="groups must be 0/1"):
        influence_on_validation(np.zeros(5), x, y, x, y, s * 2, 1.0)
    with pytest.raises(ValueError, match="unknown metric"):
        influence_on_validation(np.zeros(5), x, y, x, y, s, 1.0, metric="eo")
    with pytest.raises(ValueError, match="same dimension"):
        influence_on_validation(np.zeros(4), x, y, x, y, s, 1.0)
    with pytest.raises(ValueError, match="same length"):
        reweighing_lp(np.zeros(3), np.zeros(4), 0.1, 0.5, 0.1)
    with pytest.raises(ValueError, match="β"):
        reweighing_lp(np.zeros(3), np.zeros(3), 0.1, 1.5, 0.1)
    with pytest.raises(ValueError, match="scaling coefficient"):
        reweigh(german, "dp", 0.5, 0.0, scale=0.0)


# --- the committed paper-profile results ----------------------------------------------------

def test_committed_paper_results():
    from amlib.experiments.influence_fairness import PROFILES, summarise
    from amlib.experiments.runner import read_results
    record = read_results("influence-fairness")
    assert record["provenance"]["profile"] == "paper"
    results = record["results"]
    trials = results["trials"]
    assert [[t["dataset"], t["metric"]] for t in trials] == PROFILES["paper"]["settings"]
    for trial in trials:
        assert [r["scale"] for r in trial["runs"]] == PROFILES["paper"]["scales"]
        assert {"accuracy", "dp_gap", "eop_gap", "branch", "removed"} <= set(trial["runs"][0])
    summary = {(s["dataset"], s["metric"]): s for s in results["summary"]}
    assert [summarise(t) for t in trials] == results["summary"]
    # the claims chapter 13 makes
    for key, s in summary.items():
        assert s["honest_gap"] < s["none_gap"], key             # honest reweighing helps
        assert s["increase"] > 0.03, key                         # the attack beats it everywhere
    adult = summary[("adult", "dp")]
    assert 0.10 < adult["increase"] < results["paper_max_dp_increase"]
    assert adult["worst_accuracy"] >= adult["honest_accuracy"]
    german = next(t for t in trials if t["dataset"] == "german")
    honest = next(r for r in german["runs"] if r["scale"] == 1.0)
    small = next(r for r in german["runs"] if r["scale"] == 0.05)
    assert small["dp_gap"] - honest["dp_gap"] > 0.10 and small["accuracy"] >= honest["accuracy"]
