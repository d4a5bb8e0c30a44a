"""Figure 2's toy experiment: the generator against its true coefficients, the modeler's numbers
against statsmodels, a fresh trial against the committed paper-profile results, and the claims."""
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from amlib.experiments import EXPERIMENTS, _load_all
from amlib.experiments.am_toy import (PROFILES, TRUE_COEF, run_trial, toy_accuracy, toy_data,
                                      trial_grid)


@pytest.fixture(scope="module")
def committed(paper_results):
    return paper_results("am-toy")


def test_toy_data_is_seeded_and_shaped():
    a, b = toy_data(300, 3), toy_data(300, 3)
    assert a.equals(b) and list(a.columns) == ["x", "y", "label"]
    assert set(np.unique(a["label"])) == {0.0, 1.0}
    assert not toy_data(300, 4).equals(a)


def test_toy_data_follows_its_true_logit():
    """A logistic fit on many rows recovers 0·1 + 0.8·x + 2.5·y within sampling error."""
    big = toy_data(40_000, 11)
    fit = sm.Logit(big["label"], sm.add_constant(big[["x", "y"]])).fit(disp=0)
    truth = pd.Series({"const": 0.0, **TRUE_COEF})
    z = (fit.params - truth) / fit.bse
    assert (z.abs() < 4).all(), z


def test_toy_accuracy_is_the_share_of_correct_labels():
    frame = toy_data(500, 0)
    fit = sm.Logit(frame["label"], sm.add_constant(frame[["x", "y"]])).fit(disp=0)
    eta = fit.params["const"] + fit.params["x"] * frame["x"] + fit.params["y"] * frame["y"]
    by_hand = float(((eta > 0) == (frame["label"] == 1)).mean())
    assert toy_accuracy(fit, frame) == by_hand


def test_am_toy_is_registered():
    _load_all()
    assert "am-toy" in EXPERIMENTS


def test_fresh_seed0_trial_matches_the_committed_one(committed):
    """Seed 0 of the paper profile rerun here gives the committed numbers; its clean p-value is
    statsmodels' Logit on the complete toy data."""
    params = trial_grid(PROFILES["paper"])[0]
    fresh = run_trial(params)
    stored = committed["results"][0]
    assert stored["seed"] == 0 and set(fresh) == set(stored)
    for key, value in stored.items():
        assert fresh[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key
    frame = toy_data(params["rows"], 0)
    clean = sm.Logit(frame["label"], sm.add_constant(frame[["x", "y"]])).fit(disp=0)
    assert fresh["clean_pvalue"] == pytest.approx(clean.pvalues["x"], rel=1e-4)


def test_committed_toy_results_show_the_attack_working_and_mcar_failing(committed):
    rows = committed["results"]
    assert [r["seed"] for r in rows] == PROFILES["paper"]["seeds"]
    for row in rows:
        assert row["clean_pvalue"] < 1e-3
        assert row["blamm_pvalue"] > 0.05, row
        assert row["mcar_pvalue"] < 0.05, row
        assert 0 < row["missing_rate"] < 0.25
        assert row["blamm_accuracy_change"] > -0.03
        # BLAMM moves the coefficient of x towards θα's zero; MCAR at the same rate does not
        assert abs(row["blamm_coef"]) < 0.5 * abs(row["mcar_coef"]), row
