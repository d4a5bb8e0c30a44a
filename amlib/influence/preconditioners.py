"""Preconditioners for conjugate gradients on H + shift·I: Jacobi and K-FAC.

A preconditioner is any callable ``M⁻¹(R)`` on a batch R (m, p) of vectors, symmetric positive
definite; :class:`~amlib.influence.solvers.CGSolver` takes one (``precondition="jacobi"`` or
``"kfac"``). It changes the number of CG iterations, never the solution. Both are built from a
:class:`~amlib.influence.hessian.HessianOperator` at the current θ:

- :class:`JacobiPreconditioner`: diag(H + shift·I);
- :class:`KFACPreconditioner`: the Kronecker factorisation A ⊗ G + shift·I (Martens & Grosse),
  whose feature factor :class:`FeatureGram` depends on X only and is built once per data set.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .hessian import HessianOperator
from .models import LogisticModel

__all__ = ["PRECONDITIONERS", "JacobiPreconditioner", "FeatureGram", "KFACPreconditioner",
           "make_preconditioner", "normalise_precondition"]

#: values of ``precondition=`` besides True (= "jacobi") and False/None (= none)
PRECONDITIONERS = ("jacobi", "kfac")


class JacobiPreconditioner:
    """M⁻¹R = R / diag(H + shift·I) (:meth:`HessianOperator.diagonal`)."""

    def __init__(self, op: HessianOperator):
        self.inverse_diagonal = 1.0 / op.diagonal()

    def __call__(self, R: torch.Tensor) -> torch.Tensor:
        return R * self.inverse_diagonal


@dataclass
class FeatureGram:
    """The feature factor of the K-FAC preconditioner, eigendecomposed.

    ``G = (1/n) Σ_i w_i a_i a_iᵀ = U diag(λ) Uᵀ`` with ``a_i = [x_i, 1]`` (``[x_i]`` without
    bias), a D × D matrix (D = d + bias). It depends on the features (and sample weights) only,
    not on θ, so an attack that builds a new :class:`InverseHVP` at every θ builds this once
    (:meth:`from_features`) and passes it as ``InverseHVP(..., precondition="kfac", gram=...)``.
    The eigendecomposition is done in the features' precision: it only preconditions.
    """

    eigenvalues: torch.Tensor    # λ (D,), clamped at 0
    eigenvectors: torch.Tensor   # U (D, D)
    bias: bool
    seconds: float = 0.0

    @property
    def row_size(self) -> int:
        return self.eigenvalues.shape[0]

    @classmethod
    def from_features(cls, model: LogisticModel, X: torch.Tensor,
                      sample_weight: torch.Tensor | None = None,
                      chunk: int = 8192) -> "FeatureGram":
        """G for ``model``'s layout (bias column or not) from the rows of X; no copy of X
        (weighted rows are formed in chunks of ``chunk`` rows)."""
        start = time.perf_counter()
        n, d = X.shape
        if d != model.n_features:
            raise ValueError(f"X has {d} columns but the model has {model.n_features} features")
        D = model.row_size
        G = torch.empty(D, D, dtype=X.dtype, device=X.device)
        if sample_weight is None:
            G[:d, :d] = X.T @ X
            col, total = X.sum(dim=0), float(n)
        else:
            w = sample_weight.to(X)
            G[:d, :d] = 0
            for lo in range(0, n, chunk):
                G[:d, :d] += (X[lo:lo + chunk] * w[lo:lo + chunk, None]).T @ X[lo:lo + chunk]
            col, total = w @ X, float(w.sum())
        if model.bias:
            G[:d, d], G[d, :d], G[d, d] = col, col, total
        G.div_(n)
        lam, U = torch.linalg.eigh(G)
        return cls(lam.clamp_min(0), U, model.bias, time.perf_counter() - start)


class KFACPreconditioner:
    """M⁻¹ for the Kronecker-factored approximation of H + shift·I (K-FAC, Martens & Grosse).

    The data Hessian H = (1/n) Σ_i w_i S_i ⊗ a_i a_iᵀ, S_i = diag p_i − p_i p_iᵀ (binary: the
    scalar p_i(1 − p_i)), is approximated by treating the curvature and the features as
    independent:

        M = A ⊗ G + shift·I,   A = Σ_i w_i S_i / Σ_i w_i  (K × K, per θ),
                               G = (1/n) Σ_i w_i a_i a_iᵀ   (D × D, :class:`FeatureGram`).

    With A = Q diag(σ) Qᵀ and G = U diag(λ) Uᵀ, M has eigenvectors q_k ⊗ u_j and eigenvalues
    σ_k λ_j + shift, so for V (K × D) M⁻¹V = Q [(Qᵀ V U) / (σλᵀ + shift)] Uᵀ: two small
    matrix products per side, O(K²D + KD²) per vector. Multiclass without shift: A·1 = 0 (the
    softmax's invariant direction), so σ for 1/√K is replaced by the mean of σ (as
    :func:`null_space_shift` does for the exact solve), and every denominator is kept above
    1e-6 of the largest: M stays symmetric positive definite, so CG converges to the same
    solution as without it.
    """

    def __init__(self, op: HessianOperator, gram: FeatureGram):
        model = op.model
        K, D = model.n_outputs, model.row_size
        if gram.row_size != D or gram.bias != model.bias:
            raise ValueError(f"the FeatureGram is for rows of {gram.row_size} numbers "
                             f"(bias={gram.bias}) but the model has d + bias = {D} "
                             f"(bias={model.bias}); build it with FeatureGram.from_features("
                             "model, X)")
        P, w = op.P, op.w
        if model.binary:
            curv = P * (1 - P)
            A = (curv if w is None else curv * w[:, None]).sum(dim=0).reshape(1, 1)
        else:
            Pw = P if w is None else P * w[:, None]
            A = torch.diag(Pw.sum(dim=0)) - Pw.T @ P
        total = float(P.shape[0] if w is None else w.sum())
        A = A.double() / max(total, 1e-300)
        sigma, Q = torch.linalg.eigh(0.5 * (A + A.T))
        sigma = sigma.clamp_min(0)
        if not model.binary and op.shift == 0:
            # the eigenvector for σ ≈ 0 is ±1/√K: give it an ordinary eigenvalue
            null = int((Q.sum(dim=0).abs() / math.sqrt(K)).argmax())
            sigma[null] = sigma.mean()
        lam = gram.eigenvalues.to(device=P.device)
        den = sigma.to(lam.dtype)[:, None] * lam[None, :] + op.shift
        self.den = den.clamp_min(1e-6 * float(den.max())).to(op.X.dtype)
        self.Q = Q.to(device=P.device, dtype=op.X.dtype)
        self.U = gram.eigenvectors.to(device=P.device, dtype=op.X.dtype)
        self.shape = (K, D)

    def __call__(self, R: torch.Tensor) -> torch.Tensor:
        """M⁻¹R_j = Q [(Qᵀ R_j U) / (σλᵀ + shift)] Uᵀ for every row R_j (a K × D matrix) of R.

        The D × D products run on all m·K rows at once; the K × K mixing is one 2-D product on
        the (K, m·D) rearrangement (a broadcast batched product is several times slower).
        """
        K, D = self.shape
        m = R.shape[0]
        T = _mix_classes(self.Q.T, (R.reshape(m * K, D) @ self.U).view(m, K, D)) / self.den
        return (_mix_classes(self.Q, T).reshape(m * K, D) @ self.U.T).reshape(R.shape)


def _mix_classes(A: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """A @ T_j for every (K, D) slice T_j of T (m, K, D), as one (K, K) × (K, m·D) product."""
    m, K, D = T.shape
    out = (A @ T.transpose(0, 1).reshape(K, m * D)).view(K, m, D)
    return out.transpose(0, 1).reshape(m, K, D)


def normalise_precondition(precondition) -> str | None:
    """``True`` → "jacobi", ``False``/``None`` → None, a name from :data:`PRECONDITIONERS`
    unchanged; anything else raises ``ValueError``."""
    if precondition is True:
        return "jacobi"
    if precondition is False or precondition is None:
        return None
    if precondition not in PRECONDITIONERS:
        raise ValueError(f"unknown precondition {precondition!r}; use False, True, or one "
                         f"of {PRECONDITIONERS}")
    return precondition


def make_preconditioner(precondition, op: HessianOperator, gram: "FeatureGram | None" = None):
    """The preconditioner named by ``precondition`` (see :func:`normalise_precondition`) for the
    operator ``op``, or None. "kfac" uses ``gram`` when given, else builds it from ``op``'s X and
    sample weights (one D × D eigendecomposition)."""
    name = normalise_precondition(precondition)
    if name == "jacobi":
        return JacobiPreconditioner(op)
    if name == "kfac":
        if gram is None:
            gram = FeatureGram.from_features(op.model, op.X, sample_weight=op.w)
        return KFACPreconditioner(op, gram)
    return None
