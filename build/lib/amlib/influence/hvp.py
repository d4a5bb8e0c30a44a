"""Hessian-vector products and inverse-HVP solvers for (multiclass) logistic regression.

The Hessian of the training objective R(θ) = (1/n) Σ_i w_i ℓ_i + (l2/2)‖θ‖² is

    H = (1/n) Σ_i w_i (diag p_i − p_i p_iᵀ) ⊗ a_i a_iᵀ + l2·I,     a_i = [x_i, 1]

(binary: the scalar p_i(1 − p_i) in place of the C×C block). For V ∈ R^{K×D} the product is
``H·V = (1/n) Σ_i [(diag p_i − p_i p_iᵀ) V a_i] a_iᵀ + l2·V`` (influence-notes, "Multiclass"),
which this module evaluates for a batch of m vectors at once as two matrix products,
``U = X Vᵀ`` (n × mK) and ``Rᵀ X`` — O(n·K·d) time and O(n·m·K) extra memory, never a p×p
matrix (p = K·D; 206,949 for Caltech-101 on ResNet50 features) and never a copy of X.

Inverse HVPs ``s = (H + δI)⁻¹ v`` (δ = the optional ``damping``) come from one interface,
:class:`InverseHVP` / :func:`inverse_hvp`, with three methods:

- ``"exact"``: the dense Hessian and a Cholesky factorisation (cached for repeated solves);
  refused above ``max_exact_params`` (default 20,000: the dense matrix alone needs 8·p² bytes).
- ``"cg"``: conjugate gradients on the matrix-free product, for any number of right-hand sides
  at once, with a warm start ``x0``; reports the true relative residual ‖v − (H + δI)s‖/‖v‖.
  Optionally preconditioned: ``precondition="jacobi"`` (or ``True``) by diag(H), or
  ``precondition="kfac"`` by the Kronecker factorisation of :class:`KFACPreconditioner`,
  whose feature factor (:class:`FeatureGram`) depends on X only and can be built once and passed
  in as ``gram=``. A preconditioner changes the iteration count, never the solution.
- ``"lissa"``: the stochastic recursion of Agarwal et al. as the influence paper's code runs it
  (App. A.1.2; pytorch_influence_functions):
  ``h ← v + (1 − lissa_damping)·h − (H_batch h)/scale``, result ``h/scale``. Its fixed point is
  ``(H + (lissa_damping·scale)·I)⁻¹ v``: the original settings (``scale = 25``, ``damp = 0.01``)
  therefore solve with an effective damping of **0.25** in the Hessian's units, on top of any
  ``damping`` given here. Each of ``ceil(lissa_samples / lissa_batch)`` steps uses a fresh random
  batch of ``lissa_batch`` rows (1e6 samples in batches of 1024 → 977 steps). The recursion only
  converges while every batch Hessian's eigenvalues stay below ``(2 − lissa_damping)·scale``; a
  growing iterate raises :class:`LiSSADivergence` with a scale to try.

Multiclass without L2 or damping: H is singular along the directions that add one vector to every
class row (they leave the softmax unchanged). Every per-sample gradient is orthogonal to them
(Σ_c (p_ic − y_ic) = 0), so the influence is well defined: CG and LiSSA stay in the range of H,
and "exact" factorises ``H + μ·P₀`` where P₀ projects onto that null space — for a gradient v this
returns the pseudo-inverse solution H⁺v. Any other singularity is reported by
:class:`SingularHessianError`, which suggests ``l2`` or ``damping``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from .models import LogisticModel, check_theta

__all__ = ["HessianOperator", "apply_hessian", "feature_products", "shared_feature_products",
           "hvp", "dense_hessian", "null_space_shift", "conjugate_gradient", "FeatureGram",
           "KFACPreconditioner", "PRECONDITIONERS", "InverseHVP", "inverse_hvp", "IHVPResult",
           "LiSSADivergence", "SingularHessianError", "METHODS"]

METHODS = ("exact", "cg", "lissa")
#: values of ``InverseHVP(precondition=...)`` besides True (= "jacobi") and False/None (= none)
PRECONDITIONERS = ("jacobi", "kfac")


class LiSSADivergence(RuntimeError):
    """The LiSSA recursion diverged: its scale is below the largest batch-Hessian eigenvalue."""

    def __init__(self, message: str, suggested_scale: float):
        super().__init__(message)
        self.suggested_scale = suggested_scale


class SingularHessianError(RuntimeError):
    """H + δI could not be factorised: it is singular (or indefinite at this precision)."""


def _as_batch(V: torch.Tensor, p: int) -> tuple[torch.Tensor, bool]:
    single = V.ndim == 1
    Vb = V[None] if single else V
    if Vb.ndim != 2 or Vb.shape[1] != p:
        raise ValueError(f"vectors must have shape ({p},) or (m, {p}), got {tuple(V.shape)}")
    return Vb, single


def feature_products(model: LogisticModel, X: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """(n, m, K): u_ijk = x_i · V_j[k, :d] + V_j[k, d] (the bias entry when the model has one),
    i.e. a_iᵀ V_jᵀ for m flat parameter vectors V (m, p), from one product with X."""
    K, D, d = model.n_outputs, model.row_size, model.n_features
    m = V.shape[0]
    Vm = V.reshape(m, K, D)
    U = (X @ Vm[:, :, :d].reshape(m * K, d).T).view(X.shape[0], m, K)
    return U + Vm[:, :, d] if model.bias else U


def shared_feature_products(model: LogisticModel, X: torch.Tensor, V: torch.Tensor,
                            solver: "InverseHVP | None" = None) -> torch.Tensor:
    """:func:`feature_products` of V with X, reusing the products that ``solver``'s operator
    kept (see :meth:`HessianOperator.feature_products`) when it was built on this very X."""
    if solver is not None and solver.op.X is X:
        return solver.op.feature_products(V)
    return feature_products(model, X, V)


def apply_hessian(model: LogisticModel, X: torch.Tensor, P: torch.Tensor, V: torch.Tensor, *,
                  curv: torch.Tensor | None = None,
                  sample_weight: torch.Tensor | None = None,
                  U: torch.Tensor | None = None) -> torch.Tensor:
    """(1/n) Σ_i w_i [(diag p_i − p_i p_iᵀ) V_j a_i] ⊗ a_i for m vectors V (m, p) → (m, p).

    The data part of the Hessian for the probabilities ``P`` (n, K) of the rows ``X``: two matrix
    products with X, O(n·m·K) extra memory. Differentiable in ``P`` (the naive reference
    backpropagates through it); ``curv`` = P(1 − P) may be passed precomputed for binary models,
    and ``U`` = :func:`feature_products` of V (then only the product with Xᵀ remains).
    """
    K, D, d = model.n_outputs, model.row_size, model.n_features
    m, n = V.shape[0], X.shape[0]
    if U is None:
        U = feature_products(model, X, V)
    if model.binary:
        c = P * (1 - P) if curv is None else curv
        R = c[:, None, :] * U
    else:
        Pn = P[:, None, :]
        PU = Pn * U
        R = PU - Pn * PU.sum(dim=2, keepdim=True)
    if sample_weight is not None:
        R = R * sample_weight[:, None, None]
    R2 = R.reshape(n, m * K)
    parts = [(R2.T @ X).view(m, K, d)]
    if model.bias:
        parts.append(R.sum(dim=0)[:, :, None])
    out = torch.cat(parts, dim=2) if model.bias else parts[0]
    return out.reshape(m, K * D) / n


class HessianOperator:
    """The matrix-free Hessian (H + (l2 + damping)·I) of R at a fixed θ.

    Logits and probabilities are computed once (:attr:`logits`, :attr:`P`: the one pass over X
    at θ, which the ranking and the surrogate reuse, see :meth:`cached_at`); :meth:`matvec` then
    costs two matrix products with X, and ``matvec(..., remember=True)`` keeps the products X·v
    of its vectors for :meth:`feature_products`.
    ``matvec(V, rows=idx)`` uses the Hessian of the rows ``idx`` only (their mean), as LiSSA's
    minibatches do. ``sample_weight`` weights rows as in :func:`~amlib.influence.fit_logistic`.
    """

    def __init__(self, model: LogisticModel, theta: torch.Tensor, X: torch.Tensor, *,
                 damping: float = 0.0, sample_weight: torch.Tensor | None = None):
        check_theta(model, theta)
        if damping < 0 or not math.isfinite(damping):
            raise ValueError(f"damping must be a finite number >= 0, got {damping}")
        self.model, self.X = model, X
        self.n = X.shape[0]
        self.shift = float(model.l2) + float(damping)
        self.theta = theta.detach().clone()
        with torch.no_grad():
            self.logits = model.logits(self.theta, X)   # F = X Wᵀ + b: the one pass over X at θ
            P = model.probs_from_logits(self.logits)
        self.P = P
        self.curv = P * (1 - P) if model.binary else None   # binary: p(1 − p)
        self.w = sample_weight
        self.n_matvecs = 0   # products over all n rows (a batch of m rows counts m/n)
        self._remembered: list[tuple[torch.Tensor, torch.Tensor]] = []   # (v, X·v) pairs

    #: how many vectors' feature products :meth:`matvec` with ``remember=True`` keeps
    REMEMBER = 4

    def feature_products(self, V: torch.Tensor) -> torch.Tensor:
        """:func:`feature_products` of V (m, p) with this operator's X, reusing the products that
        ``matvec(..., remember=True)`` kept (the true-residual check of a solve keeps those of
        its solutions, which the ranking and the surrogate need next): only the rows of V not
        kept — compared entry by entry — cost a product with X."""
        cols, missing = [], []
        for j in range(V.shape[0]):
            hit = next((U for v, U in self._remembered
                        if v.shape == V[j].shape and v.dtype == V.dtype and torch.equal(v, V[j])),
                       None)
            cols.append(hit)
            if hit is None:
                missing.append(j)
        if missing:
            fresh = feature_products(self.model, self.X, V[missing])
            for i, j in enumerate(missing):
                cols[j] = fresh[:, i]
        return torch.stack(cols, dim=1)

    @property
    def n_params(self) -> int:
        return self.model.n_params

    def cached_at(self, theta: torch.Tensor, X: torch.Tensor) -> bool:
        """Whether :attr:`logits` and :attr:`P` are those of (θ, X): the same feature tensor and
        θ equal entry by entry. Callers at the same θ (the ranking's residuals P − Y, the
        surrogate's forward pass) then reuse them instead of another pass over X."""
        return (X is self.X and theta.shape == self.theta.shape
                and bool(torch.equal(theta.detach().to(self.theta.dtype), self.theta)))

    def _data_part(self, V: torch.Tensor, rows: torch.Tensor | None,
                   remember: bool = False) -> torch.Tensor:
        X, P, w, curv = self.X, self.P, self.w, self.curv
        U = None
        if rows is not None:
            X, P = X[rows], P[rows]
            w = None if w is None else w[rows]
            curv = None if curv is None else curv[rows]
        elif remember:
            U = feature_products(self.model, X, V)
            for j in range(V.shape[0]):
                self._remembered.append((V[j].detach().clone(), U[:, j].detach()))
            del self._remembered[:-self.REMEMBER]
        self.n_matvecs += V.shape[0] * X.shape[0] / self.n
        return apply_hessian(self.model, X, P, V, curv=curv, sample_weight=w, U=U)

    def matvec(self, V: torch.Tensor, rows: torch.Tensor | None = None, *,
               remember: bool = False) -> torch.Tensor:
        """(H + shift·I) V for V of shape (p,) or (m, p); ``rows``: a minibatch Hessian;
        ``remember``: keep V's feature products for :meth:`feature_products`."""
        Vb, single = _as_batch(V, self.n_params)
        out = self._data_part(Vb, rows, remember)
        if self.shift:
            out = out + self.shift * Vb
        return out[0] if single else out

    __call__ = matvec

    def diagonal(self, chunk: int = 4096) -> torch.Tensor:
        """diag(H + shift·I), from Σ_i p_ik(1 − p_ik) x_ij² in row chunks (no copy of X²)."""
        model = self.model
        K, D, d = model.n_outputs, model.row_size, model.n_features
        out = torch.zeros(K, D, dtype=self.X.dtype, device=self.X.device)
        curv = self.P * (1 - self.P)
        if self.w is not None:
            curv = curv * self.w[:, None]
        for lo in range(0, self.n, chunk):
            Xc = self.X[lo:lo + chunk]
            out[:, :d] += curv[lo:lo + chunk].T @ (Xc * Xc)
        if model.bias:
            out[:, d] = curv.sum(dim=0)
        return out.reshape(-1) / self.n + self.shift


def hvp(model: LogisticModel, theta: torch.Tensor, X: torch.Tensor, V: torch.Tensor, *,
        damping: float = 0.0) -> torch.Tensor:
    """(H(θ) + (l2 + damping)·I) V, matrix-free, for V of shape (p,) or (m, p)."""
    X = model.validate(theta, X)
    return HessianOperator(model, theta, X, damping=damping).matvec(V.to(X.dtype))


def dense_hessian(model: LogisticModel, theta: torch.Tensor, X: torch.Tensor, *,
                  sample_weight: torch.Tensor | None = None,
                  max_entries: int = 20_000_000) -> torch.Tensor:
    """The data part (1/n) Σ_i w_i (diag p_i − p_i p_iᵀ) ⊗ a_i a_iᵀ as a dense p×p matrix.

    Built from row chunks so that no intermediate exceeds ``max_entries`` numbers. No L2 term.
    """
    K, D = model.n_outputs, model.row_size
    p = model.n_params
    n = X.shape[0]
    with torch.no_grad():
        P = model.probs(theta.detach(), X)
    H = torch.zeros(p, p, dtype=X.dtype, device=X.device)
    chunk = max(1, max_entries // max(p, 1))
    for lo in range(0, n, chunk):
        Xc = X[lo:lo + chunk]
        A = torch.cat([Xc, torch.ones(len(Xc), 1, dtype=X.dtype, device=X.device)], 1) \
            if model.bias else Xc
        Pc = P[lo:lo + chunk]
        wc = None if sample_weight is None else sample_weight[lo:lo + chunk]
        if model.binary:
            s = Pc[:, 0] * (1 - Pc[:, 0])
            if wc is not None:
                s = s * wc
            H += (A * s[:, None]).T @ A
            continue
        ww = torch.ones(len(Xc), dtype=X.dtype, device=X.device) if wc is None else wc
        for k in range(K):
            blk = slice(k * D, (k + 1) * D)
            H[blk, blk] += (A * (ww * Pc[:, k])[:, None]).T @ A
        M = (Pc[:, :, None] * A[:, None, :]).reshape(len(Xc), p) * ww.sqrt()[:, None]
        H -= M.T @ M
    H /= n
    return 0.5 * (H + H.T)


def null_space_shift(model: LogisticModel, H: torch.Tensor) -> torch.Tensor:
    """μ·P₀ with P₀ = (1/K)·11ᵀ ⊗ I_D the projector onto the softmax's invariant directions
    (the same vector added to every class row) and μ the mean diagonal of H."""
    K, D = model.n_outputs, model.row_size
    mu = float(H.diagonal().mean().clamp_min(1e-12))
    ones = torch.full((K, K), 1.0 / K, dtype=H.dtype, device=H.device)
    return mu * torch.kron(ones, torch.eye(D, dtype=H.dtype, device=H.device))


def conjugate_gradient(matvec, B: torch.Tensor, *, x0: torch.Tensor | None = None,
                       tol: float = 1e-10, max_iter: int = 1000,
                       precond: torch.Tensor | None = None,
                       precond_fn=None) -> tuple[torch.Tensor, dict]:
    """Solve A X = B for a symmetric positive (semi-)definite A given by ``matvec``.

    ``B`` is (m, p): m systems run together (one batched product per iteration) and each stops
    updating once its recursive relative residual is ≤ ``tol``. ``precond`` is the diagonal of a
    Jacobi preconditioner; ``precond_fn`` any symmetric positive definite M⁻¹ applied to (m, p).
    Returns (X, info) with ``iterations`` and the recursive residuals.
    """
    m = B.shape[0]
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
        active = res > tol
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

    def __init__(self, op: "HessianOperator", gram: FeatureGram):
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


class InverseHVP:
    """(H(θ) + (l2 + δ)·I)⁻¹ v at a fixed θ by ``"exact"``, ``"cg"`` or ``"lissa"``.

    Build once per θ, then :meth:`solve` any number of vectors (shape (p,) or (m, p)); the exact
    factorisation and LiSSA's sampling generator are reused. ``info`` is the last
    :class:`IHVPResult`.

    Parameters: ``damping`` δ ≥ 0 added for every method; ``tol``/``max_iter`` for CG (default
    tol 1e-10 in float64, 1e-6 in float32; max_iter 1000); ``precondition`` for CG: ``False`` /
    ``None`` none, ``True`` / ``"jacobi"`` diag(H + δI), ``"kfac"`` the Kronecker factorisation
    A ⊗ G + δI of :class:`KFACPreconditioner` (the big win for softmax models on ill-conditioned
    features); ``gram`` a prebuilt :class:`FeatureGram` for ``"kfac"`` (else built here from X
    and ``sample_weight``: one D × D eigendecomposition);
    ``lissa_scale``, ``lissa_damping`` (scaled units: adds lissa_damping·lissa_scale to δ),
    ``lissa_samples``, ``lissa_batch`` and ``seed`` for LiSSA; ``max_exact_params`` bounds exact.
    """

    def __init__(self, model: LogisticModel, theta: torch.Tensor, X: torch.Tensor, *,
                 method: str = "cg", damping: float = 0.0, tol: float | None = None,
                 max_iter: int | None = None, precondition: bool | str | None = False,
                 gram: FeatureGram | None = None,
                 lissa_scale: float = 25.0, lissa_damping: float = 0.01,
                 lissa_samples: int = 1_000_000, lissa_batch: int = 1024, seed: int = 0,
                 max_exact_params: int = 20_000, sample_weight: torch.Tensor | None = None):
        if method not in METHODS:
            raise ValueError(f"unknown inverse-HVP method {method!r}; use one of {METHODS}")
        self.model, self.method = model, method
        self.op = HessianOperator(model, theta, X, damping=damping, sample_weight=sample_weight)
        self.damping = float(damping)
        self.dtype = X.dtype
        self.tol = tol if tol is not None else (1e-10 if X.dtype == torch.float64 else 1e-6)
        self.max_iter = 1000 if max_iter is None else int(max_iter)
        if precondition is True:
            precondition = "jacobi"
        elif precondition is False or precondition is None:
            precondition = None
        elif precondition not in PRECONDITIONERS:
            raise ValueError(f"unknown precondition {precondition!r}; use False, True, or one "
                             f"of {PRECONDITIONERS}")
        self.precondition = precondition
        self.info: IHVPResult | None = None
        self._chol = None
        self._diag = None
        self._kfac = None
        if method == "exact":
            p = model.n_params
            if p > max_exact_params:
                raise ValueError(
                    f"method='exact' forms the dense {p}×{p} Hessian ({8 * p * p / 2**30:.1f} GiB "
                    f"in float64) and p = {p} > max_exact_params = {max_exact_params}; use "
                    "method='cg' or 'lissa', or raise max_exact_params if you have the memory")
            t0 = time.perf_counter()
            H = dense_hessian(model, theta, X, sample_weight=sample_weight)
            H.diagonal().add_(self.op.shift)
            if not model.binary and self.op.shift == 0:
                H = H + null_space_shift(model, H)
            L, err = torch.linalg.cholesky_ex(H)
            if int(err) != 0:
                raise SingularHessianError(
                    f"the Hessian H + {self.op.shift:g}·I is singular or indefinite (Cholesky "
                    f"failed at column {int(err)}; collinear or constant features, or a "
                    "saturated model): add an L2 penalty (l2 > 0 in the model) or damping > 0")
            self._chol = L
            self.factor_seconds = time.perf_counter() - t0
        elif method == "lissa":
            if not (lissa_scale > 0 and 0 <= lissa_damping < 1):
                raise ValueError("lissa_scale must be > 0 and 0 <= lissa_damping < 1 (it is the "
                                 "original code's `damp`, in scaled units)")
            if lissa_samples < 1 or lissa_batch < 1:
                raise ValueError("lissa_samples and lissa_batch must be >= 1")
            self.lissa_scale, self.lissa_damping = float(lissa_scale), float(lissa_damping)
            self.lissa_batch = int(min(lissa_batch, self.op.n))
            self.lissa_steps = int(math.ceil(lissa_samples / lissa_batch))
            self.seed = seed
        if method == "cg" and precondition == "jacobi":
            self._diag = self.op.diagonal()
        elif method == "cg" and precondition == "kfac":
            if gram is None:
                gram = FeatureGram.from_features(model, X, sample_weight=sample_weight)
            self._kfac = KFACPreconditioner(self.op, gram)

    @property
    def effective_damping(self) -> float:
        """δ beyond l2: ``damping`` (+ lissa_damping·lissa_scale for LiSSA)."""
        if self.method == "lissa":
            return self.damping + self.lissa_damping * self.lissa_scale
        return self.damping

    def residual(self, v: torch.Tensor, s: torch.Tensor) -> float:
        """max_j ‖v_j − (H + δI)s_j‖ / ‖v_j‖ with δ the effective damping."""
        extra = self.effective_damping - self.damping
        # the solutions' feature products X·s are kept: the ranking and the surrogate reuse them
        r = v - self.op.matvec(s, remember=True) - extra * s
        vn = v.norm(dim=1)
        rel = torch.where(vn > 0, r.norm(dim=1) / torch.where(vn > 0, vn, 1.0), r.norm(dim=1))
        return float(rel.max())

    def solve(self, v: torch.Tensor, x0: torch.Tensor | None = None) -> IHVPResult:
        p = self.model.n_params
        Vb, single = _as_batch(v.detach().to(self.dtype), p)
        start = time.perf_counter()
        passes0 = self.op.n_matvecs
        extra = {}
        if self.method == "exact":
            S = torch.cholesky_solve(Vb.T.contiguous(), self._chol).T
            iters = 1
        elif self.method == "cg":
            x = None if x0 is None else _as_batch(x0.detach().to(self.dtype), p)[0]
            S, info = conjugate_gradient(self.op.matvec, Vb, x0=x, tol=self.tol,
                                         max_iter=self.max_iter, precond=self._diag,
                                         precond_fn=self._kfac)
            iters = info["iterations"]
            extra["precondition"] = self.precondition
        else:
            S, iters = self._lissa(Vb)
        rel = self.residual(Vb, S)
        if self.method == "cg":
            extra["converged"] = rel <= max(10 * self.tol, 1e-12)
        result = IHVPResult(S[0] if single else S, rel, iters, time.perf_counter() - start,
                            self.method, self.op.n_matvecs - passes0, self.effective_damping,
                            extra)
        self.info = result
        return result

    # ----- LiSSA ----------------------------------------------------------------------------
    def _lissa(self, V: torch.Tensor) -> tuple[torch.Tensor, int]:
        gen = torch.Generator().manual_seed(int(self.seed))
        scale, damp = self.lissa_scale, self.lissa_damping
        n, batch = self.op.n, self.lissa_batch
        h = V.clone()
        vnorm = float(V.norm(dim=1).max())
        for t in range(self.lissa_steps):
            rows = None if batch >= n else torch.randperm(n, generator=gen)[:batch].to(V.device)
            h = V + (1 - damp) * h - self.op.matvec(h, rows) / scale
            if t % 10 == 9 or t == self.lissa_steps - 1:
                hn = float(h.norm(dim=1).max())
                # while every batch operator is non-expansive, ‖h_t‖ ≤ (t + 1)‖v‖
                if not math.isfinite(hn) or hn > 10 * (t + 2) * max(vnorm, 1e-300):
                    self._diverged(t + 1, hn, vnorm)
        S = h / scale
        if self.residual(V, S) > 1.0:   # worse than the zero vector: slow divergence
            self._diverged(self.lissa_steps, float(h.norm(dim=1).max()), vnorm)
        return S, self.lissa_steps

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
        n, batch = self.op.n, self.lissa_batch
        best = 0.0
        p = self.model.n_params
        for _ in range(n_batches if batch < n else 1):
            rows = None if batch >= n else torch.randperm(n, generator=gen)[:batch].to(
                self.op.X.device)
            u = torch.randn(p, generator=gen, dtype=self.dtype).to(self.op.X.device)
            u /= u.norm()
            lam = 0.0
            for _ in range(iters):
                w = self.op.matvec(u, rows)
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


def inverse_hvp(model: LogisticModel, theta: torch.Tensor, X, v: torch.Tensor, *,
                method: str = "cg", damping: float = 0.0, x0: torch.Tensor | None = None,
                **options) -> IHVPResult:
    """One-shot (H(θ) + (l2 + damping)·I)⁻¹ v; see :class:`InverseHVP` for the options."""
    X = model.validate(theta, X)
    return InverseHVP(model, theta, X, method=method, damping=damping, **options).solve(v, x0=x0)
