"""Differentiable proxies f̃(θ, φ) of the modeler's objective (AM paper, Section 3, App. B).

Each proxy turns the attacker's complete features ``X`` (N, d), the masked column indices ``M`` and
the mechanism's pattern probabilities ``probs`` (N, 2^m) into a :class:`WeightedDesign`: one
imputed design matrix per pattern (with an intercept column first) and a weight per pattern and
row, so that

    f̃(θ, φ) = (1/N) Σ_k Σ_i weights[k, i] · J(y_i, ⟨design[k, i], θ⟩)        (eq. 8)

is minimised by the weighted IRLS of :mod:`amlib.am.glm` and differentiated by
:mod:`amlib.am.implicit`.  Everything is differentiable in ``probs``.

- ``"cca"`` — complete-case analysis, eq. 5.1: one design (the complete data) weighted by
  ``p(1|x_i) / P̄(1)`` with ``P̄(1) = N⁻¹ Σ_i p(1|x_i)``.
- ``"mean"`` — mean imputation, eqs. 8–11: a hidden entry of masked column ``j`` becomes
  ``μ̂_j(φ) = Σ_i P(R_j=1|x_i) x_ij / Σ_i P(R_j=1|x_i)`` (Proposition 1).
- ``"regression"`` — conditional mean imputation, App. B eqs. 15–17: a hidden entry of ``j``
  becomes ``⟨[1, x_M̄], β̂_j(φ)⟩`` with β̂_j from least squares of column ``j`` on an intercept and
  the always-observed features, weighted by ``P(R_j=1|x_i)``.  (We add an intercept to App. B's
  regression, as scikit-learn's ``LinearRegression`` in the modeler does.)

:func:`build_design` dispatches by name; :func:`proxy_objective` evaluates f̃ for a given θ.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..glm import add_intercept, get_family
from .mechanisms import observed_marginals, pattern_matrix

__all__ = ["WeightedDesign", "cca_proxy", "mean_proxy", "regression_proxy", "PROXIES",
           "build_design", "proxy_objective", "weighted_mean_imputation",
           "weighted_regression_coefficients"]


@dataclass
class WeightedDesign:
    """``design`` (K, N, p) with the intercept in column 0, ``weights`` (K, N)."""

    design: torch.Tensor
    weights: torch.Tensor


def _check(X: torch.Tensor, masked: list[int], probs: torch.Tensor) -> None:
    if X.dim() != 2:
        raise ValueError(f"X must be (N, d), got shape {tuple(X.shape)}")
    if not torch.isfinite(X).all():
        raise ValueError("the attacker's data X has NaN or infinite entries; the proxies need "
                         "complete data (the adversary hides entries of a complete table)")
    N, d = X.shape
    if len(masked) == 0 or len(set(masked)) != len(masked):
        raise ValueError(f"masked must list distinct column indices, got {masked}")
    if any(j < 0 or j >= d for j in masked):
        raise IndexError(f"masked indices {masked} out of range for {d} features")
    if len(masked) >= d:
        raise ValueError("M covers every feature, so one pattern would hide every column (eq. 8 "
                         "excludes it and regression imputation needs an observed column); keep "
                         "at least one feature always observed")
    if probs.shape != (N, 2 ** len(masked)):
        raise ValueError(f"probs must be (N, 2^|M|) = ({N}, {2 ** len(masked)}), got "
                         f"{tuple(probs.shape)}")


def _imputed_designs(X, masked, fill):
    """(P, N, d+1): for every pattern, masked column j keeps X[:, j] where observed, else fill[:, j]."""
    P = 2 ** len(masked)
    R = pattern_matrix(len(masked), X.dtype).to(X.device)           # (P, m)
    Xm = X[:, masked]                                                # (N, m)
    filled = R[:, None, :] * Xm[None] + (1 - R[:, None, :]) * fill[None]  # (P, N, m)
    full = add_intercept(X).unsqueeze(0).expand(P, -1, -1).clone()
    full[:, :, [j + 1 for j in masked]] = filled                    # column 0 is the intercept
    return full


def cca_proxy(X: torch.Tensor, masked: list[int], probs: torch.Tensor,
             check: bool = True) -> WeightedDesign:
    """Eq. 5.1: the complete rows weighted by ``p(1|x_i)/P̄(1)``."""
    if check:
        _check(X, masked, probs)
    complete = probs[:, -1]
    weights = complete / complete.mean()
    return WeightedDesign(add_intercept(X).unsqueeze(0), weights.unsqueeze(0))


def weighted_mean_imputation(X: torch.Tensor, masked: list[int], probs: torch.Tensor):
    """μ̂_j(φ) of eqs. 9–11 for each masked column, shape (m,)."""
    observed = observed_marginals(probs)                             # (N, m)
    return (observed * X[:, masked]).sum(0) / observed.sum(0)


def mean_proxy(X: torch.Tensor, masked: list[int], probs: torch.Tensor,
             check: bool = True) -> WeightedDesign:
    """Eqs. 8–11: hidden entries replaced by μ̂_j(φ), patterns weighted by p(r|x_i)."""
    if check:
        _check(X, masked, probs)
    mu = weighted_mean_imputation(X, masked, probs)
    fill = mu.unsqueeze(0).expand(X.shape[0], -1)
    return WeightedDesign(_imputed_designs(X, masked, fill), probs.T)


def weighted_regression_coefficients(X: torch.Tensor, masked: list[int], probs: torch.Tensor):
    """β̂_j(φ) of App. B eq. 17 (with intercept), shape (1 + d − m, m), and the regressors A."""
    always = [j for j in range(X.shape[1]) if j not in masked]
    A = add_intercept(X[:, always])                                  # (N, q)
    observed = observed_marginals(probs)                             # (N, m)
    betas = []
    for k, j in enumerate(masked):
        Aw = A * observed[:, k:k + 1]
        gram = Aw.T @ A
        betas.append(torch.linalg.solve(gram, Aw.T @ X[:, j]))
    return torch.stack(betas, dim=1), A


def regression_proxy(X: torch.Tensor, masked: list[int], probs: torch.Tensor,
             check: bool = True) -> WeightedDesign:
    """App. B eqs. 15–17: hidden entries replaced by the weighted least-squares prediction."""
    if check:
        _check(X, masked, probs)
    beta, A = weighted_regression_coefficients(X, masked, probs)
    return WeightedDesign(_imputed_designs(X, masked, A @ beta), probs.T)


PROXIES = {"cca": cca_proxy, "mean": mean_proxy, "regression": regression_proxy}


def build_design(proxy: str, X: torch.Tensor, masked: list[int],
                 probs: torch.Tensor, check: bool = True) -> WeightedDesign:
    """Dispatch to the proxy named ``proxy`` (``"cca"``, ``"mean"`` or ``"regression"``);
    ``check=False`` skips input validation (BLAMM validates its data once)."""
    if proxy not in PROXIES:
        raise ValueError(f"unknown proxy {proxy!r}; use one of {sorted(PROXIES)}")
    return PROXIES[proxy](X, masked, probs, check)


def proxy_objective(theta: torch.Tensor, wd: WeightedDesign, y: torch.Tensor, family,
                    l2: float = 0.0) -> torch.Tensor:
    """f̃(θ, φ) of eq. 8 (or eq. 5.1) for the weighted design ``wd``."""
    family = get_family(family)
    eta = wd.design @ theta
    N = wd.design.shape[1]
    return (wd.weights * family.nll(y, eta)).sum() / N + 0.5 * l2 * theta @ theta
