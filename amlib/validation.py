"""Typed errors for bad input, and the checks that raise them, shared by the whole library.

Every check names the argument, the value it got and what to pass instead.

- :class:`InvalidParameterError` (a ``ValueError``) — a number outside its range, NaN or ±inf,
  a non-integral epoch count, a repeated name;
- :class:`InvalidParameterTypeError` (a ``TypeError``) — a string where a number is needed;
- :class:`InvalidDataError` (a ``ValueError``) — a table with no rows, too few rows, ±inf
  entries, a constant feature, or a response outside the model's support;
- :class:`SeparationError` (a ``ValueError``) — binary data that a hyperplane separates
  perfectly, so the unpenalised logistic MLE does not exist (its coefficients run off to
  infinity); :func:`separating_direction` detects it with a linear program;
- :class:`SeparationWarning` — the same, where the caller asked for a warning.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["InvalidParameterError", "InvalidParameterTypeError", "InvalidDataError",
           "SeparationError",
           "SeparationWarning", "check_number", "check_count", "check_unique",
           "separating_direction"]


class InvalidParameterError(ValueError):
    """A parameter has a value outside its allowed range (or NaN/inf, or a repeated entry)."""


class InvalidParameterTypeError(TypeError):
    """A parameter has the wrong type (for instance a string where a number is needed)."""


class InvalidDataError(ValueError):
    """The data cannot be fitted as given (no rows, infinite entries, a constant feature, ...)."""


class SeparationError(ValueError):
    """The 0/1 response is perfectly separated by the features: no finite MLE exists.

    ``columns`` names the features with a non-zero weight in the separating direction found.
    """

    def __init__(self, message: str, columns=()):
        super().__init__(message)
        self.columns = list(columns)


class SeparationWarning(UserWarning):
    """The 0/1 response is perfectly separated by the features (see :class:`SeparationError`)."""


def check_number(name: str, value, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, fix: str = "") -> float:
    """``value`` as a finite float within ``[low, high]`` (open ends with ``*_open``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InvalidParameterTypeError(f"{name} must be a real number, got {value!r} "
                                        f"({type(value).__name__}){'; ' + fix if fix else ''}")
    value = float(value)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or below or above:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        raise InvalidParameterError(f"{name} must be a finite number{' ' + bounds if bounds else ''}"
                                    f", got {value!r}{'; ' + fix if fix else ''}")
    return value


def check_count(name: str, value, minimum: int = 1) -> int:
    """``value`` as an ``int >= minimum``; floats only when integral (2.0, not 2.7)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InvalidParameterTypeError(f"{name} must be an integer, got {value!r} "
                                        f"({type(value).__name__}); pass e.g. {name}=10")
    if not isinstance(value, numbers.Integral) and not (math.isfinite(value)
                                                        and float(value).is_integer()):
        raise InvalidParameterError(f"{name} must be a whole number, got {value!r}; pass "
                                    f"{name}={math.ceil(value) if math.isfinite(value) else 10}")
    if int(value) < minimum:
        raise InvalidParameterError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def check_unique(name: str, values) -> list:
    """``values`` as a list, refusing repeated entries."""
    values = list(values)
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise InvalidParameterError(f"{name} lists {repeated} more than once; list each "
                                    "entry once")
    return values


def separating_direction(X, y, weights=None, *, complete: bool = False,
                         tol: float = 1e-7) -> np.ndarray | None:
    """A direction ``β`` with ``(2y − 1)·xᵢᵀβ ≥ 0`` for every row and ``> 0`` for some, or ``None``.

    Such a β exists exactly when the 0/1 response is completely or quasi-completely separated by
    the columns of ``X`` (include the intercept column), i.e. when the logistic log-likelihood
    keeps increasing along β and has no finite maximiser (Albert & Anderson, 1984).  Solved as
    the linear program ``max Σᵢ sᵢ xᵢᵀβ`` subject to ``sᵢ xᵢᵀβ ≥ 0`` and ``|β_j| ≤ 1``, with
    ``sᵢ = 2yᵢ − 1``; ``X`` may be (N, p) or (K, N, p) with ``weights`` (K, N) (rows with zero
    weight do not count).  Columns are scaled to unit maximum first.  ``complete=True`` asks
    for complete separation only (every margin ``> 0``: no row is fitted with probability
    strictly between 0 and 1), solved as ``max t`` subject to ``sᵢ xᵢᵀβ ≥ t``, ``t ≤ 1``.
    """
    from scipy.optimize import linprog

    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim == 3:
        K = X.shape[0]
        w = np.ones(X.shape[:2]) if weights is None else np.asarray(weights, float).reshape(K, -1)
        keep = w.reshape(-1) > 0
        X = X.reshape(-1, X.shape[-1])[keep]
        y = np.tile(y, K)[keep]
    elif weights is not None:
        keep = np.asarray(weights, float).reshape(-1) > 0
        X, y = X[keep], y[keep]
    if X.shape[0] == 0:
        return None
    scale = np.abs(X).max(axis=0)
    scale[scale == 0] = 1.0
    A = (2 * y - 1)[:, None] * (X / scale)
    if complete:
        n, p = A.shape
        result = linprog(np.r_[np.zeros(p), -1.0], A_ub=np.c_[-A, np.ones(n)],
                         b_ub=np.zeros(n), bounds=[(-1, 1)] * p + [(None, 1)], method="highs")
        if result.status != 0 or -result.fun <= tol:
            return None
        return result.x[:p] / scale
    result = linprog(-A.sum(axis=0), A_ub=-A, b_ub=np.zeros(len(A)),
                     bounds=[(-1, 1)] * A.shape[1], method="highs")
    if result.status != 0 or -result.fun <= tol:
        return None
    beta = result.x / scale
    margins = A @ result.x
    if margins.min() < -tol or margins.max() <= tol:
        return None
    return beta
