"""The modeler: remediation of a DataFrame with NaNs, then a statsmodels GLM."""
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from amlib.am import modelers
from amlib.am.modelers import fit_modeler, r_available, remediate


def _frame(n=200, seed=0, rate=0.25):
    """y = 1 + 2a − b + ε with b correlated with a, and a hidden completely at random."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = 0.7 * a + rng.normal(size=n)
    y = 1.0 + 2.0 * a - b + rng.normal(size=n)
    frame = pd.DataFrame({"a": a, "b": b, "y": y})
    holes = frame.copy()
    holes.loc[rng.random(n) < rate, "a"] = np.nan
    return frame, holes


def test_cca_drops_rows():
    _, holes = _frame()
    res = fit_modeler(holes, "cca", "gaussian", response="y")
    kept = holes.dropna()
    ref = sm.OLS(kept["y"], sm.add_constant(kept[["a", "b"]])).fit()
    np.testing.assert_allclose(res.params.values, ref.params.values, atol=1e-10)
    assert res.nobs == len(kept)


def test_mean_imputation_uses_observed_mean():
    _, holes = _frame()
    done = remediate(holes, "mean", "y")
    filled = holes["a"].isna()
    assert np.allclose(done.loc[filled, "a"], holes["a"].mean())
    assert not done.isna().any().any()


def test_regression_imputation_predicts_from_always_observed():
    _, holes = _frame()
    done = remediate(holes, "regression", "y")
    seen = holes["a"].notna()
    slope, intercept = np.polyfit(holes.loc[seen, "b"], holes.loc[seen, "a"], 1)
    np.testing.assert_allclose(done.loc[~seen, "a"], intercept + slope * holes.loc[~seen, "b"])


@pytest.mark.skipif(not r_available(), reason="R with the mice package (through rpy2) is absent")
def test_mice_through_r_is_seeded():
    _, holes = _frame()
    first = remediate(holes, "mice", "y", seed=1)
    again = remediate(holes, "mice", "y", seed=1)
    other = remediate(holes, "mice", "y", seed=2)
    assert not first.isna().any().any()
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)
    pd.testing.assert_series_equal(first["b"], holes["b"])  # observed entries untouched
    assert modelers.mice_backend() == "R mice"


def test_mice_statsmodels_fallback(monkeypatch):
    _, holes = _frame()
    monkeypatch.setattr(modelers, "r_available", lambda: False)
    done = remediate(holes, "mice", "y", seed=0)
    assert not done.isna().any().any()
    assert modelers.mice_backend() == "statsmodels MICEData"


@pytest.mark.parametrize("backend", [
    "statsmodels",
    pytest.param("R", marks=pytest.mark.skipif(not r_available(), reason="R mice is absent"))])
def test_mice_recovers_the_true_coefficients(backend, monkeypatch):
    """y = 1 + 2a − b + ε with a hidden completely at random in 30% of the rows, b correlated
    with a.  MICE uses the response, so its fit stays within sampling error of the truth and of
    the complete-data OLS; mean imputation, which ignores y, biases both slopes (b takes over
    part of a's effect), a yardstick that shows the check can fail."""
    if backend == "statsmodels":
        monkeypatch.setattr(modelers, "r_available", lambda: False)
    frame, holes = _frame(n=4000, seed=5, rate=0.3)
    truth = pd.Series({"const": 1.0, "a": 2.0, "b": -1.0})
    complete = sm.OLS(frame["y"], sm.add_constant(frame[["a", "b"]])).fit()
    mice = fit_modeler(holes, "mice", "gaussian", response="y", seed=3)
    mean = fit_modeler(holes, "mean", "gaussian", response="y")
    # one imputation adds noise of the order of the complete-data standard error
    assert ((mice.params - truth).abs() < 4 * complete.bse).all(), mice.params
    assert ((mice.params - complete.params).abs() < 4 * complete.bse).all()
    assert ((mean.params - truth).abs()[["a", "b"]] > 10 * complete.bse[["a", "b"]]).all()


@pytest.mark.parametrize("remediation", ["cca", "mean", "regression", "mice"])
def test_pipeline_gives_pvalues(remediation):
    _, holes = _frame()
    holes["y"] = (holes["y"] > 1).astype(float)
    res = fit_modeler(holes, remediation, "bernoulli")  # response defaults to the last column
    assert list(res.params.index) == ["const", "a", "b"]
    assert np.all((res.pvalues >= 0) & (res.pvalues <= 1))


def test_bad_inputs():
    _, holes = _frame()
    with pytest.raises(ValueError, match="unknown remediation"):
        remediate(holes, "knn", "y")
    with pytest.raises(ValueError, match="unknown family"):
        fit_modeler(holes, "mean", "gamma-ish", response="y")
    with pytest.raises(KeyError):
        fit_modeler(holes, "mean", "gaussian", response="zzz")
    bad = holes.copy()
    bad.loc[0, "y"] = np.nan
    with pytest.raises(ValueError, match="response"):
        remediate(bad, "mean", "y")
    empty = holes.copy()
    empty["a"] = np.nan
    with pytest.raises(ValueError):
        remediate(empty, "cca", "y")
