"""BLAMM end to end: the Figure 2 toy attack, bad inputs, determinism and sampling."""
import numpy as np
import pandas as pd
import pytest
import torch

from amlib.am.blamm import BLAMM
from amlib.am.modelers import fit_modeler
from amlib.experiments.am_toy import toy_accuracy as _accuracy
from amlib.experiments.am_toy import toy_data


def toy_frame(n=400, seed=0):
    """Figure 2's setting: 2-D logistic regression with a tilted true boundary."""
    return toy_data(n, seed)


def test_figure2_attack_succeeds_and_mcar_fails(tmp_path):
    frame = toy_frame()
    clean = fit_modeler(frame, "mean", "bernoulli", response="label")
    assert clean.pvalues["x"] < 1e-3
    attack = BLAMM(frame, "label", ["x"], "bernoulli", "mean", lam_upper=0.1, lr=0.01,
                   epochs=300, seed=0, log_dir=str(tmp_path)).fit()
    assert 0.03 < attack.missing_rate() < 0.15
    fits = [fit_modeler(f, "mean", "bernoulli", response="label")
            for f in attack.sample_masks(5, seed=1)]
    assert np.mean([r.pvalues["x"] for r in fits]) > 0.05
    drop = _accuracy(clean, frame) - np.mean([_accuracy(r, frame) for r in fits])
    assert drop < 0.02
    mcar = [fit_modeler(f, "mean", "bernoulli", response="label").pvalues["x"]
            for f in attack.sample_masks(5, seed=1, mechanism="mcar")]
    assert np.mean(mcar) < 0.05
    hist = attack.history_frame()
    assert len(hist) == 300 and hist["loss"].iloc[-1] < hist["loss"].iloc[0]
    assert list((tmp_path / "blamm").rglob("metrics.csv")), "CSV logger wrote no metrics"


def test_seeded_and_per_sample_partial_access():
    frame = toy_frame(120)
    runs = [BLAMM(frame, "label", ["x"], "bernoulli", "cca", mechanism="per-sample",
                  access=0.5, epochs=5, lr=0.05, seed=3).fit() for _ in range(2)]
    torch.testing.assert_close(runs[0].pattern_probs(), runs[1].pattern_probs())
    masks = runs[0].sample_masks(3, seed=0)
    assert len(masks) == 3 and all(m["x"].isna().sum() <= 60 for m in masks)
    assert not any(m.loc[~runs[0].accessible, "x"].isna().any() for m in masks)
    assert runs[0].missing_rate("effective") == pytest.approx(
        0.5 * runs[0].missing_rate("blamm"))


@pytest.fixture(scope="module")
def ate_attack():
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                          "w": rng.integers(0, 2, n).astype(float)})
    eta = -0.5 + frame["a"] - 0.3 * frame["w"]
    frame["out"] = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    attack = BLAMM(frame, "out", ["a"], "bernoulli", "mean", objective="ate", treatment="w",
                   tau_alpha=0.1, mechanism="per-sample", lam_upper=0.0, lr=0.05, epochs=40)
    start = attack.compute_loss()[1]["g"]
    return attack.fit(), start


def test_ate_objective_decreases(ate_attack):
    attack, start = ate_attack
    assert attack.history[-1]["g"] < start


def test_mnar_baseline_hits_the_rate_and_depends_on_the_hidden_values(ate_attack):
    """App. D.3's baseline: over many masks the realised hidden share is the learned mechanism's
    rate (within binomial sampling error), and a logistic regression of the hidden indicator on
    the complete data recovers a clear dependence on the masked feature ``a`` itself — the
    mechanism is MNAR — and reproduces the baseline's own hiding probabilities."""
    import statsmodels.api as sm

    attack, _ = ate_attack
    masks = 400
    pats = attack.sample_patterns(masks, seed=0, mechanism="mnar")
    assert pats.shape == (masks, len(attack.frame))
    hidden = (pats == 0).astype(float)              # one masked feature: pattern 0 hides it
    rate = attack.missing_rate()
    se = np.sqrt(rate * (1 - rate) / hidden.size)
    assert abs(hidden.mean() - rate) < 4 * se, (hidden.mean(), rate, se)

    table = attack.frame[["a", "b", "w", "out"]]
    design = sm.add_constant(pd.concat([table] * masks, ignore_index=True))
    fit = sm.Logit(hidden.reshape(-1), design).fit(disp=0)
    assert fit.pvalues["a"] < 1e-6                   # missingness depends on the hidden a
    with torch.no_grad():
        own = attack.mnar_baseline(seed=0)(attack.Z)[:, 0].numpy()   # P(pattern 0 | x_i)
    fitted = fit.predict(sm.add_constant(table))
    assert np.max(np.abs(fitted - own)) < 0.05


@pytest.mark.parametrize("kwargs, error, match", [
    ({"masked": ["nope"]}, KeyError, "not among"),
    ({"masked": ["x", "y"]}, ValueError, "every feature"),
    ({"lam_upper": -1.0}, ValueError, ">= 0"),
    ({"proxy": "knn"}, ValueError, "unknown proxy"),
    ({"mechanism": "forest"}, ValueError, "unknown mechanism"),
    ({"mechanism": "per-sample", "initial_missing_rate": 0.05}, ValueError, "neural"),
])
def test_bad_inputs(kwargs, error, match):
    args = {"masked": ["x"], **kwargs}
    with pytest.raises(error, match=match):
        BLAMM(toy_frame(50), "label", family="bernoulli", **args)


def test_singular_design_is_an_error():
    from amlib.am.glm import SingularDesignError

    frame = toy_frame(50)
    frame["x_copy"] = 2 * frame["x"]
    with pytest.raises(SingularDesignError, match="rank deficient"):
        BLAMM(frame, "label", ["x"], "bernoulli", features=["x", "y", "x_copy"])


def test_nan_in_attacker_data_is_an_error():
    frame = toy_frame(50)
    frame.loc[3, "y"] = np.nan
    with pytest.raises(ValueError, match="must be complete"):
        BLAMM(frame, "label", ["x"], "bernoulli")


def test_initial_missing_rate_sets_the_starting_point():
    frame = toy_frame(200)
    epoch0 = [BLAMM(frame, "label", ["x"], "bernoulli", "cca", epochs=1, seed=0,
                    initial_missing_rate=q).fit().history[0]["missing_rate"] for q in (None, 0.05)]
    assert 0.3 < epoch0[0] < 0.7 and 0.035 < epoch0[1] < 0.065
