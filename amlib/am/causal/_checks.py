"""Input checks shared by the ATE estimators: one typed error that names the problem and the fix."""
from __future__ import annotations

import numpy as np

__all__ = ["CausalInputError", "check_data", "check_options"]


class CausalInputError(ValueError):
    """Bad input to an ATE estimator (shape, non-binary W or Y, NaN where none may be, empty arm)."""


def _binary(values, what: str, n: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise CausalInputError(f"{what} must be one-dimensional of length n; got shape {arr.shape}; "
                               "pass a vector (e.g. frame['w'].to_numpy())")
    if arr.shape[0] != n:
        raise CausalInputError(f"{what} has {arr.shape[0]} entries but X has {n} rows; "
                               "pass X, w and y with the same rows")
    try:
        num = arr.astype(float)
    except (TypeError, ValueError) as exc:
        raise CausalInputError(f"{what} is not numeric; encode it as 0/1") from exc
    if np.isnan(num).any():
        raise CausalInputError(f"{what} has missing values; drop those rows first "
                               "(only covariates may be missing, and only for 'cf-mia'/'dr-mia')")
    if not np.isin(num, (0.0, 1.0)).all():
        raise CausalInputError(f"{what} must be binary 0/1; found values {np.unique(num)[:5]}; "
                               "recode it (e.g. (y > 0).astype(int))")
    return num


def check_data(name: str, X, w, y, *, allow_nan: bool, min_per_arm: int = 2):
    """Validate one data set; return ``(X float64 (n, d), w float64 (n,), y float64 (n,))``."""
    try:
        X = np.asarray(X, dtype=float)
    except (TypeError, ValueError) as exc:
        raise CausalInputError("X must be numeric; one-hot encode categorical covariates") from exc
    if X.ndim != 2:
        raise CausalInputError(f"X must be two-dimensional (n, d); got shape {X.shape}; "
                               "reshape a single covariate with X.reshape(-1, 1)")
    n = X.shape[0]
    w = _binary(w, "w (the treatment)", n)
    y = _binary(y, "y (the outcome)", n)
    if np.isinf(X).any():
        raise CausalInputError("X has infinite values; replace them (e.g. by NaN for an MIA "
                               "estimator, or by a finite value) first")
    if not allow_nan and np.isnan(X).any():
        raise CausalInputError(
            f"X has missing values, which estimator {name!r} cannot take; impute them first "
            "(e.g. amlib.am.modelers.remediate(frame, 'mean')) or use 'cf-mia' or 'dr-mia', "
            "which split on missingness")
    n1 = int(w.sum())
    if min(n1, n - n1) < min_per_arm:
        raise CausalInputError(
            f"a treatment arm is (nearly) empty: {n - n1} control and {n1} treated rows; "
            f"{name!r} needs at least {min_per_arm} rows in each arm")
    if np.unique(y).size < 2:
        raise CausalInputError("y takes a single value; an ATE needs both outcomes observed")
    return X, w, y


def check_options(name: str, options: dict, defaults: dict) -> dict:
    """Merge ``options`` into ``defaults``; an unknown key is an error naming the allowed ones."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise CausalInputError(f"unknown option(s) {unknown} for estimator {name!r}; "
                               f"allowed: {sorted(defaults)}")
    return {**defaults, **options}
