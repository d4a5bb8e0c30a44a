"""Inverse HVPs to a requested accuracy: the precision and the tolerance chosen from ``rtol``.

:class:`RefinedCGSolver` solves (H + shift·I) s = v (shift = l2 + δ > 0) so that the relative
error of every solution is at most ``rtol``, and proves it from the residual:

    ‖s − s*‖ = ‖(H + shift·I)⁻¹ r‖ ≤ ‖r‖ / λ_min,      λ_min ≥ shift,

so with E = ‖r‖/shift the relative error satisfies ‖s − s*‖/‖s*‖ ≤ E / (‖s‖ − E) — the
``error_bound`` reported with every solve (``IHVPResult.extra``). The residual r = v − (H +
shift·I)s is always evaluated in float64; features stored in float32 are converted a block of
rows at a time (:class:`~amlib.influence.hessian.Float64Rows`), never copied whole.
CG stops as soon as its own residual meets that bound for its current iterate (no fixed
tolerance to guess), and the true float64 residual then confirms it.

Where the iterations run depends on ``rtol``:

- ``rtol ≥`` :data:`FLOAT32_MIN_RTOL` (1e-5): on a float32 copy of the operator, at about half
  the cost of float64 products — mixed-precision iterative refinement: each round solves the
  float32 system for the current residual, adds the correction in float64 and recomputes the
  residual in float64, until the bound is met (usually after one round). When a round fails to
  halve the residual (float32 cannot resolve the system: roughly condition number × 6e-8 ≳ 1),
  the remaining rounds run in float64.
- below it, CG runs in float64 from the start: each float32 round reaches only about 1e-5, and
  the restarts cost more iterations than the cheaper products save (measured with an earlier
  version of this solver at rtol 1e-8: 401 float32 iterations against 326 in float64).

The values g_iᵀs computed from such an s differ from the exact ones by g_iᵀ(s − s*): at most
‖g_i‖·rtol·‖s*‖ for every point, and in practice about rtol relative (tested against the float64
exact solution for condition numbers from 10 to 10⁵).
"""
from __future__ import annotations

import math

import torch

from .hessian import Float64Rows, HessianOperator
from .models import LogisticModel
from .preconditioners import (FeatureGram, make_preconditioner, normalise_precondition,
                              preconditioner_name)
from .solvers import InverseHVPSolver, conjugate_gradient

__all__ = ["RefinedCGSolver", "FLOAT32_TOL", "FLOAT32_MIN_RTOL", "PRECISIONS"]

#: the smallest relative residual asked of a float32 inner solve
FLOAT32_TOL = 1e-5
#: the smallest ``rtol`` for which ``precision="auto"`` iterates in float32
FLOAT32_MIN_RTOL = 1e-5
#: values of ``precision=``
PRECISIONS = ("auto", "float32", "float64")
#: CG stops when its recursive residual is this fraction of what the bound needs (the true
#: residual drifts from the recursive one, and float32 rounding adds to it)
SAFETY = 0.5


class RefinedCGSolver(InverseHVPSolver):
    """CG to a requested relative error ``rtol`` of the solution (see the module).

    ``precision``: "auto" (float32 iterations refined in float64 when ``rtol`` ≥
    :data:`FLOAT32_MIN_RTOL`, float64 CG below), "float32" or "float64" to force one.
    ``precondition``/``gram`` as for :class:`~amlib.influence.solvers.CGSolver` ("auto" picks
    K-FAC only above the measured condition-number crossover); ``max_rounds`` bounds the
    refinement rounds and ``max_iter`` the CG iterations of each. Needs l2 + damping > 0: the
    smallest eigenvalue is what turns a residual into an error bound.
    ``IHVPResult.iterations`` counts the CG iterations of all rounds; ``extra`` holds
    ``error_bound``, ``rounds``, ``precision`` (the precision of the last round),
    ``float32_iterations``, ``float64_iterations``, ``precondition`` (the one used) and
    ``converged``.
    """

    method = "cg"

    def __init__(self, model: LogisticModel, theta: torch.Tensor, X: torch.Tensor, *,
                 rtol: float, damping: float = 0.0,
                 sample_weight: torch.Tensor | None = None,
                 precondition: bool | str | None = False, gram: FeatureGram | None = None,
                 precision: str = "auto", max_rounds: int = 20, max_iter: int | None = None):
        if not (0 < rtol < 1):
            raise ValueError(f"rtol must lie in (0, 1), got {rtol}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
        shift = float(model.l2) + float(damping)
        if not shift > 0:
            raise ValueError("rtol needs l2 + damping > 0: the error bound ‖r‖/λ_min uses "
                             "λ_min ≥ l2 + damping; give the model an L2 penalty or pass "
                             "damping > 0 (or use a fixed tol without rtol)")
        precondition = normalise_precondition(precondition)
        if precision == "auto":
            precision = "float32" if float(rtol) >= FLOAT32_MIN_RTOL else "float64"
        # float32 iterations need float64 products only for the residuals: those convert the
        # float32 features a block of rows at a time (no float64 copy of X); float64 CG, which
        # runs every product in float64, converts them once
        X64 = (X if X.dtype == torch.float64
               else Float64Rows(X) if precision == "float32" else X.double())
        super().__init__(model, theta.detach().double(), X64, damping=damping,
                         sample_weight=None if sample_weight is None else sample_weight.double())
        self.rtol, self.max_rounds = float(rtol), int(max_rounds)
        self.max_iter = 1000 if max_iter is None else int(max_iter)
        self.precondition, self.gram = precondition, gram
        self.precision = precision
        self.features = X   # as the caller stores them: the values are computed on this tensor
        self.inner, self.inner_preconditioner = None, None
        if precision == "float32":
            # the float32 copy reuses the float64 logits: no second pass over X at θ
            X32 = X if X.dtype == torch.float32 else X.float()
            self.inner = HessianOperator(model, theta.detach().float(), X32, damping=damping,
                                         sample_weight=None if sample_weight is None
                                         else sample_weight.float(),
                                         logits=self.operator.logits)
            self.inner_preconditioner = make_preconditioner(precondition, self.inner, gram,
                                                            features=X)
        self._preconditioner64 = None   # for float64 rounds, built on first use
        self._last = None               # (S, true residual R) of the last round

    def _bound(self, S: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """Per right-hand side, the relative-error bound E/(‖s‖ − E), E = ‖r‖/shift."""
        E = R.norm(dim=1) / self.operator.shift
        room = S.norm(dim=1) - E
        bound = torch.where(room > 0, E / room.clamp_min(1e-300), torch.full_like(E, math.inf))
        return torch.where(E == 0, torch.zeros_like(E), bound)   # r = 0: s is exact

    def _stop_rule(self, S: torch.Tensor, rnorm: torch.Tensor, unit: torch.Tensor, floor: float):
        """tol_fn for :func:`conjugate_gradient` on the system A·D = R/unit: the relative
        residual at which s = S + unit·D meets the bound, ‖r‖ ≤ shift·rtol·‖s‖/(1 + rtol),
        times :data:`SAFETY`, never below ``floor``."""
        c = SAFETY * self.operator.shift * self.rtol / (1 + self.rtol)
        scale = 1 / rnorm.clamp_min(1e-300)   # the residual relative to this round's rhs
        start = bool((S != 0).any())
        cache = {}

        def tol_fn(D):
            u = cache.setdefault("unit", unit.to(D.dtype))[:, None]
            if start:
                snorm = (cache.setdefault("S", S.to(D.dtype)) + u * D).norm(dim=1)
            else:
                snorm = u[:, 0] * D.norm(dim=1)
            return (c * snorm.to(scale.dtype) * scale).clamp_min(floor).to(D.dtype)
        return tol_fn

    def _solve(self, V, x0):
        op = self.operator
        S = torch.zeros_like(V) if x0 is None else x0.clone()
        R = V - op.matvec(S) if x0 is not None else V.clone()
        bound = self._bound(S, R)
        iters, rounds, precision = 0, 0, self.precision
        by_precision = {"float32": 0, "float64": 0}
        kept = False
        while float(bound.max()) > self.rtol and rounds < self.max_rounds:
            rounds += 1
            rnorm = R.norm(dim=1)
            unit = torch.where(rnorm > 0, rnorm, torch.ones_like(rnorm))
            if precision == "float32":
                # solve for the unit-norm residuals (no float32 underflow), scale back in float64
                D, info = conjugate_gradient(
                    self.inner.matvec, (R / unit[:, None]).float(), max_iter=self.max_iter,
                    tol_fn=self._stop_rule(S, rnorm, unit, FLOAT32_TOL),
                    precond_fn=self.inner_preconditioner)
                D = D.double() * unit[:, None]
            else:
                D, info = conjugate_gradient(
                    op.matvec, R / unit[:, None], max_iter=self.max_iter,
                    tol_fn=self._stop_rule(S, rnorm, unit, 1e-15),
                    precond_fn=self.float64_preconditioner())
                D = D * unit[:, None]
            iters += info["iterations"]
            by_precision[precision] += info["iterations"]
            S = S + D
            # the true residual in float64; its direction logits X·s are kept for the values
            R_new = V - op.matvec(S, remember=True)
            kept = True
            if precision == "float32" and float((R_new.norm(dim=1) / rnorm.clamp_min(1e-300))
                                                .max()) > 0.5:
                precision = "float64"      # float32 cannot resolve this system any further
            R = R_new
            bound = self._bound(S, R)
        self._last = (S, R) if kept else None
        used = (preconditioner_name(self.inner_preconditioner) if self.inner is not None
                else preconditioner_name(self._preconditioner64))
        extra = {"error_bound": float(bound.max()), "rounds": rounds, "precision": precision,
                 "float32_iterations": by_precision["float32"],
                 "float64_iterations": by_precision["float64"], "rtol": self.rtol,
                 "precondition": used}
        if self.precondition == "auto":
            extra["condition_estimate"] = getattr(self.inner or op, "condition_estimate", None)
        return S, iters, extra

    def _passes(self) -> float:
        return self.operator.n_matvecs + (0 if self.inner is None else self.inner.n_matvecs)

    def residual(self, v: torch.Tensor, s: torch.Tensor) -> float:
        """The true relative residual; the last round's float64 residual when s is its solution
        (no second product)."""
        if self._last is not None and self._last[0] is s:
            R = self._last[1]
            vn = v.norm(dim=1)
            rel = torch.where(vn > 0, R.norm(dim=1) / torch.where(vn > 0, vn, 1.0),
                              R.norm(dim=1))
            return float(rel.max())
        return super().residual(v, s)

    def float64_preconditioner(self):
        """The preconditioner for float64 rounds (built on first use)."""
        if self._preconditioner64 is None and self.precondition is not None:
            self._preconditioner64 = make_preconditioner(self.precondition, self.operator,
                                                         self.gram, features=self.features)
        return self._preconditioner64

    def _check(self, relative_residual, extra):
        extra["converged"] = extra["error_bound"] <= self.rtol
