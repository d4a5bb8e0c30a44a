"""Bad input is refused at once with a typed error that names the problem and the fix (issue 12).

Every case here was misreported or silently accepted before: perfect separation blamed on
collinear columns (or reported as converged), unidentified victim GLMs, NaN/inf/out-of-range
hyper-parameters, fractional epochs, repeated masked features, empty frames, mixed precision.
"""
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from amlib.am.blamm import BLAMM
from amlib.am.glm import (IRLSConvergenceError, PerfectSeparationError, add_intercept, irls,
                          solve_lower_level)
from amlib.am.implicit import glm_argmin
from amlib.am.modelers import fit_modeler
from amlib.influence import fit_logistic
from amlib.influence.fitting import SeparatedDataWarning
from amlib.influence.models import NotStationaryWarning
from amlib.influence.scores import influence_values
from amlib.validation import (InvalidDataError, InvalidParameterError, InvalidParameterTypeError,
                              SeparationError, separating_direction)


def separable(n=60, seed=0):
    """Two features; the label is the sign of the first one (perfectly separated)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": (x[:, 0] > 0).astype(float)})


def noisy(n=200, seed=0):
    """The same features with a noisy label: an ordinary, non-separated logistic model."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    label = (x[:, 0] + rng.normal(size=n) > 0).astype(float)
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": label})


# ----- the separation detector against brute force --------------------------------------------
@pytest.mark.parametrize("seed", range(40))
def test_separating_direction_matches_the_one_dimensional_rule(seed):
    """In 1-D (with intercept) the labels are (quasi-)separated exactly when the classes' ranges
    do not overlap except at one shared point, or only one class is present."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 12))
    x = rng.integers(0, 6, size=n).astype(float)   # small integers: ties happen
    y = rng.integers(0, 2, size=n).astype(float)
    x0, x1 = x[y == 0], x[y == 1]
    expected = (len(x0) == 0 or len(x1) == 0 or x0.max() <= x1.min() or x1.max() <= x0.min())
    found = separating_direction(np.c_[np.ones(n), x], y) is not None
    assert found == expected, (x, y)


# ----- perfect separation ---------------------------------------------------------------------
def test_irls_says_separation_and_its_suggested_l2_works():
    frame = separable()
    X = add_intercept(torch.tensor(frame[["a", "b"]].to_numpy()))
    y = torch.tensor(frame["y"].to_numpy())
    with pytest.raises(PerfectSeparationError, match="perfect separation.*l2=1e-3") as info:
        irls(X, y, "bernoulli")
    # the same error is what the docstring promises and what App. D.3's fallback catches
    assert isinstance(info.value, IRLSConvergenceError) and isinstance(info.value, SeparationError)
    result = irls(X, y, "bernoulli", l2=1e-3)   # the suggested fix
    assert result.converged and torch.isfinite(result.theta).all()
    assert solve_lower_level(X, y, "bernoulli").l2 == pytest.approx(1e-3)


def test_irls_on_noisy_labels_is_not_called_separated():
    frame = noisy()
    X = add_intercept(torch.tensor(frame[["a", "b"]].to_numpy()))
    result = irls(X, torch.tensor(frame["y"].to_numpy()), "bernoulli")
    assert result.converged and result.l2 == 0


def test_blamm_says_separation_and_lam_lower_fixes_it():
    frame = separable()
    with pytest.raises(SeparationError, match="perfect separation.*lam_lower=0.1"):
        BLAMM(frame, "y", ["b"], "bernoulli", epochs=2)
    attack = BLAMM(frame, "y", ["b"], "bernoulli", epochs=3, lam_lower=0.1,
                   progress_bar=False).fit()   # the suggested fix
    assert torch.isfinite(attack.theta_tilde).all() and torch.isfinite(attack.theta_alpha).all()
    assert len(attack.history) == 3


def test_fit_modeler_says_separation_and_names_the_feature_to_drop():
    frame = separable()
    with pytest.raises(SeparationError, match=r"perfect separation.*\['a'\]") as info:
        fit_modeler(frame, "cca", "bernoulli")
    assert info.value.columns == ["a"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the suggested fix fits without any warning
        fit = fit_modeler(frame.drop(columns=info.value.columns), "cca", "bernoulli")
    assert np.isfinite(fit.params).all() and fit.pvalues["b"] > 0.01


def test_fit_logistic_warns_on_separation_and_influence_refuses_it():
    frame = separable()
    X, y = frame[["a", "b"]].to_numpy(), frame["y"].to_numpy().astype(int)
    with pytest.warns(SeparatedDataWarning, match="perfect separation.*l2=1e-3"):
        fit = fit_logistic(X, y)
    assert not fit.converged
    assert issubclass(SeparatedDataWarning, NotStationaryWarning)   # what the docstring promises
    with pytest.raises(SeparationError, match="l2"):
        influence_values(fit.model, fit.theta, X, y, X[:5], y[:5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fixed = fit_logistic(X, y, l2=1e-3)   # the suggested fix
        values = influence_values(fixed.model, fixed.theta, X, y, X[:5], y[:5]).values
    assert fixed.converged and float(values.abs().max()) > 1e-3


def test_fit_logistic_on_noisy_labels_does_not_warn():
    frame = noisy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fit_logistic(frame[["a", "b"]].to_numpy(), frame["y"].to_numpy().astype(int))
    assert fit.converged


# ----- the victim's GLM -----------------------------------------------------------------------
@pytest.mark.parametrize("frame, family, match", [
    (noisy().assign(c=1.0)[["a", "b", "c", "y"]], "bernoulli", r"\['c'\] are constant"),
    (noisy().assign(c=lambda f: f["a"] - f["b"])[["a", "b", "c", "y"]], "gaussian",
     "rank deficient"),
    (noisy().assign(y=lambda f: f["a"] + 0.5), "bernoulli", "coded 0/1.*family='gaussian'"),
    (noisy().assign(y=1.0), "bernoulli", "only the value 1"),
    (noisy().iloc[:1], "gaussian", "1 row.*3 coefficients"),
    (noisy().iloc[:0], "gaussian", "no rows"),
], ids=["constant-column", "collinear", "continuous-y", "one-class", "one-row", "zero-rows"])
def test_fit_modeler_refuses_unidentified_models(frame, family, match):
    with pytest.raises(InvalidDataError, match=match):
        fit_modeler(frame, "cca", family)


# ----- BLAMM's hyper-parameters and data ------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, match", [
    ({"lr": float("inf")}, InvalidParameterError, "lr must be a finite number > 0"),
    ({"lr": float("nan")}, InvalidParameterError, "lr must be a finite"),
    ({"lam_upper": float("nan")}, InvalidParameterError, "lam_upper must be a finite"),
    ({"lam_lower": float("inf")}, InvalidParameterError, "lam_lower must be a finite"),
    ({"access": 1.5}, InvalidParameterError, r"access .*<= 1.*\(0, 1\]"),
    ({"access": 0}, InvalidParameterError, r"access must be a finite number > 0"),
    ({"epochs": 2.7}, InvalidParameterError, "whole number.*epochs=3"),
    ({"epochs": "10"}, InvalidParameterTypeError, "epochs must be an integer.*epochs=10"),
    ({"masked": ["a", "a"]}, InvalidParameterError, r"\['a'\] more than once"),
    ({"tol": -1.0}, InvalidParameterError, "tol must be"),
], ids=lambda v: str(v) if not isinstance(v, dict) else "-".join(f"{k}={v[k]}" for k in v))
def test_blamm_refuses_bad_hyper_parameters_at_construction(kwargs, error, match):
    args = {"masked": ["a"], **kwargs}
    with pytest.raises(error, match=match):
        BLAMM(noisy(), "y", family="bernoulli", **args)


def test_blamm_accepts_integral_float_epochs():
    assert BLAMM(noisy(), "y", ["a"], "bernoulli", epochs=3.0).epochs == 3


def test_blamm_refuses_infinite_features_and_empty_frames():
    frame = noisy()
    frame.loc[3, "b"] = np.inf
    with pytest.raises(InvalidDataError, match=r"\['b'\] have infinite values"):
        BLAMM(frame, "y", ["a"], "bernoulli")
    with pytest.raises(InvalidDataError, match="no rows"):
        BLAMM(noisy().iloc[:0], "y", ["a"], "bernoulli")


def test_lower_level_l2_nan_is_refused():
    frame = noisy()
    X = add_intercept(torch.tensor(frame[["a", "b"]].to_numpy()))
    y = torch.tensor(frame["y"].to_numpy())
    with pytest.raises(InvalidParameterError, match="l2 must be a finite"):
        irls(X, y, "bernoulli", l2=float("nan"))
    with pytest.raises(InvalidParameterError, match="l2 must be a finite"):
        glm_argmin(X, torch.ones(len(y), dtype=X.dtype), y, "bernoulli", l2=float("nan"))


# ----- influence: precision -------------------------------------------------------------------
def test_float32_theta_with_float64_features_is_refused():
    frame = noisy()
    X = torch.tensor(frame[["a", "b"]].to_numpy())
    y = frame["y"].to_numpy().astype(int)
    fit = fit_logistic(X, y, l2=1e-3)
    with pytest.raises(InvalidParameterTypeError, match=r"theta is torch.float32.*theta.to"):
        influence_values(fit.model, fit.theta.float(), X, y, X[:5], y[:5])
    values = influence_values(fit.model, fit.theta, X, y, X[:5], y[:5]).values
    assert values.dtype == torch.float64


@pytest.mark.parametrize("seed", range(40))
def test_complete_separation_matches_the_one_dimensional_rule(seed):
    """Complete separation (no ties across classes) in 1-D: the ranges do not touch."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 12))
    x = rng.integers(0, 6, size=n).astype(float)
    y = rng.integers(0, 2, size=n).astype(float)
    x0, x1 = x[y == 0], x[y == 1]
    expected = len(x0) == 0 or len(x1) == 0 or x0.max() < x1.min() or x1.max() < x0.min()
    found = separating_direction(np.c_[np.ones(n), x], y, complete=True) is not None
    assert found == expected, (x, y)


def test_fit_modeler_passes_quasi_separation_of_one_rare_dummy():
    """A dummy whose few rows all share one class makes only its own coefficient diverge: the
    victim's fit (as statsmodels and R return it) goes through, the other coefficients stay
    finite and close to the fit without those rows."""
    frame = noisy(400)
    frame["rare"] = 0.0
    rows = frame.index[frame["y"] == 1][:3]
    frame.loc[rows, "rare"] = 1.0
    frame = frame[["a", "b", "rare", "y"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_modeler(frame, "cca", "bernoulli")
    rest = fit_modeler(frame.drop(index=rows).drop(columns="rare"), "cca", "bernoulli")
    assert abs(fit.params["rare"]) > 10
    np.testing.assert_allclose(fit.params[["a", "b"]], rest.params[["a", "b"]], atol=1e-3)
