"""Influence scores of training points on a test set (influence paper, Definition 1, Eqs. 2–3).

Sign convention (used throughout :mod:`amlib.influence`)
---------------------------------------------------------
Koh & Liang's influence of up-weighting z on the test loss is I(z, Z_test) = −G_testᵀ H⁻¹ g_z
(Definition 1 summed over the test set, Eq. 3), with G_test = Σ_j ∇ℓ(z_test_j, θ) and H the
Hessian of the training objective. We report the **value**

    value(z_i) = −I(z_i, Z_test) = G_testᵀ H⁻¹ g_i,

so *higher = more valuable*: up-weighting a high-value point lowers the test loss, removing it
raises the loss by about value/n. Rankings sort values in decreasing order; **rank 0 is the top**
(the original code ranks ``−(H⁻¹ g_val)·g_i`` the same way). For logistic regression this is
Eq. 2: with g_i = (p_i − e_{y_i}) ⊗ [x_i, 1] the value is a bilinear form in the residuals.

Per-sample gradients are never materialised: g_i · s = Σ_k (P − Y)_ik (X S_xᵀ + s_b)_ik, one matrix
product for all n points (:func:`per_sample_grad_dot`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..validation import SeparationError
from .fitting import _separation_message, fit_logistic, is_separated
from .hessian import direction_logits
from .ihvp import InverseHVP
from .models import LogisticModel, NotStationaryWarning
from .solvers import IHVPResult, InverseHVPSolver

__all__ = ["per_sample_grad_dot", "per_sample_gradients", "query_gradient", "values_and_ranks",
           "influence_values", "InfluenceResult", "ranks", "leave_one_out_values",
           "stationarity", "residuals_at", "STATIONARY_RTOL"]

#: relative gradient norm above which θ counts as not stationary (see :func:`stationarity`)
STATIONARY_RTOL = 1e-4


def _grad_dot(model: LogisticModel, X: torch.Tensor, R: torch.Tensor,
              S: torch.Tensor, solver: InverseHVPSolver | None = None) -> torch.Tensor:
    """(n, m): row i, column j = Σ_k R_ik (x_i · S_j[k, :d] + S_j[k, d]) = g_i · S_j for the
    residuals R = P − Y; the direction logits X·S_j come from ``solver`` when it kept them (its
    residual check of S) on this X."""
    U = direction_logits(model, X, S) if solver is None else solver.direction_logits(S, X)
    return (U * R[:, None, :]).sum(dim=2)


def per_sample_grad_dot(model: LogisticModel, theta: torch.Tensor, X, y,
                        S: torch.Tensor, *, solver: InverseHVPSolver | None = None
                        ) -> torch.Tensor:
    """g_i · s for every training point i, without the (n, p) matrix of per-sample gradients.

    ``S`` is one vector (p,) → result (n,), or m vectors (m, p) → result (n, m). ``solver``: an
    inverse-HVP solver built at this θ on this X (e.g. the one that solved S); its probabilities
    are reused for the residuals P − Y instead of another pass over X.
    """
    X, y = model.validate(theta, X, y)
    single = S.ndim == 1
    Sb = (S[None] if single else S).to(X.dtype)
    if Sb.shape[1] != model.n_params:
        raise ValueError(f"S must have {model.n_params} columns, got shape {tuple(S.shape)}")
    R = residuals_at(model, theta, X, y, solver)
    out = _grad_dot(model, X, R, Sb, solver)
    return out[:, 0] if single else out


def residuals_at(model: LogisticModel, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                 solver: InverseHVPSolver | None = None) -> torch.Tensor:
    """(n, K) residuals P − Y at θ; P from ``solver``'s Hessian operator when it was built at this
    θ on this X (:meth:`~amlib.influence.solvers.InverseHVPSolver.cached_at`), else computed."""
    if solver is not None:
        return solver.residuals_at(theta, X, y)
    return model.residuals(theta, X, y)


def per_sample_gradients(model: LogisticModel, theta: torch.Tensor, X, y) -> torch.Tensor:
    """The explicit (n, p) matrix of per-sample gradients g_i = (p_i − y_i) ⊗ [x_i, 1].

    For small n only (audits with a few queries, tests); influence code never builds it.
    """
    X, y = model.validate(theta, X, y)
    R = model.residuals(theta, X, y)
    A = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)], 1) \
        if model.bias else X
    return (R[:, :, None] * A[:, None, :]).reshape(X.shape[0], -1)


def query_gradient(model: LogisticModel, theta: torch.Tensor, X_query, y_query) -> torch.Tensor:
    """G = Σ_j ∇_θ ℓ(z_j, θ) over the query (test) points (a sum, as in Eq. 3; no L2 term)."""
    X_query, y_query = model.validate(theta, X_query, y_query, name="_test")
    return model.gradient_from_residuals(model.residuals(theta, X_query, y_query), X_query)


def test_gradient(model: LogisticModel, theta: torch.Tensor, X_test, y_test) -> torch.Tensor:
    """Deprecated name of :func:`query_gradient` (pytest collects ``test_*`` names), kept while
    code outside this package still imports it; not in ``__all__``."""
    warnings.warn("amlib.influence.scores.test_gradient is deprecated: use query_gradient",
                  DeprecationWarning, stacklevel=2)
    return query_gradient(model, theta, X_test, y_test)


test_gradient.__test__ = False   # never collected as a test where it is imported


def stationarity(model: LogisticModel, theta: torch.Tensor, X, y) -> tuple[float, float]:
    """(‖∇R(θ)‖, the same relative to mean_i ‖g_i‖ + l2‖θ‖) — how far θ is from being θ*."""
    R = model.residuals(theta, X, y)
    grad = model.gradient_from_residuals(R, X) / X.shape[0] + model.l2 * theta
    row = (X * X).sum(dim=1) + float(model.bias)
    typical = float((R.norm(dim=1) * row.sqrt()).mean()) + model.l2 * float(theta.norm())
    gnorm = float(grad.norm())
    return gnorm, gnorm / max(typical, 1e-300)


@dataclass
class InfluenceResult:
    """Influence at θ: ``values`` (n,) = G_testᵀ H⁻¹ g_i (or (n, m), one column per query
    gradient), ``s_test`` = H⁻¹ G_test, the solver's report, G_test itself (``test_grad``),
    ‖∇R(θ)‖ when checked, and the ``solver`` (at θ on the training features; reusable)."""

    values: torch.Tensor
    s_test: torch.Tensor
    ihvp_info: IHVPResult
    test_grad: torch.Tensor
    grad_norm: float = float("nan")
    solver: InverseHVPSolver | None = field(default=None, repr=False)

    def ranks(self) -> torch.Tensor:
        """:func:`ranks` of the values (column by column for several queries)."""
        if self.values.ndim == 1:
            return ranks(self.values)
        return torch.stack([ranks(self.values[:, j]) for j in range(self.values.shape[1])], 1)


def _keeps_float32(theta: torch.Tensor, X, solver_opts: dict) -> bool:
    """Float32 features, a float64 θ and ``rtol``: the refined solver iterates on these very
    features and evaluates its float64 residuals a block of rows at a time, so they are not
    converted (no float64 copy of X; the values are still float64, from the solver's float64
    pass)."""
    return (solver_opts.get("rtol") is not None and isinstance(X, torch.Tensor)
            and X.dtype == torch.float32 and theta.dtype == torch.float64)


def values_and_ranks(model: LogisticModel, theta: torch.Tensor, X, y, X_query=None,
                     y_query=None, *, query_grad: torch.Tensor | None = None,
                     solver: InverseHVPSolver | None = None, x0: torch.Tensor | None = None,
                     method: str = "cg", damping: float = 0.0,
                     **solver_opts) -> InfluenceResult:
    """value(z_i) = Gᵀ (H(θ) + δI)⁻¹ g_i for every training point at θ, and their ranks.

    The one place where influence values are computed (Definition 1, Eq. 3; the sign convention
    of this module): scores, the attacks' rankings, the audit's honest calculator, Theorem 1's
    search and the fairness reweighing all call it. The query is either points
    (``X_query``, ``y_query``: G = their summed loss gradient, :func:`query_gradient`) or
    gradients ``query_grad`` (p,) or (m, p) (the values then have one column per row).
    ``solver``: an inverse-HVP solver already built at this θ on this X (its probabilities and
    the direction logits of its solutions are reused); else one is built with ``method``,
    ``damping`` and ``solver_opts`` (see :func:`~amlib.influence.ihvp.InverseHVP`). ``x0``
    warm-starts CG. No stationarity check (see :func:`influence_values`). The ranks come from
    ``result.ranks()`` (0 = most valuable).
    """
    keep32 = solver is None and _keeps_float32(theta, X, solver_opts)
    X, y = model.validate(theta.float() if keep32 else theta, X, y)
    theta = theta.detach()
    if query_grad is None:
        if X_query is None or y_query is None:
            raise ValueError("give the query points (X_query, y_query) or their gradient "
                             "query_grad")
        G = query_gradient(model, theta, X_query, y_query)
    else:
        G = torch.as_tensor(query_grad).detach().to(device=X.device,
                                                    dtype=theta.dtype if keep32 else X.dtype)
    if solver is None:
        solver = InverseHVP(model, theta, X, method=method, damping=damping, **solver_opts)
    info = solver.solve(G, x0=x0)
    S = info.solution
    with torch.no_grad():
        values = _grad_dot(model, X, solver.residuals_at(theta, X, y),
                           S[None] if S.ndim == 1 else S, solver)
    return InfluenceResult(values[:, 0] if S.ndim == 1 else values, S, info, G, solver=solver)


def influence_values(model: LogisticModel, theta: torch.Tensor, X, y, X_test, y_test, *,
                     method: str = "cg", damping: float = 0.0, x0: torch.Tensor | None = None,
                     check_stationary: bool = True, stationary_rtol: float = STATIONARY_RTOL,
                     **solver_opts) -> InfluenceResult:
    """value(z_i) = G_testᵀ (H + δI)⁻¹ g_i for all training points (Definition 1, Eq. 3).

    :func:`values_and_ranks` on the test points, after checking that θ is stationary: with
    ``check_stationary`` a :class:`NotStationaryWarning` is emitted when ‖∇R(θ)‖ relative to the
    typical per-sample gradient exceeds ``stationary_rtol`` (influence functions assume θ = θ*);
    the attacks, which evaluate influence at manipulated θ on purpose, turn the check off.
    ``method`` ``"exact"``, ``"cg"`` or ``"lissa"`` and ``solver_opts`` go to
    :func:`~amlib.influence.ihvp.InverseHVP`; ``x0`` warm-starts CG. ``rtol=...`` (with CG,
    l2 + damping > 0) asks for a solution within that relative error instead of a fixed ``tol``:
    the solver picks the precision (float32 iterations refined with float64 residuals for
    rtol ≥ 1e-5, float64 CG below) and stops on the error bound itself;
    ``ihvp_info.relative_residual`` is the achieved float64 residual and
    ``ihvp_info.extra["error_bound"]`` the proven bound
    (:class:`~amlib.influence.refinement.RefinedCGSolver`).
    """
    keep32 = _keeps_float32(theta, X, solver_opts)
    X, y = model.validate(theta.float() if keep32 else theta, X, y)
    X_test, y_test = model.validate(theta, X_test, y_test, name="_test")
    gnorm = float("nan")
    if check_stationary:
        # with float32 features kept as they are, the check runs in float32 (θ rounded to
        # float32 moves ‖∇R‖ by about 1e-7 relative, far below stationary_rtol)
        th = theta.detach().float() if keep32 else theta.detach()
        if is_separated(model, th, X, y):
            raise SeparationError(_separation_message(theta.detach()))
        gnorm, rel = stationarity(model, th, X, y)
        if rel > stationary_rtol:
            warnings.warn(
                f"θ is not a stationary point of the training objective: ‖∇R(θ)‖ = {gnorm:.3g} "
                f"({rel:.2g} relative to the typical per-sample gradient > {stationary_rtol:g}). "
                "Influence functions assume θ = θ* (Definition 1); fit with fit_logistic(...) to "
                "convergence, or pass check_stationary=False if this is intended (e.g. an "
                "attacked model or the SGD recipe).", NotStationaryWarning, stacklevel=2)
    result = values_and_ranks(model, theta, X, y, X_test, y_test, x0=x0, method=method,
                              damping=damping, **solver_opts)
    result.grad_norm = gnorm
    return result


def ranks(values) -> torch.Tensor:
    """Rank of every point when values are sorted in decreasing order: 0 = most valuable.

    Ties are broken by index (the lower index ranks first)."""
    v = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values)
    if v.ndim != 1:
        raise ValueError(f"values must be a 1-D vector, got shape {tuple(v.shape)}")
    if not bool(torch.isfinite(v).all()):
        raise ValueError("values contain NaN or inf; check the inverse-HVP solve (residual)")
    order = torch.sort(-v.detach(), stable=True).indices
    out = torch.empty_like(order)
    out[order] = torch.arange(len(v), device=order.device)
    return out


def leave_one_out_values(model: LogisticModel, X, y, X_test, y_test, *,
                         theta: torch.Tensor | None = None, indices=None,
                         tol: float | None = None, max_iter: int = 100) -> np.ndarray:
    """The actual change of the summed test loss when training point i is removed and the model
    refit: ΔL_i = Σ_j ℓ(z_test_j, θ*_{−i}) − Σ_j ℓ(z_test_j, θ*).

    Same sign convention as :func:`influence_values`: removing a valuable point raises the test
    loss, and the influence approximation predicts **ΔL_i ≈ value_i / n**. "Removed" means the
    objective (1/n) Σ_{j≠i} ℓ_j + (l2/2)‖θ‖² — weight 0 for point i with n and l2 unchanged —,
    the exact counterpart of up-weighting by ε = −1/n. Each refit is a Newton solve warm-started
    at θ* (``theta``; fitted here when omitted). ``indices``: the points to remove (default all).
    """
    X, y = model.validate(None, X, y)
    X_test, y_test = model.validate(None, X_test, y_test, name="_test")
    n = X.shape[0]
    common = dict(n_classes=model.n_classes, bias=model.bias, l2=model.l2, tol=tol,
                  max_iter=max_iter, dtype=X.dtype)
    if theta is None:
        theta = fit_logistic(X, y, **common).theta
    theta = theta.detach().to(X.dtype)
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=int).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(f"indices must lie in 0..{n - 1}")
    with torch.no_grad():
        base = float(model.loss(theta, X_test, y_test, "sum"))
    out = np.empty(len(idx))
    for j, i in enumerate(idx):
        w = torch.ones(n, dtype=X.dtype, device=X.device)
        w[i] = 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("error", NotStationaryWarning)
            refit = fit_logistic(X, y, sample_weight=w, theta0=theta, **common)
        with torch.no_grad():
            out[j] = float(model.loss(refit.theta, X_test, y_test, "sum")) - base
    return out
