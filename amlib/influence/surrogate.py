"""The backward-friendly gradient of influence-based objectives (influence paper, Alg. 1, App. A.1.1).

An attack objective is a function F(v(θ)) of the value vector v(θ) = (G_testᵀ H(θ)⁻¹ g_i(θ))_i
(sign convention of :mod:`amlib.influence.scores`). Alg. 1 makes its gradient cheap in two steps.

1. **Linearise.** With c = ∂F/∂v at the current θ (detached), F̃(θ) = cᵀ v(θ) has the same
   gradient at θ. For the attack objective of Eq. 4 (in value terms: L = −v_t + mean_{i∈A} v_i
   with A the points ranked above the target), c_t = −1 and c_i = 1/|A| on A;
   :func:`attack_coefficients` builds c for the three objectives of the ablation (Table 2) and sums
   them over several targets (Eq. 5).
2. **Make it backward-friendly.** cᵀ v(θ) = a(θ)ᵀ H(θ)⁻¹ b(θ) with a = G_test and
   b = Σ_i c_i g_i. Solve s_a = H⁻¹a and s_b = H⁻¹b once, freeze them, and differentiate

       S(θ) = a(θ)ᵀ s_b + b(θ)ᵀ s_a − s_aᵀ H(θ) s_b,

   which equals aᵀH⁻¹b in value (H symmetric) and in gradient at the current θ. Its backward pass
   needs gradients and one differentiable Hessian-vector product — no backward pass through an
   inverse-HVP solver. (The paper writes S with an overall minus sign because it works with
   Koh & Liang's I = −v; here S is in value units, so S = cᵀv.)

For logistic regression all three terms depend on θ only through the probabilities of the
training and test rows, so autograd differentiates through two softmaxes and two matrix products
with X; the products X·S_aᵀ, X·S_bᵀ are constants. :func:`naive_objective` is the reference the
paper calls infeasible at scale: autograd through an unrolled conjugate-gradient solve (tests and
the benchmark only).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import torch

from .hessian import apply_hessian, direction_logits
from .ihvp import InverseHVP
from .models import LogisticModel
from .scores import ranks
from .solvers import IHVPResult, InverseHVPSolver

__all__ = ["project_to_ball", "random_initialisation", "OBJECTIVES", "attack_coefficients",
           "surrogate_objective", "surrogate_gradient", "backward_friendly_grad",
           "SurrogateGradient", "naive_objective", "dense_objective_and_gradient",
           "value_objective", "check_targets"]

#: the ablation's objectives (Table 2): max target influence, min top-k, min all higher-ranked
OBJECTIVES = ("max_target", "top_k", "higher_ranked")


def project_to_ball(theta: torch.Tensor, center: torch.Tensor, radius: float) -> torch.Tensor:
    """Euclidean projection onto {θ : ‖θ − center‖ ≤ radius} (the constraint of Eq. 4)."""
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    diff = theta - center
    norm = float(diff.norm())
    if norm <= radius:
        return theta
    return center + diff * (radius / norm)


def random_initialisation(theta_star: torch.Tensor, radius: float, seed: int,
                          std: float = 1.0) -> torch.Tensor:
    """θ* + N(0, std²·I) projected into the ball (the original code's random starts)."""
    gen = torch.Generator().manual_seed(int(seed))
    noise = std * torch.randn(theta_star.shape, generator=gen, dtype=theta_star.dtype)
    return project_to_ball(theta_star + noise.to(theta_star.device), theta_star, radius)


def check_targets(targets, n: int, k: int | None = None) -> list[int]:
    """Validate target indices (int or sequence) against n training points, and 1 ≤ k < n."""
    single = isinstance(targets, numbers.Integral) or (
        isinstance(targets, (torch.Tensor, np.ndarray)) and targets.ndim == 0)
    items = [int(targets)] if single else [int(t) for t in targets]
    if not items:
        raise ValueError("give at least one target index")
    bad = [t for t in items if not 0 <= t < n]
    if bad:
        raise IndexError(f"target indices {bad} are out of range for {n} training points "
                         f"(use 0..{n - 1})")
    if len(set(items)) != len(items):
        raise ValueError("target indices must be distinct")
    if k is not None and not 1 <= int(k) < n:
        raise ValueError(f"k = {k} must satisfy 1 <= k < n = {n}: with k >= n every point is "
                         "already in the top-k")
    return items


def attack_coefficients(values: torch.Tensor, target, k: int = 1,
                        objective: str = "higher_ranked") -> torch.Tensor:
    """The linearisation c = ∂L/∂v of the attack loss at the current values (Alg. 1, step 1).

    ``objective``: ``"max_target"`` L = −v_t; ``"top_k"`` L = −v_t + mean of the current top-k
    other than t; ``"higher_ranked"`` (the paper's, Eq. 4) L = −v_t + mean over every point ranked
    above t. ``target``: one index, or several (multi-target attack, Eq. 5: their coefficient
    vectors are summed). L = cᵀv is minimised.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; use one of {OBJECTIVES}")
    values = values.detach()
    n = values.shape[0]
    targets = check_targets(target, n, k)
    r = ranks(values)
    c = torch.zeros_like(values)
    for t in targets:
        c[t] -= 1.0
        if objective == "max_target":
            continue
        if objective == "top_k":
            above = (r < k).clone()
        else:
            above = r < r[t]
        above[t] = False
        m = int(above.sum())
        if m:
            c[above] += 1.0 / m
    return c


def value_objective(values: torch.Tensor, c: torch.Tensor) -> float:
    """L = cᵀ v (the quantity the attack minimises)."""
    return float(c @ values.detach())


def surrogate_objective(model: LogisticModel, theta: torch.Tensor, X, y, X_test, y_test,
                        c: torch.Tensor, s_a: torch.Tensor, s_b: torch.Tensor, *,
                        damping: float = 0.0) -> torch.Tensor:
    """S(θ) = a(θ)ᵀs_b + b(θ)ᵀs_a − s_aᵀ(H(θ) + (l2 + damping)I)s_b (App. A.1.1), differentiable.

    With s_a = (H + δI)⁻¹a and s_b = (H + δI)⁻¹b solved at the current θ, S has the value
    cᵀv(θ) and the gradient of cᵀv at that θ. ``damping`` δ must be the damping of those solves
    (for LiSSA its effective damping); it only shifts the value.
    """
    X, y = model.validate(theta, X, y)
    X_test, y_test = model.validate(theta, X_test, y_test, name="_test")
    S, U, Ut_b = _frozen_products(model, X, X_test, s_a, s_b)
    return _surrogate_from_logits(model, model.logits(theta, X), model.logits(theta, X_test),
                                  y, y_test, c, S, U, Ut_b, damping)


def _frozen_products(model: LogisticModel, X: torch.Tensor, X_test: torch.Tensor,
                     s_a: torch.Tensor, s_b: torch.Tensor,
                     solver: InverseHVPSolver | None = None):
    """The constants of S: S = [s_a; s_b], U = (X S_aᵀ, X S_bᵀ) (n, 2, K) from one product
    with X (or none: the ones ``solver``'s residual checks kept), and X_test S_bᵀ (n_test, K)."""
    S = torch.stack([s_a.detach(), s_b.detach()]).to(X.dtype)
    with torch.no_grad():
        U = direction_logits(model, X, S) if solver is None else solver.direction_logits(S, X)
        Ut_b = direction_logits(model, X_test, S[1:])[:, 0]
    return S, U, Ut_b


def _surrogate_from_logits(model: LogisticModel, F: torch.Tensor, F_test: torch.Tensor, y, y_test,
                           c: torch.Tensor, S: torch.Tensor, U: torch.Tensor, Ut_b: torch.Tensor,
                           damping: float) -> torch.Tensor:
    """S as a function of the logits F = X Wᵀ + b (n, K) and F_test (n_test, K):

        S = Σ_j (p_j − y_j)·u_j^b  +  Σ_i c_i (p_i − y_i)·u_i^a
            − (1/n) Σ_i [Σ_k p_ik u_ik^a u_ik^b − (p_i·u_i^a)(p_i·u_i^b)] − (l2 + δ) s_aᵀs_b

    (binary: the curvature p(1 − p) u^a u^b instead of the bracket), u^a = X s_a, u^b = X s_b.
    θ enters only through F and F_test, so ∂S/∂θ = Σ_i (∂S/∂F_i) ⊗ [x_i, 1] + (test rows alike).
    """
    dtype = U.dtype
    P = model.probs_from_logits(F)
    Pt = model.probs_from_logits(F_test)
    U_a, U_b = U[:, 0], U[:, 1]
    a_sb = ((Pt - model.targets(y_test, dtype)) * Ut_b).sum()
    b_sa = (c.detach().to(dtype)[:, None] * (P - model.targets(y, dtype)) * U_a).sum()
    if model.binary:
        quad = (P * (1 - P) * U_a * U_b).sum()
    else:
        quad = ((P * U_a * U_b).sum(1) - (P * U_a).sum(1) * (P * U_b).sum(1)).sum()
    quad = quad / F.shape[0] + (model.l2 + damping) * (S[0] @ S[1])
    return a_sb + b_sa - quad


@dataclass
class SurrogateGradient:
    """Value cᵀv and its gradient at θ, the frozen solves s_a = H⁻¹a and s_b = H⁻¹b, and the
    solver reports (``ihvp_info`` for s_b, ``ihvp_info_a`` for s_a when it was solved here).
    Unpacks as ``value, grad = ...``."""

    value: float
    grad: torch.Tensor
    s_a: torch.Tensor
    s_b: torch.Tensor
    ihvp_info: IHVPResult
    ihvp_info_a: IHVPResult | None = None

    def __iter__(self):
        return iter((self.value, self.grad))


def surrogate_gradient(model: LogisticModel, theta: torch.Tensor, X, y, X_test, y_test,
                       c: torch.Tensor, *, s_a: torch.Tensor | None = None,
                       x0: torch.Tensor | None = None, x0_a: torch.Tensor | None = None,
                       method: str = "cg", damping: float = 0.0,
                       solver: InverseHVPSolver | None = None,
                       **solver_opts) -> SurrogateGradient:
    """The backward-friendly gradient of cᵀv(θ) (Alg. 1): solve, freeze, one backward pass.

    ``s_a``: H⁻¹G_test if already known (the ranking step computes it); otherwise it is solved
    together with s_b (two right-hand sides, one batched solve). ``x0``/``x0_a`` warm-start CG for
    s_b/s_a (e.g. the previous attack step's solutions). ``solver``: a ready
    inverse-HVP solver (:func:`~amlib.influence.ihvp.InverseHVP`) at this θ (else one is built
    with ``method``, ``damping`` and ``solver_opts``).
    """
    X, y = model.validate(theta, X, y)
    X_test, y_test = model.validate(theta, X_test, y_test, name="_test")
    c = torch.as_tensor(c, dtype=X.dtype, device=X.device)
    if c.shape != (X.shape[0],):
        raise ValueError(f"c must have one coefficient per training point ({X.shape[0]}), got "
                         f"shape {tuple(c.shape)}")
    th = theta.detach()
    if solver is None:
        solver = InverseHVP(model, th, X, method=method, damping=damping, **solver_opts)
    with torch.no_grad():
        # the logits at θ: the solver's (one pass over X shared by the Hessian, the residuals
        # and the surrogate's forward pass), or computed here when it was built elsewhere
        F = solver.logits_at(th, X)
        R = model.probs_from_logits(F) - model.targets(y, X.dtype)
        b = model.gradient_from_residuals(R * c[:, None], X)
        info_a = None
        if s_a is None:
            a = model.gradient_from_residuals(model.residuals(th, X_test, y_test), X_test)
            start = None
            if x0 is not None or x0_a is not None:
                za = torch.zeros_like(a) if x0_a is None else x0_a.to(a)
                zb = torch.zeros_like(b) if x0 is None else x0.to(b)
                start = torch.stack([za, zb])
            both = solver.solve(torch.stack([a, b]), x0=start)
            s_a, s_b = both.solution[0], both.solution[1]
            info = info_a = both
        else:
            info = solver.solve(b, x0=x0)
            s_b = info.solution
    # backward to the logits only, then the chain rule by hand: ∂S/∂θ = Σ_i (∂S/∂F_i) ⊗ [x_i, 1]
    # is one product Gᵀ X (autograd would form Xᵀ G, several times slower for a thin G)
    Sc, U, Ut_b = _frozen_products(model, X, X_test, s_a, s_b, solver)
    with torch.no_grad():
        Ft = model.logits(th, X_test)
    F = F.detach().to(X.dtype).requires_grad_(True)
    Ft = Ft.detach().requires_grad_(True)
    with torch.enable_grad():
        S = _surrogate_from_logits(model, F, Ft, y, y_test, c, Sc, U, Ut_b,
                                   solver.effective_damping)
        dF, dFt = torch.autograd.grad(S, (F, Ft))
    with torch.no_grad():
        grad = (model.gradient_from_residuals(dF, X)
                + model.gradient_from_residuals(dFt, X_test)).to(theta.dtype)
    return SurrogateGradient(float(S.detach()), grad, s_a.detach(), s_b.detach(), info, info_a)


#: the name used in the paper's appendix
backward_friendly_grad = surrogate_gradient


def naive_objective(model: LogisticModel, theta: torch.Tensor, X, y, X_test, y_test,
                    c: torch.Tensor, *, cg_iters: int = 100, damping: float = 0.0,
                    tol: float = 1e-12) -> torch.Tensor:
    """cᵀv(θ) = a(θ)ᵀ (H(θ) + (l2 + damping)I)⁻¹ b(θ) through an unrolled CG solve, differentiable.

    The reference for :func:`surrogate_gradient`: autograd records every CG iteration (memory
    grows linearly with ``cg_iters``). Stops early once the relative residual is ≤ ``tol`` (at
    most ``cg_iters`` iterations). For tests and the benchmark only.
    """
    X, y = model.validate(theta, X, y)
    X_test, y_test = model.validate(theta, X_test, y_test, name="_test")
    c = torch.as_tensor(c, dtype=X.dtype, device=X.device).detach()
    P = model.probs(theta, X)
    a = model.gradient_from_residuals(model.probs(theta, X_test)
                                      - model.targets(y_test, X.dtype), X_test)
    b = model.gradient_from_residuals((P - model.targets(y, X.dtype)) * c[:, None], X)
    shift = model.l2 + damping

    def H(v):
        return apply_hessian(model, X, P, v[None])[0] + shift * v

    x = torch.zeros_like(b)
    r = b
    p = r
    rr = r @ r
    bnorm = float(b.detach().norm())
    for _ in range(cg_iters):
        if float(rr.detach().sqrt()) <= tol * bnorm:
            break
        Hp = H(p)
        alpha = rr / (p @ Hp)
        x = x + alpha * p
        r = r - alpha * Hp
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return a @ x


def dense_objective_and_gradient(model: LogisticModel, theta: torch.Tensor, X, y, X_test, y_test,
                                 c: torch.Tensor, *, damping: float = 0.0
                                 ) -> tuple[float, torch.Tensor]:
    """cᵀv(θ) = a(θ)ᵀ(H(θ) + δI)⁻¹b(θ) and its gradient, with nothing from this library's engine.

    H is autograd's dense Hessian of the training objective, a and b autograd's gradients of the
    summed test loss and of Σ_i c_i ℓ_i, the solve dense, and the gradient autograd's through all
    of it (second derivatives of the Hessian included). The independent reference for
    :func:`surrogate_gradient` on small models (p up to a few hundred).
    """
    X, y = model.validate(theta, X, y)
    X_test, y_test = model.validate(theta, X_test, y_test, name="_test")
    c = torch.as_tensor(c, dtype=X.dtype, device=X.device).detach()
    th = theta.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        H = torch.autograd.functional.hessian(lambda t: model.objective(t, X, y), th,
                                              create_graph=True)
        H = H + damping * torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
        (a,) = torch.autograd.grad(model.loss(th, X_test, y_test, "sum"), th, create_graph=True)
        (b,) = torch.autograd.grad((c * model.loss(th, X, y, "none")).sum(), th,
                                   create_graph=True)
        value = a @ torch.linalg.solve(H, b)
        (grad,) = torch.autograd.grad(value, th)
    return float(value.detach()), grad
