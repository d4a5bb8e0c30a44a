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
  ``results.completed_frame``.

``response`` defaults to the frame's last column (the convention of :mod:`amlib.data`).
"""
from __future__ import annotations

import functools
import logging

import numpy as np
import pandas as pd
import statsmodels.api as sm

__all__ = ["REMEDIATIONS", "remediate", "fit_modeler", "mice_backend", "r_available"]

_R_LOG = logging.getLogger("amlib.am.modelers.R")
REMEDIATIONS = ("cca", "mean", "regression", "mice")
_SM_FAMILIES = {"gaussian": sm.families.Gaussian, "bernoulli": sm.families.Binomial,
                "binomial": sm.families.Binomial, "logistic": sm.families.Binomial,
                "poisson": sm.families.Poisson}


@functools.lru_cache(maxsize=1)
def r_available() -> bool:
    """True when rpy2 imports and R's ``mice`` package loads."""
    try:
        import rpy2.robjects as ro
        from rpy2.rinterface_lib import callbacks

        # R's warnings (e.g. an empty site library) go to a Python logger, not the notebook.
        callbacks.consolewrite_warnerror = lambda text: _R_LOG.debug(text.rstrip())
        return bool(ro.r('isTRUE(suppressWarnings(requireNamespace("mice", quietly = TRUE)))')[0])
    except Exception:  # noqa: BLE001 - any failure means "no R path"
        return False


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
    model = sm.GLM(completed[response].astype(float), X,
                   family=_SM_FAMILIES[str(family).lower()]())
    results = model.fit()
    results.completed_frame = completed
    return results
