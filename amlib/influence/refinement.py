"""Inverse HVPs to a requested accuracy: float32 CG inside, float64 residuals outside.

:class:`RefinedCGSolver` solves (H + shift·I) s = v (shift = l2 + δ > 0) so that the relative
error of every solution is at most ``rtol``, and proves it from the residual:

    ‖s − s*‖ = ‖(H + shift·I)⁻¹ r‖ ≤ ‖r‖ / λ_min,      λ_min ≥ shift,

so with E = ‖r‖/shift the relative error satisfies ‖s − s*‖/‖s*‖ ≤ E / (‖s‖ − E) — the
``error_bound`` reported with every solve (``IHVPResult.extra``). The residual r = v − (H +
shift·I)s is always evaluated in float64 (on a float64 copy of features stored in float32), while
the work — the conjugate-gradient iterations — runs on a float32 copy of the
operator, at about half the cost of float64 products. This is mixed-precision iterative
refinement: each round solves the float32 system for the current residual, adds the correction
in float64 and recomputes the residual in float64, until the bound is below ``rtol``. Each
round's inner tolerance is chosen from what the bound still needs (never below float32's reach,
1e-5); when a round fails to halve the residual (float32 cannot resolve the system: roughly
condition number × 6e-8 ≳ 1), the remaining rounds run CG in float64.

The values g_iᵀs computed from such an s differ from the exact ones by g_iᵀ(s − s*): at most
‖g_i‖·rtol·‖s*‖ for every point, and in practice about rtol relative (tested against the float64
exact solution for condition numbers from 10 to 10⁵).
"""
from __future__ import annotations

import math

import torch

from .hessian import HessianOperator
from .models import LogisticModel
from .preconditioners import FeatureGram, make_preconditioner, normalise_precondition
from .solvers import InverseHVPSolver, conjugate_gradient

__all__ = ["RefinedCGSolver", "FLOAT32_TOL"]

#: the smallest relative residual asked of a float32 inner solve
FLOAT32_TOL = 1e-5


class RefinedCGSolver(InverseHVPSolver):
    """CG to a requested relative error ``rtol`` of the solution, float32 inside (see module).

    ``precondition``/``gram`` as for :class:`~amlib.influence.solvers.CGSolver` (applied to the
    inner float32 solves); ``max_rounds`` bounds the refinement rounds and ``max_iter`` the CG
    iterations of each. Needs l2 + damping > 0: the smallest eigenvalue is what turns a residual
    into an error bound. ``IHVPResult.iterations`` counts the inner CG iterations of all rounds;
    ``extra`` holds ``error_bound``, ``rounds``, ``precision`` (the inner precision of the last
    round) and ``converged``.
    """

    method = "cg"

    def __init__(self, model: LogisticModel, theta: torch.Tensor, X: torch.Tensor, *,
                 rtol: float, damping: float = 0.0,
                 sample_weight: torch.Tensor | None = None,
                 precondition: bool | str | None = False, gram: FeatureGram | None = None,
                 max_rounds: int = 20, max_iter: int | None = None):
        if not (0 < rtol < 1):
            raise ValueError(f"rtol must lie in (0, 1), got {rtol}")
        shift = float(model.l2) + float(damping)
        if not shift > 0:
            raise ValueError("rtol needs l2 + damping > 0: the error bound ‖r‖/λ_min uses "
                             "λ_min ≥ l2 + damping; give the model an L2 penalty or pass "
                             "damping > 0 (or use a fixed tol without rtol)")
        precondition = normalise_precondition(precondition)
        X64 = X if X.dtype == torch.float64 else X.double()
        super().__init__(model, theta.detach().double(), X64, damping=damping,
                         sample_weight=None if sample_weight is None else sample_weight.double())
        self.rtol, self.max_rounds = float(rtol), int(max_rounds)
        self.max_iter = 1000 if max_iter is None else int(max_iter)
        self.precondition = precondition
        X32 = X if X.dtype == torch.float32 else X.float()
        self.inner = HessianOperator(model, theta.detach().float(), X32, damping=damping,
                                     sample_weight=None if sample_weight is None
                                     else sample_weight.float())
        self.inner_preconditioner = make_preconditioner(precondition, self.inner, gram)
        self._preconditioner64 = None   # for float64 rounds, built on first use
        self.features = X   # as the caller stores them: the values are computed on this tensor

    def _bound(self, S: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """Per right-hand side, the relative-error bound E/(‖s‖ − E), E = ‖r‖/shift."""
        E = R.norm(dim=1) / self.operator.shift
        room = S.norm(dim=1) - E
        bound = torch.where(room > 0, E / room.clamp_min(1e-300), torch.full_like(E, math.inf))
        return torch.where(E == 0, torch.zeros_like(E), bound)   # r = 0: s is exact

    def _solve(self, V, x0):
        op, shift = self.operator, self.operator.shift
        S = torch.zeros_like(V) if x0 is None else x0.clone()
        R = V - op.matvec(S) if x0 is not None else V.clone()
        bound = self._bound(S, R)
        iters, rounds, precision = 0, 0, "float32"
        while float(bound.max()) > self.rtol and rounds < self.max_rounds:
            rounds += 1
            rnorm = R.norm(dim=1)
            # the residual the bound needs: ‖r‖ ≤ shift·rtol·‖s‖/(1 + rtol); before the first
            # round ‖s‖ ≥ ‖v‖/λ_max is unknown, so aim at rtol itself
            snorm = S.norm(dim=1)
            need = torch.where(snorm > 0, shift * self.rtol * snorm / (1 + self.rtol),
                               self.rtol * rnorm)
            ratio = float((need / rnorm.clamp_min(1e-300)).min())
            if precision == "float32":
                # solve for the unit-norm residuals (no float32 underflow), scale back in float64
                unit = torch.where(rnorm > 0, rnorm, torch.ones_like(rnorm))[:, None]
                tol = min(max(0.5 * ratio, FLOAT32_TOL), 0.1)
                D, info = conjugate_gradient(self.inner.matvec, (R / unit).float(), tol=tol,
                                             max_iter=self.max_iter,
                                             precond_fn=self.inner_preconditioner)
                D = D.double() * unit
            else:
                D, info = conjugate_gradient(op.matvec, R, tol=max(0.5 * ratio, 1e-15),
                                             max_iter=self.max_iter,
                                             precond_fn=self.float64_preconditioner())
            iters += info["iterations"]
            S = S + D
            R_new = V - op.matvec(S)
            if precision == "float32" and float((R_new.norm(dim=1) / rnorm.clamp_min(1e-300))
                                                .max()) > 0.5:
                precision = "float64"      # float32 cannot resolve this system any further
            R = R_new
            bound = self._bound(S, R)
        return S, iters, {"error_bound": float(bound.max()), "rounds": rounds,
                          "precision": precision, "rtol": self.rtol,
                          "precondition": self.precondition}

    def float64_preconditioner(self):
        """The preconditioner for float64 rounds (built on first use)."""
        if self._preconditioner64 is None and self.precondition is not None:
            self._preconditioner64 = make_preconditioner(self.precondition, self.operator)
        return self._preconditioner64

    def _check(self, relative_residual, extra):
        extra["converged"] = extra["error_bound"] <= self.rtol
