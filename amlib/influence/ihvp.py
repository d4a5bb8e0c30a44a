"""The front door to the inverse-HVP solvers: pick one by name.

:func:`InverseHVP` builds the :class:`~amlib.influence.solvers.InverseHVPSolver` named by
``method`` — ``"exact"`` (:class:`~amlib.influence.solvers.ExactSolver`), ``"cg"``
(:class:`~amlib.influence.solvers.CGSolver`) or ``"lissa"``
(:class:`~amlib.influence.lissa.LiSSASolver`) — from one flat set of options, passing each
solver the options it uses; :func:`inverse_hvp` is the one-shot version.
"""
from __future__ import annotations

import torch

from .lissa import LiSSASolver
from .models import LogisticModel
from .preconditioners import FeatureGram, normalise_precondition
from .refinement import RefinedCGSolver
from .solvers import CGSolver, ExactSolver, IHVPResult, InverseHVPSolver

__all__ = ["METHODS", "SOLVERS", "InverseHVP", "inverse_hvp"]

#: the solver classes by name
SOLVERS = {"exact": ExactSolver, "cg": CGSolver, "lissa": LiSSASolver}
METHODS = tuple(SOLVERS)


def InverseHVP(model: LogisticModel, theta: torch.Tensor, X: torch.Tensor, *,  # noqa: N802
               method: str = "cg", damping: float = 0.0, tol: float | None = None,
               max_iter: int | None = None, precondition: bool | str | None = False,
               gram: FeatureGram | None = None,
               lissa_scale: float = 25.0, lissa_damping: float = 0.01,
               lissa_samples: int = 1_000_000, lissa_batch: int = 1024, seed: int = 0,
               max_exact_params: int = 20_000, rtol: float | None = None,
               precision: str = "auto", sample_weight: torch.Tensor | None = None) -> InverseHVPSolver:
    """The solver of (H(θ) + (l2 + δ)·I)⁻¹ v at a fixed θ named by ``method``.

    Build once per θ, then ``.solve`` any number of vectors (shape (p,) or (m, p)). ``damping``
    δ ≥ 0 for every method; ``tol``, ``max_iter``, ``precondition`` (False/None, True/"jacobi",
    "kfac", "auto") and ``gram`` for CG (:class:`~amlib.influence.solvers.CGSolver`); ``lissa_scale``,
    ``lissa_damping`` (scaled units: adds lissa_damping·lissa_scale to δ), ``lissa_samples``,
    ``lissa_batch`` and ``seed`` for LiSSA; ``max_exact_params`` bounds exact. Options of the
    other methods are accepted and ignored (``precondition`` is still checked).

    ``rtol`` (CG only): instead of a fixed ``tol``, solve until the solution's relative error is
    provably at most ``rtol`` — :class:`~amlib.influence.refinement.RefinedCGSolver`, float32
    iterations refined with float64 residuals where rtol allows, float64 CG below (needs
    l2 + damping > 0); ``precision`` ("auto", "float32", "float64") overrides that choice.
    """
    if method not in SOLVERS:
        raise ValueError(f"unknown inverse-HVP method {method!r}; use one of {METHODS}")
    precondition = normalise_precondition(precondition)
    common = dict(damping=damping, sample_weight=sample_weight)
    if rtol is not None:
        if method != "cg" or tol is not None:
            raise ValueError("rtol chooses CG's tolerance itself: use it with method='cg' and "
                             "without tol")
        return RefinedCGSolver(model, theta, X, rtol=rtol, precondition=precondition, gram=gram,
                               max_iter=max_iter, precision=precision, **common)
    if method == "exact":
        return ExactSolver(model, theta, X, max_exact_params=max_exact_params, **common)
    if method == "cg":
        return CGSolver(model, theta, X, tol=tol, max_iter=max_iter, precondition=precondition,
                        gram=gram, **common)
    return LiSSASolver(model, theta, X, lissa_scale=lissa_scale, lissa_damping=lissa_damping,
                       lissa_samples=lissa_samples, lissa_batch=lissa_batch, seed=seed, **common)


def inverse_hvp(model: LogisticModel, theta: torch.Tensor, X, v: torch.Tensor, *,
                method: str = "cg", damping: float = 0.0, x0: torch.Tensor | None = None,
                **options) -> IHVPResult:
    """One-shot (H(θ) + (l2 + damping)·I)⁻¹ v; see :func:`InverseHVP` for the options."""
    X = model.validate(theta, X)
    return InverseHVP(model, theta, X, method=method, damping=damping, **options).solve(v, x0=x0)
