"""Inverse-HVP solvers behind one interface: s = (H(θ) + (l2 + δ)·I)⁻¹ v at a fixed θ.

Every solver is an :class:`InverseHVPSolver`: built once per θ on the training features (it owns
the :class:`~amlib.influence.hessian.HessianOperator`, whose one pass over X at θ the ranking and
the surrogate reuse), then :meth:`~InverseHVPSolver.solve` any number of right-hand sides (shape
(p,) or (m, p)). Each solve reports an :class:`IHVPResult` with the **true** relative residual
‖v − (H + δI)s‖/‖v‖, recomputed with one more product (never the solver's own estimate).

- :class:`ExactSolver`: the dense Hessian and a Cholesky factorisation (cached for repeated
  solves); refused above ``max_exact_params`` (default 20,000: the dense matrix alone needs
  8·p² bytes).
- :class:`CGSolver`: conjugate gradients (:func:`conjugate_gradient`) on the matrix-free
  product, for any number of right-hand sides at once, with a warm start ``x0`` and an optional
  preconditioner from :mod:`amlib.influence.preconditioners`.
- :class:`~amlib.influence.lissa.LiSSASolver`: the stochastic recursion the influence paper's
  code runs (its own module).

:func:`~amlib.influence.ihvp.InverseHVP` picks one by name (``method="exact" | "cg" | "lissa"``).

Multiclass without L2 or damping: H is singular along the directions that add one vector to every
class row (they leave the softmax unchanged). Every per-sample gradient is orthogonal to them
(Σ_c (p_ic − y_ic) = 0), so the influence is well defined: CG and LiSSA stay in the range of H,
and the exact solver factorises ``H + μ·P₀`` where P₀ projects onto that null space — for a
gradient v this returns the pseudo-inverse solution H⁺v. Any other singularity is reported by
:class:`SingularHessianError`, which suggests ``l2`` or ``damping``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .hessian import (HessianOperator, as_batch, dense_hessian, direction_logits,
                      null_space_shift)
from .models import LogisticModel
from .preconditioners import (FeatureGram, make_preconditioner, normalise_precondition,
                              preconditioner_name)

__all__ = ["IHVPResult", "SingularHessianError", "InverseHVPSolver", "ExactSolver", "CGSolver",
           "conjugate_gradient"]


class SingularHessianError(RuntimeError):
    """H + δI could not be factorised: it is singular (or indefinite at this precision)."""


@dataclass
class IHVPResult:
    """An inverse-HVP solve: the solution(s), the true relative residual
    ‖v − (H + δI)s‖/‖v‖ (max over right-hand sides; for LiSSA δ includes its own damping),
    iterations (CG iterations, LiSSA steps, 1 for exact), seconds, Hessian-vector products in
    units of full passes over the data, and the effective damping δ beyond l2."""

    solution: torch.Tensor
    relative_residual: float
    iterations: int
    seconds: float
    method: str = ""
    hvp_passes: float = 0.0
    effective_damping: float = 0.0
    extra: dict = field(default_factory=dict)


class InverseHVPSolver:
    """The interface: (H(θ) + (l2 + δ)·I)⁻¹ v at a fixed θ (``damping`` δ ≥ 0).

    Subclasses implement :meth:`_solve` (the batch (m, p) of right-hand sides and an optional
    warm start → the solutions, the iteration count and extra diagnostics). :attr:`info` is the
    last :class:`IHVPResult`. The operator's cached quantities at θ are reached through
    :meth:`residuals_at`, :meth:`logits_at` and :meth:`direction_logits`.
    """

    method = ""

    def __init__(self, model: LogisticModel, theta: torch.Tensor, X: torch.Tensor, *,
                 damping: float = 0.0, sample_weight: torch.Tensor | None = None):
        self.model = model
        self.operator = HessianOperator(model, theta, X, damping=damping,
                                        sample_weight=sample_weight)
        self.damping = float(damping)
        self.dtype = X.dtype
        self.features = X   # the caller's training features (the operator may hold a copy)
        self.info: IHVPResult | None = None

    # ----- what every solver shares ------------------------------------------------------
    @property
    def effective_damping(self) -> float:
        """δ beyond l2 of the system actually solved (LiSSA adds its own)."""
        return self.damping

    def residual(self, v: torch.Tensor, s: torch.Tensor) -> float:
        """max_j ‖v_j − (H + δI)s_j‖ / ‖v_j‖ with δ the effective damping."""
        extra = self.effective_damping - self.damping
        # the solutions' direction logits X·s are kept: the ranking and the surrogate reuse them
        r = v - self.operator.matvec(s, remember=True) - extra * s
        vn = v.norm(dim=1)
        rel = torch.where(vn > 0, r.norm(dim=1) / torch.where(vn > 0, vn, 1.0), r.norm(dim=1))
        return float(rel.max())

    def solve(self, v: torch.Tensor, x0: torch.Tensor | None = None) -> IHVPResult:
        """Solve for v (p,) or (m, p); ``x0`` warm-starts the iterative solvers (ignored by
        the others)."""
        p = self.model.n_params
        Vb, single = as_batch(v.detach().to(self.dtype), p)
        x = None if x0 is None else as_batch(x0.detach().to(self.dtype), p)[0]
        start = time.perf_counter()
        passes0 = self._passes()
        S, iters, extra = self._solve(Vb, x)
        rel = self.residual(Vb, S)
        self._check(rel, extra)
        result = IHVPResult(S[0] if single else S, rel, iters, time.perf_counter() - start,
                            self.method, self._passes() - passes0,
                            self.effective_damping, extra)
        self.info = result
        return result

    def _solve(self, V: torch.Tensor, x0: torch.Tensor | None
               ) -> tuple[torch.Tensor, int, dict]:
        raise NotImplementedError

    def _passes(self) -> float:
        """Hessian-vector products so far, in full passes over the data (all operators)."""
        return self.operator.n_matvecs

    def _check(self, relative_residual: float, extra: dict) -> None:
        """After the true residual is known: record or act on it (default: nothing)."""

    # ----- the operator's cache at θ, for the callers at the same θ ----------------------
    def cached_at(self, theta: torch.Tensor, X: torch.Tensor) -> bool:
        """Whether this solver was built at θ on this very feature tensor X."""
        return X is self.features and self.operator.cached_at(theta, self.operator.X)

    def residuals_at(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor
                     ) -> torch.Tensor:
        """(n, K) residuals P − Y at θ, from the operator's probabilities when it is at (θ, X)."""
        if self.cached_at(theta, X):
            return self.operator.P - self.model.targets(y, self.operator.X.dtype)
        return self.model.residuals(theta, X, y)

    def logits_at(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """The logits at (θ, X), from the operator's pass over X when it is at (θ, X)."""
        if self.cached_at(theta, X):
            return self.operator.logits
        with torch.no_grad():
            return self.model.logits(theta.detach(), X)

    def direction_logits(self, V: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """:func:`~amlib.influence.hessian.direction_logits` of V on X, reusing those the
        residual checks kept when X is the solver's own feature tensor."""
        if X is self.features:
            return self.operator.cached_direction_logits(V)
        return direction_logits(self.model, X, V)


class ExactSolver(InverseHVPSolver):
    """Dense Hessian, Cholesky factorisation once, then triangular solves (p ≤ max_exact_params).

    Multiclass without shift: factorises H + μ·P₀ (:func:`null_space_shift`), whose solution for
    a gradient right-hand side is the pseudo-inverse solution H⁺v.
    """

    method = "exact"

    def __init__(self, model: LogisticModel, theta: torch.Tensor, X: torch.Tensor, *,
                 damping: float = 0.0, sample_weight: torch.Tensor | None = None,
                 max_exact_params: int = 20_000):
        super().__init__(model, theta, X, damping=damping, sample_weight=sample_weight)
        p = model.n_params
        if p > max_exact_params:
            raise ValueError(
                f"method='exact' forms the dense {p}×{p} Hessian ({8 * p * p / 2**30:.1f} GiB "
                f"in float64) and p = {p} > max_exact_params = {max_exact_params}; use "
                "method='cg' or 'lissa', or raise max_exact_params if you have the memory")
        t0 = time.perf_counter()
        shift = self.operator.shift
        H = dense_hessian(model, theta, X, sample_weight=sample_weight)
        H.diagonal().add_(shift)
        if not model.binary and shift == 0:
            H = H + null_space_shift(model, H)
        L, err = torch.linalg.cholesky_ex(H)
        if int(err) != 0:
            raise SingularHessianError(
                f"the Hessian H + {shift:g}·I is singular or indefinite (Cholesky "
                f"failed at column {int(err)}; collinear or constant features, or a "
                "saturated model): add an L2 penalty (l2 > 0 in the model) or damping > 0")
        self._cholesky = L
        self.factor_seconds = time.perf_counter() - t0

    def _solve(self, V, x0):
        return torch.cholesky_solve(V.T.contiguous(), self._cholesky).T, 1, {}


def conjugate_gradient(matvec, B: torch.Tensor, *, x0: torch.Tensor | None = None,
                       tol: float = 1e-10, max_iter: int = 1000,
                       precond: torch.Tensor | None = None,
                       precond_fn=None, tol_fn=None) -> tuple[torch.Tensor, dict]:
    """Solve A X = B for a symmetric positive (semi-)definite A given by ``matvec``.

    ``B`` is (m, p): m systems run together (one batched product per iteration) and each stops
    updating once its recursive relative residual is ≤ ``tol``. ``precond`` is the diagonal of a
    Jacobi preconditioner; ``precond_fn`` any symmetric positive definite M⁻¹ applied to (m, p).
    ``tol_fn``: instead of a fixed ``tol``, a callable of the current iterates X (m, p) giving each
    system's tolerance (m,) — how :class:`~amlib.influence.refinement.RefinedCGSolver` stops as
    soon as its error bound, which grows with ‖x‖, is met. Returns (X, info) with ``iterations`` and the recursive residuals.
    """
    bnorm = B.norm(dim=1)
    safe_b = torch.where(bnorm > 0, bnorm, torch.ones_like(bnorm))
    X = torch.zeros_like(B) if x0 is None else x0.reshape(B.shape).to(B).clone()
    R = B - matvec(X) if x0 is not None else B.clone()
    if precond is not None:
        Minv = 1.0 / precond
        precond_fn = lambda V: V * Minv  # noqa: E731
    Z = R if precond_fn is None else precond_fn(R)
    Pd = Z.clone()
    rz = (R * Z).sum(dim=1)
    it = 0
    res = R.norm(dim=1) / safe_b
    tiny = torch.finfo(B.dtype).tiny
    while it < max_iter:
        active = res > (tol if tol_fn is None else tol_fn(X))
        if not bool(active.any()):
            break
        it += 1
        AP = matvec(Pd)
        pAp = (Pd * AP).sum(dim=1)
        alpha = torch.where(active & (pAp > tiny), rz / pAp.clamp_min(tiny),
                            torch.zeros_like(rz))
        X += alpha[:, None] * Pd
        R -= alpha[:, None] * AP
        Z = R if precond_fn is None else precond_fn(R)
        rz_new = (R * Z).sum(dim=1)
        beta = torch.where(active & (rz > tiny), rz_new / rz.clamp_min(tiny),
                           torch.zeros_like(rz))
        Pd = Z + beta[:, None] * Pd
        rz = torch.where(active, rz_new, rz)
        res = torch.where(active, R.norm(dim=1) / safe_b, res)
    return X, {"iterations": it, "recursive_residual": res}


class CGSolver(InverseHVPSolver):
    """Conjugate gradients on the matrix-free H + δI, batched over right-hand sides.

    ``tol`` on the recursive relative residual (default 1e-10 in float64, 1e-6 in float32),
    ``max_iter`` (default 1000); ``precondition``: ``False``/``None`` none, ``True``/"jacobi"
    diag(H + δI), "kfac" the Kronecker factorisation A ⊗ G + δI (the big win for softmax models
    on ill-conditioned features), "auto" K-FAC only where the condition number is estimated
    above the measured crossover (:func:`~amlib.influence.preconditioners.choose_preconditioner`;
    ``extra`` then reports ``condition_estimate``); ``gram`` a prebuilt
    :class:`~amlib.influence.preconditioners.FeatureGram` for "kfac" (else the one cached for X
    and ``sample_weight``, :meth:`~amlib.influence.preconditioners.FeatureGram.cached`).
    ``extra["precondition"]`` names the preconditioner actually used. ``extra["converged"]``
    says whether the *true* residual is within
    10·tol (or 1e-12).
    """

    method = "cg"

    def __init__(self, model: LogisticModel, theta: torch.Tensor, X: torch.Tensor, *,
                 damping: float = 0.0, sample_weight: torch.Tensor | None = None,
                 tol: float | None = None, max_iter: int | None = None,
                 precondition: bool | str | None = False, gram: FeatureGram | None = None):
        precondition = normalise_precondition(precondition)
        super().__init__(model, theta, X, damping=damping, sample_weight=sample_weight)
        self.tol = tol if tol is not None else (1e-10 if X.dtype == torch.float64 else 1e-6)
        self.max_iter = 1000 if max_iter is None else int(max_iter)
        self.precondition = precondition
        self.preconditioner = make_preconditioner(precondition, self.operator, gram)

    def _solve(self, V, x0):
        S, info = conjugate_gradient(self.operator.matvec, V, x0=x0, tol=self.tol,
                                     max_iter=self.max_iter, precond_fn=self.preconditioner)
        extra = {"precondition": preconditioner_name(self.preconditioner)}
        if self.precondition == "auto":
            extra["condition_estimate"] = self.operator.condition_estimate
        return S, info["iterations"], extra

    def _check(self, relative_residual, extra):
        extra["converged"] = relative_residual <= max(10 * self.tol, 1e-12)
