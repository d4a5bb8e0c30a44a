"""Tests a modeler can run on the data it receives: is the missingness MCAR?

Two tests, both beyond the AM paper (which proposes no detector):

- :func:`little_mcar_test` — Little's (1988) chi-square test.  Group the rows by their
  missingness pattern; under MCAR every pattern's observed-variable means estimate the same
  population mean.  With the EM (maximum-likelihood, multivariate normal) estimates μ̂, Σ̂ of all
  rows, Little's eq. (5) is

      d² = Σ_j n_j (ȳ_j − μ̂_{o_j})ᵀ Σ̂_{o_j}⁻¹ (ȳ_j − μ̂_{o_j}),   df = Σ_j p_j − p,

  where pattern j has n_j rows, observes the p_j variables o_j and has observed-variable mean
  ȳ_j.  Under MCAR (and normality) d² is asymptotically χ²(df).
- :func:`missingness_predictability_test` — logistic regression of the indicator R = 1{x_j
  missing} on the fully observed columns, with a likelihood-ratio test against the
  intercept-only model (χ² with as many degrees of freedom as predictors) and the in-sample AUC.
  Under MCAR, R is independent of everything, so no predictor should help.

Both only look at *observed* values, so neither can tell MAR from MNAR; what they can reject is
MCAR, the assumption under which the mean-imputation and complete-case modelers are valid.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["MCARTest", "PredictabilityTest", "em_normal", "little_mcar_test",
           "missingness_predictability_test", "auc"]


@dataclass
class MCARTest:
    """Little's test: the statistic d², its degrees of freedom and χ² p-value, the number of
    missingness patterns and the EM estimates it used."""
    statistic: float
    df: int
    pvalue: float
    n_patterns: int
    mean: np.ndarray
    cov: np.ndarray


@dataclass
class PredictabilityTest:
    """Logistic regression of the missingness indicator: LR statistic, df, p-value and AUC."""
    statistic: float
    df: int
    pvalue: float
    auc: float
    n_missing: int


def _as_array(data) -> tuple[np.ndarray, list]:
    if isinstance(data, pd.DataFrame):
        return data.to_numpy(dtype=float), list(data.columns)
    X = np.asarray(data, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D table, got an array of shape {X.shape}")
    return X, list(range(X.shape[1]))


def _patterns(observed: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(boolean observed-variable vector, row indices) for every distinct missingness pattern."""
    keys, inverse = np.unique(observed, axis=0, return_inverse=True)
    return [(keys[k], np.flatnonzero(inverse.ravel() == k)) for k in range(len(keys))]


def em_normal(X: np.ndarray, tol: float = 1e-8, max_iter: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood mean and covariance of a multivariate normal from rows with NaNs, by
    the EM algorithm (Little & Rubin, Statistical Analysis with Missing Data, Section 11.2).

    E-step: per pattern, the conditional mean of the missing block given the observed one,
    μ_m + Σ_mo Σ_oo⁻¹ (x_o − μ_o), and its conditional covariance Σ_mm − Σ_mo Σ_oo⁻¹ Σ_om;
    M-step: the mean and (1/n) covariance of the completed sufficient statistics.
    """
    n, p = X.shape
    observed = ~np.isnan(X)
    patterns = _patterns(observed)
    mean = np.nanmean(X, axis=0)
    cov = np.diag(np.nanvar(X, axis=0))
    for _ in range(max_iter):
        total = np.zeros(p)
        cross = np.zeros((p, p))
        for obs, rows in patterns:
            mis = ~obs
            filled = X[rows].copy()
            if mis.any():
                coef = np.linalg.solve(cov[np.ix_(obs, obs)], cov[np.ix_(obs, mis)]).T
                filled[:, mis] = mean[mis] + (filled[:, obs] - mean[obs]) @ coef.T
                cross[np.ix_(mis, mis)] += len(rows) * (cov[np.ix_(mis, mis)]
                                                        - coef @ cov[np.ix_(obs, mis)])
            total += filled.sum(axis=0)
            cross += filled.T @ filled
        new_mean = total / n
        new_cov = cross / n - np.outer(new_mean, new_mean)
        change = max(np.abs(new_mean - mean).max(), np.abs(new_cov - cov).max())
        mean, cov = new_mean, new_cov
        if change < tol:
            break
    return mean, cov


def little_mcar_test(data, tol: float = 1e-8, max_iter: int = 1000) -> MCARTest:
    """Little's (1988) χ² test of MCAR over all missingness patterns (his eq. 5, with the EM
    estimates of μ and Σ; see the module docstring).  ``data``: a DataFrame or 2-D array whose
    missing entries are NaN.  Rows with no observed value carry no information and are left
    out, with a warning.
    """
    X, columns = _as_array(data)
    observed = ~np.isnan(X)
    if observed.all():
        raise ValueError("the data have no missing entries: there is no missingness to test")
    empty = [c for c, seen in zip(columns, observed.any(axis=0)) if not seen]
    if empty:
        raise ValueError(f"column(s) {empty} are missing in every row; drop them before testing")
    keep = observed.any(axis=1)
    if not keep.all():
        warnings.warn(f"{int((~keep).sum())} row(s) have no observed value and carry no "
                      "information about the means; Little's test leaves them out", stacklevel=2)
    X, observed = X[keep], observed[keep]
    n, p = X.shape
    if n <= p:
        raise ValueError(f"need more rows than columns to estimate a covariance, got {n} x {p}")
    mean, cov = em_normal(X, tol=tol, max_iter=max_iter)
    statistic, df = 0.0, -p
    patterns = _patterns(observed)
    for obs, rows in patterns:
        diff = X[rows][:, obs].mean(axis=0) - mean[obs]
        statistic += len(rows) * diff @ np.linalg.solve(cov[np.ix_(obs, obs)], diff)
        df += int(obs.sum())
    pvalue = float(stats.chi2.sf(statistic, df)) if df > 0 else float("nan")
    return MCARTest(float(statistic), df, pvalue, len(patterns), mean, cov)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney probability P(score₁ > score₀) (ties ½)."""
    labels = np.asarray(labels, dtype=bool)
    ranks = stats.rankdata(scores)
    n1, n0 = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def missingness_predictability_test(data: pd.DataFrame, column: str,
                                    predictors: list | None = None) -> PredictabilityTest:
    """Can the fully observed columns predict where ``column`` is missing?

    Fits logit P(R = 1 | z) = a + bᵀz by maximum likelihood (statsmodels), R = 1{column missing},
    z = ``predictors`` (default: every other column, which must then be fully observed), and
    tests b = 0 by the likelihood ratio 2(ℓ̂ − ℓ̂₀) ~ χ²(len(b)) against the intercept-only fit.
    The AUC is that of the fitted probabilities on the same rows (in-sample, so somewhat
    optimistic with many predictors; compare it with the AUC under MCAR masks).
    """
    import statsmodels.api as sm

    if not isinstance(data, pd.DataFrame):
        raise TypeError("data must be a pandas DataFrame")
    if column not in data.columns:
        raise KeyError(f"column {column!r} is not in the data")
    predictors = [c for c in data.columns if c != column] if predictors is None else list(predictors)
    if not predictors or column in predictors:
        raise ValueError("predictors must be a non-empty list of columns other than the tested one")
    missing = data[column].isna().to_numpy()
    if not missing.any():
        raise ValueError(f"column {column!r} has no missing entries: there is no missingness to test")
    if missing.all():
        raise ValueError(f"column {column!r} is missing in every row")
    Z = data[predictors]
    incomplete = list(Z.columns[Z.isna().any()])
    if incomplete:
        raise ValueError(f"the predictors must be fully observed; {incomplete} have missing entries")
    Z = Z.to_numpy(dtype=float)
    scale = Z.std(axis=0)
    if (scale == 0).any():
        raise ValueError("a predictor is constant; drop it")
    design = sm.add_constant((Z - Z.mean(axis=0)) / scale, has_constant="add")
    with warnings.catch_warnings():
        # under (quasi-)separation the fit diverges; ℓ̂ then tends to 0 and the LR statistic to
        # its limit −2ℓ̂₀, which is still the right evidence against MCAR
        warnings.simplefilter("ignore")
        fit = sm.Logit(missing.astype(float), design).fit(disp=0, maxiter=200, method="newton")
        fitted = fit.predict(design)
    statistic = max(0.0, 2 * (fit.llf - fit.llnull))
    df = len(predictors)
    return PredictabilityTest(float(statistic), df, float(stats.chi2.sf(statistic, df)),
                              auc(fitted, missing), int(missing.sum()))
