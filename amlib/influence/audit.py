"""Auditing an influence calculator by supplying test data (influence paper, App. A.0.1).

For a fixed model θ and training set, honest influence scores are *linear* in the test gradient:
value(z_i; q) = qᵀ H⁻¹ g_i for a test gradient q, i.e. the scores of q queries stacked as rows
of Q (q × p) are Q·B with the fixed p × n matrix B = H⁻¹[g_1 … g_n]. An auditor who knows the
model (it is published) but not the training data can therefore

1. query p test gradients that span R^p (rows of Q, rank p), collect the scores M (p × n);
2. solve Q·B = M for the implied linear map B;
3. query fresh test gradients Q' and check that the returned scores equal Q'·B.

A calculator that makes up its numbers — for example returns the ranking it wants, or edits a
few scores after computing them honestly — breaks the linearity and fails step 3. What the audit
cannot see: a calculator that applies *some other* fixed linear map (e.g. honest scores of a
manipulated model θ', which is exactly the paper's threat model, or scores multiplied by a fixed
matrix) passes, because the check only establishes linearity in the query. That is why the
paper's attacks manipulate the model rather than the reported numbers.

Queries here are test gradients directly (``score_fn(Q) → scores``); for logistic regression the
gradient of a test point (x, y) is (p(x) − e_y) ⊗ [x, 1]
(:func:`~amlib.influence.scores.per_sample_gradients` turns test points into queries).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .ihvp import InverseHVP
from .models import LogisticModel
from .scores import values_and_ranks

__all__ = ["AuditReport", "audit_influence_calculator", "honest_score_fn"]


@dataclass
class AuditReport:
    """``passed`` when every check query's scores match the implied linear map within ``rtol``
    (relative error ‖returned − predicted‖/‖predicted‖ per query); ``implied_map`` is B (p × n)."""

    passed: bool
    max_rel_error: float
    rel_errors: np.ndarray
    n_queries: int
    n_checks: int
    rank: int
    rtol: float
    implied_map: torch.Tensor = field(repr=False, default=None)


def _call(score_fn, Q: torch.Tensor, n_expected: int | None) -> torch.Tensor:
    out = score_fn(Q)
    out = torch.as_tensor(out.detach() if isinstance(out, torch.Tensor) else np.asarray(out))
    out = out.to(device=Q.device, dtype=Q.dtype)
    if out.ndim != 2 or out.shape[0] != Q.shape[0]:
        raise ValueError(f"score_fn must return one row of scores per query: got shape "
                         f"{tuple(out.shape)} for {Q.shape[0]} queries")
    if n_expected is not None and out.shape[1] != n_expected:
        raise ValueError(f"score_fn returned {out.shape[1]} scores per query, earlier "
                         f"{n_expected}")
    if not bool(torch.isfinite(out).all()):
        raise ValueError("score_fn returned non-finite scores")
    return out


def _query_matrix(queries, p: int, dtype: torch.dtype, name: str) -> torch.Tensor:
    """Queries given by the caller as a (q, p) tensor of ``dtype``; other shapes raise."""
    Q = torch.as_tensor(queries).to(dtype)
    if Q.ndim != 2 or Q.shape[1] != p:
        raise ValueError(f"{name} must be (q, {p}), got {tuple(Q.shape)}")
    return Q


def audit_influence_calculator(score_fn: Callable, n_params: int, *, n_checks: int = 5,
                               seed: int = 0, rtol: float = 1e-6, basis: str = "random",
                               queries: torch.Tensor | None = None,
                               check_queries: torch.Tensor | None = None, subspace: bool = False,
                               dtype: torch.dtype = torch.float64) -> AuditReport:
    """The audit of App. A.0.1: fit the implied linear map on spanning queries, then test it.

    ``score_fn(Q)`` maps test gradients Q (q × p) to scores (q × n). ``basis``: ``"identity"``
    (the p unit vectors) or ``"random"`` (a Gaussian p × p matrix, seeded); or give ``queries``
    (q ≥ p rows of rank p, e.g. gradients of real test points) and ``check_queries``;
    ``subspace=True`` accepts queries of rank r < p and audits the map on their span (multiclass
    test gradients have zero class-sum, so they span at most p − (d + bias) dimensions; the
    check queries must then lie in that span). ``rtol``:
    honest scores from an exact solver match to ~1e-12; an iterative solver is only linear up to
    its tolerance, so use a ``rtol`` above that tolerance (LiSSA with a fixed seed is exactly
    linear).
    """
    p = int(n_params)
    if p < 1:
        raise ValueError("n_params must be >= 1")
    gen = torch.Generator().manual_seed(int(seed))
    if queries is None:
        if basis == "identity":
            Q = torch.eye(p, dtype=dtype)
        elif basis == "random":
            Q = torch.randn(p, p, generator=gen, dtype=dtype)
        else:
            raise ValueError(f"unknown basis {basis!r}; use 'identity' or 'random'")
    else:
        Q = _query_matrix(queries, p, dtype, "queries")
    U, sv, Vh = torch.linalg.svd(Q, full_matrices=False)
    rank = int((sv > sv[0] * max(Q.shape) * torch.finfo(dtype).eps).sum()) if sv.numel() else 0
    if rank < p and not subspace:
        raise ValueError(f"the queries span only {rank} of the {p} parameter dimensions; the "
                         "implied linear map is not identifiable — add queries (App. A.0.1 "
                         "needs rank p), or pass subspace=True to audit on their span (e.g. "
                         "multiclass test gradients, which never leave the range of H)")
    M = _call(score_fn, Q, None)
    # B = Q⁺M from the rank-r SVD (minimum norm on span(Q) when r < p)
    B = Vh[:rank].T @ ((U[:, :rank].T @ M) / sv[:rank, None])          # p × n
    if check_queries is None:
        if n_checks < 1:
            raise ValueError("n_checks must be >= 1")
        Q2 = torch.randn(n_checks, p, generator=gen, dtype=dtype)
    else:
        Q2 = _query_matrix(check_queries, p, dtype, "check_queries")
    if rank < p:   # the map is only identified on span(Q): checks must stay inside it
        basis_r = Vh[:rank]                                  # orthonormal rows spanning Q
        outside = (Q2 - (Q2 @ basis_r.T) @ basis_r).norm(dim=1) / Q2.norm(dim=1).clamp_min(1e-300)
        if float(outside.max()) > 1e-8:
            raise ValueError("with subspace=True the check queries must lie in the span of the "
                             f"queries (relative distance {float(outside.max()):.2g}); give "
                             "check_queries from the same family (e.g. other test points)")
    got = _call(score_fn, Q2, M.shape[1])
    predicted = Q2 @ B
    denom = predicted.norm(dim=1).clamp_min(torch.finfo(dtype).tiny)
    rel = ((got - predicted).norm(dim=1) / denom).numpy()
    worst = float(rel.max())
    return AuditReport(worst <= rtol, worst, rel, Q.shape[0], Q2.shape[0], rank, rtol, B)


def honest_score_fn(model: LogisticModel, theta: torch.Tensor, X, y, *, method: str = "exact",
                    damping: float = 0.0, **solver_opts) -> Callable:
    """An honest calculator: Q (q × p) → values Q H⁻¹ g_i (q × n) for the model θ on (X, y).

    The solver is built once (one factorisation for ``"exact"``) and reused for every query.
    """
    X, y = model.validate(theta, X, y)
    theta = theta.detach()
    solver = InverseHVP(model, theta, X, method=method, damping=damping, **solver_opts)

    def score(Q: torch.Tensor) -> torch.Tensor:
        Q = torch.as_tensor(Q).to(device=X.device, dtype=X.dtype)
        Q = Q if Q.ndim == 2 else Q[None]
        return values_and_ranks(model, theta, X, y, query_grad=Q, solver=solver).values.T  # (q, n)

    return score
