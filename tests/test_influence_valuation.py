"""The data-valuation attack protocol (influence paper, Sec. 4.1) on tiny synthetic data.

Checked against things computed independently: ranks at the attacked θ′ from a dense autograd
Hessian and a direct solve, the honest model recovered by the baseline at λ = 1, hand-made run
records with known outcomes, and brute-force regime selection.
"""
import copy
import math

import numpy as np
import pytest
import torch

from amlib.experiments import influence_valuation as iv
from amlib.influence.valuation import (MAX_DROP, attack_run, baseline_outcome, baseline_target,
                                       grid_regimes, multi_target, outcome, pick_targets,
                                       regime_table, search_target, valuation_problem)


@pytest.fixture(scope="module")
def problem():
    fs = iv.synthetic_features(n_train=60, n_test=40, n_classes=3, dim=6, separation=1.0, seed=3)
    parts = [(fs.X[i], fs.y[i]) for i in (fs.split["train"], fs.split["attack"],
                                          fs.split["heldout"])]
    return valuation_problem(*parts[0], *parts[1], *parts[2], l2=1e-2, damping=0.1,
                             dtype=torch.float64, tol=1e-10)


def dense_values(problem, theta):
    """Values G_testᵀ(H + δI)⁻¹g_i from autograd (Hessian of the training objective) and a
    dense solve: independent of the library's matrix-free Hessian and CG."""
    model = problem.model
    X, y, Xt, yt = problem.X, problem.y, problem.X_test, problem.y_test
    theta = theta.detach().clone()
    H = torch.autograd.functional.hessian(lambda t: model.objective(t, X, y), theta)
    H = H + problem.damping * torch.eye(len(theta), dtype=H.dtype)
    a = torch.autograd.functional.jacobian(lambda t: model.loss(t, Xt, yt, "sum"), theta)
    G = torch.autograd.functional.jacobian(lambda t: model.loss(t, X, y, "none"), theta)
    return G @ torch.linalg.solve(H, a)


def rank_of(values, i):
    return int((values > values[i]).sum())


def test_honest_ranking_matches_dense_reference(problem):
    ref = dense_values(problem, problem.theta_star)
    np.testing.assert_allclose(problem.honest_values.numpy(), ref.numpy(), rtol=1e-6, atol=1e-9)


def test_one_run_records_k1_and_k10_and_the_target_provably_moves(problem):
    target = int((problem.honest_ranks == 25).nonzero()[0, 0])
    record, theta = attack_run(problem, target, eps=0.5, lr=0.1, ks=(1, 10), steps=100)
    assert record["initial_rank"] == 25
    assert set(record["reached"]) == {"1", "10"}
    # rank < 10 happens no later than rank < 1, and the run stops at the first rank < 1
    assert record["reached"]["10"]["step"] <= record["reached"]["1"]["step"] == record["steps"]
    # independent check of the claim at the returned θ′: dense Hessian, direct solve
    assert rank_of(dense_values(problem, theta), target) == 0
    assert float((theta - problem.theta_star).norm()) <= 0.5 * float(problem.theta_star.norm()) \
        * (1 + 1e-9)
    drop = problem.honest_accuracy - problem.model.accuracy(theta, problem.X_eval, problem.y_eval)
    assert record["reached"]["1"]["accuracy_drop"] == pytest.approx(drop)


def _run(eps, start, reached, objective="higher_ranked"):
    return {"eps": eps, "start": start, "objective": objective,
            "reached": {str(k): {"step": 1, "accuracy_drop": d} for k, d in reached.items()}}


def test_outcome_bookkeeping_nested_radii_and_starts():
    runs = [_run(0.05, "honest", {10: 0.01}),
            _run(0.1, 17, {1: 0.05, 10: 0.0}),
            _run(0.5, "honest", {1: 0.02, 10: 0.02}),
            _run(0.05, "honest", {1: 0.0}, objective="max_target")]
    assert outcome(runs, 0.05, 1) == {"success": False, "accuracy_drop": pytest.approx(math.nan,
                                                                                       nan_ok=True),
                                      "high_accuracy": False}
    assert outcome(runs, 0.05, 10)["accuracy_drop"] == 0.01
    at = outcome(runs, 0.1, 1)
    assert at["success"] and at["accuracy_drop"] == 0.05 and not at["high_accuracy"]
    assert outcome(runs, 0.1, 1, starts="honest")["success"] is False
    # a larger radius may reuse any θ′ found with a smaller one: the best (lowest) drop wins
    assert outcome(runs, 0.5, 1)["accuracy_drop"] == 0.02
    assert outcome(runs, 0.5, 10)["accuracy_drop"] == 0.0
    assert outcome(runs, 0.05, 1, objective="max_target")["high_accuracy"]


def test_regime_table_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        success = rng.random((4, 9)) < rng.random((4, 1))
        drops = np.where(success, rng.random((4, 9)) * 0.08, np.nan)
        labels = [0.01, 0.1, 1.0, 10.0]
        got = regime_table(success, drops, labels)
        rates = success.mean(1)
        means = np.array([drops[i][success[i]].mean() if success[i].any() else 0.0
                          for i in range(4)])
        ok = [i for i in range(4) if means[i] <= MAX_DROP]
        if ok:
            best_ok = max(rates[i] for i in ok)
            assert got["high-accuracy"]["success_rate"] == best_ok
            assert means[labels.index(got["high-accuracy"]["setting"])] <= MAX_DROP
        assert got["best"]["success_rate"] == rates.max()


def test_grid_regimes_target_by_target():
    # 3 settings × 4 targets: target 0 succeeds within budget at setting 2 only, target 1 only
    # above budget, target 2 twice (best drop 0.01), target 3 never
    success = np.array([[0, 1, 1, 0], [0, 0, 1, 0], [1, 1, 0, 0]], dtype=bool)
    drops = np.array([[np.nan, 0.09, 0.05, np.nan], [np.nan, np.nan, 0.01, np.nan],
                      [0.02, 0.04, np.nan, np.nan]])
    got = grid_regimes(success, drops)
    assert got["high-accuracy"]["success_rate"] == 0.5
    assert got["high-accuracy"]["accuracy_drop"] == pytest.approx((0.02 + 0.01) / 2)
    assert got["best"]["success_rate"] == 0.75
    assert got["best"]["accuracy_drop"] == pytest.approx((0.02 + 0.04 + 0.01) / 3)
    none = grid_regimes(np.zeros((2, 3), bool), np.full((2, 3), np.nan))
    assert none["best"]["success_rate"] == 0 and math.isnan(none["best"]["accuracy_drop"])


def test_search_stops_at_the_first_success_within_the_accuracy_budget(problem):
    easy = int((problem.honest_ranks == 3).nonzero()[0, 0])
    found = search_target(problem, easy, eps_grid=(0.01, 0.5), lrs=(0.1, 0.01), n_random=1,
                          steps=15, patience=5)
    first = found["runs"][0]
    assert first["start"] == "honest" and first["eps"] == 0.01
    # the search is θ*-first, then random starts (at every ε here)
    starts = [r["start"] == "honest" for r in found["runs"]]
    assert starts == sorted(starts, reverse=True)
    assert all(r["steps"] <= 15 for r in found["runs"])
    if "1" in first["reached"] and first["reached"]["1"]["accuracy_drop"] <= MAX_DROP:
        assert len(found["runs"]) == 1
    # every later run was needed: before it, no run with radius <= its ε had succeeded in budget
    for i, run in enumerate(found["runs"]):
        prior = found["runs"][:i]
        starts = "honest" if run["start"] == "honest" else "all"
        assert not outcome(prior, run["eps"], 1, starts=starts)["high_accuracy"]


def test_baseline_at_weight_one_is_the_honest_model(problem):
    target = pick_targets(problem, 1, 10, seed=0)[0]
    rows = baseline_target(problem, target, lambdas=[1.0, 30.0, 1e3], ks=(1, 10))["rows"]
    assert [r["lambda"] for r in rows] == [1.0, 30.0, 1e3]
    assert rows[0]["target_rank"] == int(problem.honest_ranks[target])
    assert rows[0]["accuracy_drop"] == 0.0 and rows[0]["distance_ratio"] < 1e-6
    assert rows[2]["distance_ratio"] > 0   # a heavy weight moves the model
    success, drops = baseline_outcome(rows, 10)
    assert list(success) == [r["target_rank"] < 10 for r in rows]
    assert all(np.isnan(d) != s for d, s in zip(drops, success))


def test_pick_targets_are_outside_the_top_k_and_reproducible(problem):
    a = pick_targets(problem, 20, 10, seed=4)
    assert a == pick_targets(problem, 20, 10, seed=4) and len(set(a)) == 20
    assert all(int(problem.honest_ranks[t]) >= 10 for t in a)
    with pytest.raises(ValueError, match="outside the top"):
        pick_targets(problem, 60, 10)


def test_multi_target_shares_and_regimes(problem):
    targets = pick_targets(problem, 8, 5, seed=1)
    out = multi_target(problem, targets, eps=0.5, lr=0.1, ks=[1, 5, 59], steps=15)
    assert out["by_k"]["59"]["best"]["success_rate"] == 1.0     # k ≥ n − 1: everyone is in
    for k in ("1", "5"):
        best, high = out["by_k"][k]["best"], out["by_k"][k]["high-accuracy"]
        assert best["success_rate"] >= high["success_rate"]
        assert best["top_k_share"] <= 1.0
        assert best["success_rate"] * len(targets) <= int(k) + 1e-9


def test_quick_profile_runs_on_synthetic_features(tmp_path):
    config = copy.deepcopy(iv.PROFILES["quick"])
    config.update(datasets=["synthetic-50-40-3"], n_targets=3, n_ablation=2, n_baseline=2,
                  steps=20, lr_drop_step=10, eps=[0.1, 0.5])
    config["multi"] = {"sizes": [5], "ks": [1, 5], "eps": 0.5, "lrs": [0.1]}
    config["detection"] = dict(config["detection"], datasets=["synthetic-50-40-3"],
                               optimisers=["lbfgs", "newton"])
    trials = iv.trial_grid(config)
    results = iv.run_trials(iv.run_trial, trials, experiment="test-valuation", cache=tmp_path,
                            progress=False)
    again = iv.run_trials(iv.run_trial, trials, experiment="test-valuation", cache=tmp_path,
                          progress=False)
    assert again == results                      # resumed from the cache
    out = iv.summarise(config, trials, results)
    keys = {(r["method"], r["k"], r["regime"]) for r in out["table1"]}
    assert keys == {(m, k, g) for m in ("attack", "baseline") for k in (1, 10)
                    for g in ("high-accuracy", "best")}
    for r in out["table1"]:
        assert r["dataset"] == "synthetic-50-40-3"
        assert r["n_targets"] == (3 if r["method"] == "attack" else 2)
        assert 0 <= r["success_rate"] <= 1
    assert {r["row"] for r in out["table2"]} >= {"max target influence",
                                                 "min higher-rank influence",
                                                 "+ random initialisations"}
    assert out["fig3"] and out["fig2_transfer"] and out["detection"]
    det = [d for d in out["detection"] if d["eps"] == "all"]
    assert det and all(d["n_honest"] == config["detection"]["n_honest"] for d in det)
