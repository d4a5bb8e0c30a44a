"""The modeler (victim) side: remediate a DataFrame with NaNs, then fit a statsmodels GLM.

.. rubric:: Public API

- ``remediate(frame, remediation, response=None, seed=0)`` returns a complete DataFrame:

  ``"cca"``
      complete-case analysis: drop every row with a NaN (Section 3.1);
  ``"mean"``
      scikit-learn ``SimpleImputer(strategy="mean")`` on the features (eq. 6);
  ``"regression"``
      for each feature with NaNs, scikit-learn ``LinearRegression`` on the always-observed
      features, fitted on the rows where it is observed (App. B);
  ``"mice"``
      R ``mice`` 3.x through rpy2 when available — default methods, ``maxit = 5``, ``m = 1``,
      ``seed`` — exactly as the paper (App. D.1); otherwise statsmodels' ``MICEData`` (5
      cycles, seeded through numpy).  The whole frame, response included, is given to MICE.
      :func:`mice_backend` says which one runs.

  The response must be complete except under ``"cca"`` and ``"mice"``.
- ``fit_modeler(frame, remediation, family, response=None, seed=0)`` remediates and fits
  ``statsmodels.GLM(y, [const, X])`` (IRLS from statsmodels' defaults) and returns the results
  object (``.params``, ``.pvalues``, ``.bse``); the completed frame is attached as
  ``results.completed_frame``.  It refuses, with :class:`~amlib.validation.InvalidDataError`,
  data whose coefficients are not identified (no more rows than coefficients, constant or
  collinear columns) or a Bernoulli response not coded 0/1, and with
  :class:`~amlib.validation.SeparationError` completely separated Bernoulli data (no finite MLE
  of any coefficient).

``response`` defaults to the frame's last column (the convention of :mod:`amlib.data`).
"""
from __future__ import annotations

import functools
import logging
import os
import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm

from ..validation import InvalidDataError, SeparationError, separating_direction

__all__ = ["REMEDIATIONS", "remediate", "fit_modeler", "mice_backend", "r_available"]

_R_LOG = logging.getLogger("amlib.am.modelers.R")
REMEDIATIONS = ("cca", "mean", "regression", "mice")
_SM_FAMILIES = {"gaussian": sm.families.Gaussian, "bernoulli": sm.families.Binomial,
                "binomial": sm.families.Binomial, "logistic": sm.families.Binomial,
                "poisson": sm.families.Poisson}


@functools.lru_cache(maxsize=1)
def r_available() -> bool:
    """True when rpy2 imports and R's ``mice`` package loads.

    Starting R through rpy2 prepends R's and the system's library folders to
    ``LD_LIBRARY_PATH``; processes started afterwards (joblib, Dask or Ray workers) would then
    load the system's shared libraries in place of their own interpreter's, and fail.  R is
    already loaded in this process, so the variable is restored at once.
    """
    library_path = os.environ.get("LD_LIBRARY_PATH")
    try:
        import rpy2.robjects as ro
        from rpy2.rinterface_lib import callbacks

        # R's warnings (e.g. an empty site library) go to a Python logger, not the notebook.
        callbacks.consolewrite_warnerror = lambda text: _R_LOG.debug(text.rstrip())
        return bool(ro.r('isTRUE(suppressWarnings(requireNamespace("mice", quietly = TRUE)))')[0])
    except Exception:  # noqa: BLE001 - any failure means "no R path"
        return False
    finally:
        if library_path is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = library_path


def mice_backend() -> str:
    """``"R mice"`` or ``"statsmodels MICEData"``."""
    return "R mice" if r_available() else "statsmodels MICEData"


def _split(frame: pd.DataFrame, response: str | None):
    if not isinstance(frame, pd.DataFrame):
        raise TypeError("the modeler takes a pandas DataFrame")
    response = frame.columns[-1] if response is None else response
    if response not in frame.columns:
        raise KeyError(f"response {response!r} is not a column of the frame")
    features = [c for c in frame.columns if c != response]
    if len(frame) == 0:
        raise InvalidDataError("the frame has no rows; pass the (masked) data set to fit")
    bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise TypeError(f"columns {bad} are not numeric; encode them first")
    return response, features


_R_MICE = """function(df, seed) {
  imp <- mice::mice(df, m = 1, maxit = 5, seed = seed, printFlag = FALSE)
  mice::complete(imp, 1)
}"""


def _mice_r(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    import rpy2.robjects as ro

    columns = {f"v{k}": ro.FloatVector(frame[c].to_numpy(float)) for k, c in enumerate(frame)}
    done = ro.r(_R_MICE)(ro.DataFrame(columns), int(seed))
    out = pd.DataFrame({c: np.asarray(done.rx2(f"v{k}"), dtype=float)
                        for k, c in enumerate(frame)}, index=frame.index)
    return out


def _mice_statsmodels(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    from statsmodels.imputation.mice import MICEData

    renamed = frame.copy()
    renamed.columns = [f"v{k}" for k in range(frame.shape[1])]
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        data = MICEData(renamed)
        data.update_all(5)
        out = data.data.copy()
    finally:
        np.random.set_state(state)
    out.columns = frame.columns
    out.index = frame.index
    return out


def remediate(frame: pd.DataFrame, remediation: str, response: str | None = None,
              seed: int = 0) -> pd.DataFrame:
    """A complete copy of ``frame`` after the modeler's missing-data remediation (see module doc)."""
    response, features = _split(frame, response)
    if remediation not in REMEDIATIONS:
        raise ValueError(f"unknown remediation {remediation!r}; use one of {REMEDIATIONS}")
    if remediation == "cca":
        out = frame.dropna()
        if len(out) == 0:
            raise ValueError("complete-case analysis left no rows: every row has a NaN")
        return out
    if remediation == "mice":
        if frame.isna().all().any():
            raise ValueError(f"columns {frame.columns[frame.isna().all()].tolist()} are entirely "
                             "missing; MICE cannot impute them")
        if not frame.isna().any().any():
            return frame.copy()
        return _mice_r(frame, seed) if r_available() else _mice_statsmodels(frame, seed)
    if frame[response].isna().any():
        raise ValueError(f"the response {response!r} has NaNs; {remediation} imputation "
                         "imputes features only (use 'cca' or 'mice', or drop those rows)")
    out = frame.copy()
    holes = [c for c in features if out[c].isna().any()]
    empty = [c for c in holes if out[c].isna().all()]
    if empty:
        raise ValueError(f"features {empty} are entirely missing; nothing to impute from")
    if remediation == "mean":
        from sklearn.impute import SimpleImputer

        if holes:
            out[holes] = SimpleImputer(strategy="mean").fit_transform(out[holes])
        return out
    from sklearn.linear_model import LinearRegression

    always = [c for c in features if c not in holes]
    if holes and not always:
        raise ValueError("regression imputation needs at least one always-observed feature")
    for column in holes:
        seen = out[column].notna()
        model = LinearRegression().fit(frame.loc[seen, always], frame.loc[seen, column])
        out.loc[~seen, column] = model.predict(frame.loc[~seen, always])
    return out


def fit_modeler(frame: pd.DataFrame, remediation: str, family: str = "gaussian",
                response: str | None = None, seed: int = 0):
    """Remediate, then fit a statsmodels GLM with an intercept; returns its results object."""
    if str(family).lower() not in _SM_FAMILIES:
        raise ValueError(f"unknown family {family!r}; use one of {sorted(_SM_FAMILIES)}")
    response, features = _split(frame, response)
    completed = remediate(frame, remediation, response, seed)
    X = sm.add_constant(completed[features].astype(float), has_constant="add")
    y = completed[response].astype(float)
    binary = _SM_FAMILIES[str(family).lower()] is sm.families.Binomial
    _check_identified(X, y, binary, remediation)
    model = sm.GLM(y, X, family=_SM_FAMILIES[str(family).lower()]())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = model.fit()
        mu = np.asarray(results.mu)
    if binary and (mu.min() < 1e-8 or mu.max() > 1 - 1e-8):  # saturated fit: separated?
        _check_separation(X, y)   # raises instead of statsmodels' overflow warnings
    for warning in caught:   # not separated: statsmodels' own warnings reach the caller
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno)
    results.completed_frame = completed
    return results


def _check_identified(X: pd.DataFrame, y: pd.Series, binary: bool, remediation: str) -> None:
    """Refuse data on which the GLM's coefficients are not identified (see module doc)."""
    n, p = X.shape
    if n <= p:
        raise InvalidDataError(
            f"after {remediation!r} remediation {n} row(s) remain for {p} coefficients "
            "(intercept included); the GLM needs more rows than coefficients (and standard "
            "errors need more still): pass more rows or fewer features")
    if not np.isfinite(X.to_numpy()).all() or not np.isfinite(y.to_numpy()).all():
        raise InvalidDataError("the data have infinite values; drop those rows or clip them")
    if binary and not y.isin([0.0, 1.0]).all():
        raise InvalidDataError(
            f"a bernoulli/binomial response must be coded 0/1, but {y.name!r} has "
            f"{y.nunique()} distinct values (e.g. {float(y[~y.isin([0.0, 1.0])].iloc[0])!r}); use "
            "family='gaussian' for a continuous response, or recode it to 0/1")
    if binary and y.nunique() < 2:
        raise InvalidDataError(
            f"the 0/1 response {y.name!r} takes only the value {float(y.iloc[0]):g}, so the "
            "logistic MLE does not exist; pass data with both classes (check response=, which "
            "defaults to the last column)")
    constant = [c for c in X.columns[1:] if X[c].nunique() <= 1]
    if constant:
        raise InvalidDataError(
            f"features {constant} are constant after {remediation!r} remediation, so their "
            "coefficients are not identified next to the intercept; drop them from the frame")
    if np.linalg.matrix_rank(X.to_numpy()) < p:
        raise InvalidDataError(
            "the design [const, features] is rank deficient (some features are linear "
            "combinations of others), so the coefficients are not identified; drop the "
            "redundant features")


def _check_separation(X: pd.DataFrame, y: pd.Series) -> None:
    """Raise :class:`SeparationError` when the 0/1 response is completely separated by ``X``
    (every coefficient meaningless), naming the features whose removal alone ends it.
    Quasi-complete separation (a rare dummy whose rows share one class) only makes that
    dummy's coefficient diverge; statsmodels' warning is passed on and the fit returned."""
    values, target = X.to_numpy(), y.to_numpy()
    if separating_direction(values, target, complete=True) is None:
        return
    fixes = [c for j, c in enumerate(X.columns) if j > 0 and
             separating_direction(np.delete(values, j, axis=1), target, complete=True) is None]
    advice = (f"drop one of the features {fixes}, which is what separates it, " if fixes else
              "drop the features that separate it ")
    raise SeparationError(
        "perfect separation: a hyperplane of the features splits the 0/1 response exactly, "
        "so the logistic MLE does not exist (statsmodels would report huge coefficients with "
        f"p-values near 1); {advice}or fit a penalised model", fixes)
