"""LiSSA, the stochastic inverse-HVP recursion of the influence paper's code (App. A.1.2).

The recursion of Agarwal et al. as ``pytorch_influence_functions`` runs it:
``h ← v + (1 − lissa_damping)·h − (H_batch h)/scale``, result ``h/scale``. Its fixed point is
``(H + (lissa_damping·scale)·I)⁻¹ v``: the original settings (``scale = 25``, ``damp = 0.01``)
therefore solve with an effective damping of **0.25** in the Hessian's units, on top of any
``damping`` given here. Each of ``ceil(lissa_samples / lissa_batch)`` steps uses a fresh random
batch of ``lissa_batch`` rows (1e6 samples in batches of 1024 → 977 steps). The recursion only
converges while every batch Hessian's eigenvalues stay below ``(2 − lissa_damping)·scale``; a
growing iterate raises :class:`LiSSADivergence` with a scale to try.
"""
from __future__ import annotations

import math

import torch

from .models import LogisticModel
from .solvers import InverseHVPSolver

__all__ = ["LiSSASolver", "LiSSADivergence"]


class LiSSADivergence(RuntimeError):
    """The LiSSA recursion diverged: its scale is below the largest batch-Hessian eigenvalue."""

    def __init__(self, message: str, suggested_scale: float):
        super().__init__(message)
        self.suggested_scale = suggested_scale


class LiSSASolver(InverseHVPSolver):
    """LiSSA with the original code's parameters (``lissa_scale``, ``lissa_damping`` in scaled
    units, ``lissa_samples``, ``lissa_batch``) and a seeded batch generator: the same seed draws
    the same batches for every solve, so the solver is exactly linear in v."""

    method = "lissa"

    def __init__(self, model: LogisticModel, theta: torch.Tensor, X: torch.Tensor, *,
                 damping: float = 0.0, sample_weight: torch.Tensor | None = None,
                 lissa_scale: float = 25.0, lissa_damping: float = 0.01,
                 lissa_samples: int = 1_000_000, lissa_batch: int = 1024, seed: int = 0):
        super().__init__(model, theta, X, damping=damping, sample_weight=sample_weight)
        if not (lissa_scale > 0 and 0 <= lissa_damping < 1):
            raise ValueError("lissa_scale must be > 0 and 0 <= lissa_damping < 1 (it is the "
                             "original code's `damp`, in scaled units)")
        if lissa_samples < 1 or lissa_batch < 1:
            raise ValueError("lissa_samples and lissa_batch must be >= 1")
        self.lissa_scale, self.lissa_damping = float(lissa_scale), float(lissa_damping)
        self.lissa_batch = int(min(lissa_batch, self.operator.n))
        self.lissa_steps = int(math.ceil(lissa_samples / lissa_batch))
        self.seed = seed

    @property
    def effective_damping(self) -> float:
        """δ beyond l2: ``damping`` + lissa_damping·lissa_scale (the recursion's fixed point)."""
        return self.damping + self.lissa_damping * self.lissa_scale

    def _batch_rows(self, gen: torch.Generator) -> torch.Tensor | None:
        """A fresh random batch of rows (None: the batch is the whole training set)."""
        n, batch = self.operator.n, self.lissa_batch
        if batch >= n:
            return None
        return torch.randperm(n, generator=gen)[:batch].to(self.operator.X.device)

    def _solve(self, V, x0):
        gen = torch.Generator().manual_seed(int(self.seed))
        scale, damp = self.lissa_scale, self.lissa_damping
        h = V.clone()
        vnorm = float(V.norm(dim=1).max())
        for t in range(self.lissa_steps):
            h = V + (1 - damp) * h - self.operator.matvec(h, self._batch_rows(gen)) / scale
            if t % 10 == 9 or t == self.lissa_steps - 1:
                hn = float(h.norm(dim=1).max())
                # while every batch operator is non-expansive, ‖h_t‖ ≤ (t + 1)‖v‖
                if not math.isfinite(hn) or hn > 10 * (t + 2) * max(vnorm, 1e-300):
                    self._diverged(t + 1, hn, vnorm)
        S = h / scale
        if self.residual(V, S) > 1.0:   # worse than the zero vector: slow divergence
            self._diverged(self.lissa_steps, float(h.norm(dim=1).max()), vnorm)
        return S, self.lissa_steps, {}

    def _diverged(self, step: int, hnorm: float, vnorm: float):
        lam = self.largest_batch_eigenvalue()
        need = lam / (2 - self.lissa_damping)
        suggestion = _nice_ceil(max(1.5 * need, 2 * self.lissa_scale))
        raise LiSSADivergence(
            f"LiSSA diverged after {step} steps (‖h‖ = {hnorm:.3g} vs ‖v‖ = {vnorm:.3g}) with "
            f"lissa_scale = {self.lissa_scale:g}: the recursion needs every batch Hessian's "
            f"eigenvalues below (2 − lissa_damping)·scale, and the largest is about {lam:.3g}. "
            f"Try lissa_scale={suggestion:g} (the effective damping lissa_damping·lissa_scale "
            "grows with it), a larger lissa_batch, or method='cg'.", suggestion)

    def largest_batch_eigenvalue(self, n_batches: int = 3, iters: int = 30) -> float:
        """Power-iteration estimate of the largest eigenvalue of a few LiSSA batch Hessians."""
        gen = torch.Generator().manual_seed(int(self.seed) + 1)
        best = 0.0
        p = self.model.n_params
        for _ in range(n_batches if self.lissa_batch < self.operator.n else 1):
            rows = self._batch_rows(gen)
            u = torch.randn(p, generator=gen, dtype=self.dtype).to(self.operator.X.device)
            u /= u.norm()
            lam = 0.0
            for _ in range(iters):
                w = self.operator.matvec(u, rows)
                lam = float(u @ w)
                u = w / w.norm().clamp_min(1e-300)
            best = max(best, lam)
        return best


def _nice_ceil(x: float) -> float:
    """Round up to 1, 2 or 5 times a power of ten."""
    e = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 5, 10):
        if m * e >= x:
            return m * e
    return 10 * e
