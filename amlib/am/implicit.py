"""A differentiable argmin for weighted GLMs: the implicit-function-theorem hypergradient.

The lower level of BLAMM solves ``θ̃(φ) = argmin_θ f̃(θ, φ)`` (eq. 12) with the weighted IRLS of
Algorithm 1, where ``φ`` enters f̃ only through the weighted design (the per-pattern imputed
designs ``X̂`` and the weights ``ω``, see :mod:`amlib.am.missingness.proxies`).  At the solution
``∇_θ f̃ = 0``, so by the implicit function theorem (eq. 23, Gould et al. 2016)

    J_θ̃(φ) = −A⁻¹ B,   A = ∇²_θ f̃ (eq. 21),   B = ∂(∇_θ f̃)/∂φ.

:func:`glm_argmin` is a ``torch.autograd.Function``: forward runs IRLS without building a graph
(never unrolled); backward receives ``v = ∂ℓ/∂θ̃``, solves ``u = A⁻¹ v`` once with the Cholesky
factor kept from the forward pass, and returns ``−Bᵀ u`` split into the two inputs:

    ∂ℓ/∂ω_{k,i}   = −(1/N) ρ_{k,i} ⟨x̂_{k,i}, u⟩
    ∂ℓ/∂x̂_{k,i}  = −(1/N) ω_{k,i} [ρ_{k,i} u + A''(η_{k,i}) ⟨x̂_{k,i}, u⟩ θ̃]

with ``ρ = A'(η) − y`` and ``η = ⟨x̂, θ̃⟩``.  Autograd then carries these through the proxy and the
mechanism to ``φ``, so the same code serves every proxy, every family and every mechanism
(Algorithm 2's ``J_θ̃(φ)ᵀ ∇₂ℓ`` without forming ``J``).  Cost per step: one IRLS solve
(O(K N p²) per iteration) plus O(K N p + p²) for the backward pass.

:func:`directional_check` compares such a gradient with central finite differences along a
random direction (the test of eq. 23 that chapter 4 and ``tests/test_implicit.py`` run).
"""
from __future__ import annotations

import torch

from .glm import get_family, solve_lower_level

__all__ = ["glm_argmin", "GLMArgmin", "directional_check"]


class GLMArgmin(torch.autograd.Function):
    """θ̃ = argmin_θ (1/N) Σ_k Σ_i ω_{k,i} J(y_i, ⟨x̂_{k,i}, θ⟩) + (l2/2)‖θ‖² (see module doc)."""

    @staticmethod
    def forward(ctx, design, weights, y, family, l2, tol, max_iter, theta0, fallback_l2, info,
                check):
        fam = get_family(family)
        result = solve_lower_level(design, y, fam, weights, l2=l2, tol=tol, max_iter=max_iter,
                                   theta0=theta0, fallback_l2=fallback_l2, check=check)
        ctx.family = fam
        ctx.save_for_backward(design, weights, y, result.theta, result.cholesky)
        if info is not None:
            info.update(n_iter=result.n_iter, l2=result.l2, objective=result.objective)
        return result.theta.clone()

    @staticmethod
    def backward(ctx, grad_theta):
        design, weights, y, theta, factor = ctx.saved_tensors
        fam = ctx.family
        X = design if design.dim() == 3 else design.unsqueeze(0)
        w = weights if weights.dim() == 2 else weights.unsqueeze(0)
        N = X.shape[1]
        u = torch.cholesky_solve(grad_theta.unsqueeze(-1), factor).squeeze(-1)   # A⁻¹ v
        eta = X @ theta
        rho = fam.mean(eta) - y
        Xu = X @ u
        grad_w = grad_X = None
        if ctx.needs_input_grad[1]:
            grad_w = (-(rho * Xu) / N).reshape(weights.shape)
        if ctx.needs_input_grad[0]:
            s = fam.variance(eta)
            # rank-2 structure a ⊗ u + b ⊗ θ, formed by one (K·N × 2) @ (2 × p) product
            coef = torch.stack([-(w * rho) / N, -(w * s * Xu) / N], dim=-1)
            grad_X = (coef @ torch.stack([u, theta])).reshape(design.shape)
        return grad_X, grad_w, None, None, None, None, None, None, None, None, None


def glm_argmin(design: torch.Tensor, weights: torch.Tensor, y: torch.Tensor, family="gaussian",
               *, l2: float = 0.0, tol: float = 1e-10, max_iter: int = 100,
               theta0: torch.Tensor | None = None, fallback_l2: float | None = 1e-3,
               info: dict | None = None, check: bool = True) -> torch.Tensor:
    """Differentiable solution θ̃ of the weighted GLM (Algorithm 1 forward, eq. 23 backward).

    ``design`` (N, p) or (K, N, p) and ``weights`` (N,) or (K, N) may depend on parameters through
    autograd; ``y`` is data.  ``theta0`` warm-starts IRLS.  ``fallback_l2`` is App. D.3's re-solve
    with extra L2 (``None`` disables it).  ``info``, when given, receives the IRLS iteration count
    and the L2 actually used.  ``check=False`` skips input validation in the solver.
    """
    if l2 < 0:
        raise ValueError(f"the lower-level L2 weight must be >= 0, got {l2}")
    return GLMArgmin.apply(design, weights, y, family, float(l2), tol, max_iter, theta0,
                           fallback_l2, info, check)


def directional_check(loss, params, *, eps: float = 1e-5, seed: int = 0) -> tuple[float, float]:
    """Autograd's and central differences' derivative of ``loss()`` along a random direction.

    ``loss`` is a function of no arguments returning a scalar tensor that depends on the
    tensors ``params`` (float64 leaves with ``requires_grad``).  Returns ``(analytic, numeric)``
    with ``analytic = ⟨∇loss, v⟩`` and ``numeric = (loss(p + εv) − loss(p − εv)) / 2ε`` for a
    seeded standard-normal ``v``; ``params`` are restored afterwards.
    """
    params = list(params)
    grads = torch.autograd.grad(loss(), params)
    gen = torch.Generator().manual_seed(seed)
    direction = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    analytic = float(sum((g * v).sum() for g, v in zip(grads, direction)))
    with torch.no_grad():
        for p, v in zip(params, direction):
            p.add_(eps * v)
        plus = float(loss())
        for p, v in zip(params, direction):
            p.sub_(2 * eps * v)
        minus = float(loss())
        for p, v in zip(params, direction):
            p.add_(eps * v)
    return analytic, (plus - minus) / (2 * eps)
