"""Preconditioners for conjugate gradients on H + shift·I: Jacobi and K-FAC.

A preconditioner is any callable ``M⁻¹(R)`` on a batch R (m, p) of vectors, symmetric positive
definite; :class:`~amlib.influence.solvers.CGSolver` takes one (``precondition="jacobi"`` or
``"kfac"``). It changes the number of CG iterations, never the solution. Both are built from a
:class:`~amlib.influence.hessian.HessianOperator` at the current θ:

- :class:`JacobiPreconditioner`: diag(H + shift·I);
- :class:`KFACPreconditioner`: the Kronecker factorisation A ⊗ G + shift·I (Martens & Grosse),
  whose feature factor :class:`FeatureGram` depends on X only and is built once per data set
  (:meth:`FeatureGram.cached` keeps the last few, keyed so that a changed X is never reused).

``precondition="auto"`` uses K-FAC only where it pays: building and applying it costs about as
much as a third of a Hessian-vector product per iteration at the Caltech-101 shape plus the
Gram's eigendecomposition once per data set, and on a well-conditioned system it saves no
iteration. :func:`condition_estimate` bounds the condition number of H + shift·I cheaply (one
power iteration on the features, no Hessian product), and "auto" picks K-FAC when it is at least
:data:`KFAC_MIN_CONDITION` — the crossover measured in ``benchmarks/kfac_crossover.py``
(``benchmarks/README.md``).
"""
from __future__ import annotations

import math
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import torch

from .hessian import HessianOperator
from .models import LogisticModel

__all__ = ["PRECONDITIONERS", "JacobiPreconditioner", "FeatureGram", "KFACPreconditioner",
           "make_preconditioner", "normalise_precondition", "condition_estimate",
           "KFAC_MIN_CONDITION", "choose_preconditioner"]

#: values of ``precondition=`` besides True (= "jacobi") and False/None (= none)
PRECONDITIONERS = ("jacobi", "kfac", "auto")

#: ``precondition="auto"`` uses K-FAC when :func:`condition_estimate` is at least this (the
#: crossover measured by ``benchmarks/kfac_crossover.py``, see ``benchmarks/README.md``)
KFAC_MIN_CONDITION = 1e3


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
    (:meth:`from_features`, or :meth:`cached`, which every K-FAC solve without a ``gram`` uses)
    and passes it as ``InverseHVP(..., precondition="kfac", gram=...)``.
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

    #: how many Grams :meth:`cached` keeps (least recently used dropped first)
    CACHE_SIZE = 4
    _cache = OrderedDict()   # id(X) → (weak reference to X, key, Gram); not a dataclass field
    builds = 0   # how many Grams :meth:`cached` has built (the cache's misses)

    @classmethod
    def cached(cls, model: LogisticModel, X: torch.Tensor,
               sample_weight: torch.Tensor | None = None) -> "FeatureGram":
        """:meth:`from_features`, built once per data set and reused while X is unchanged.

        The key is the feature tensor itself (held by a weak reference, so a freed tensor whose
        memory is reused by a new one never matches), its version counter (bumped by every
        in-place change through torch), its shape and dtype, and a checksum of its values and of
        the sample weights (sum and norm: changes made behind torch's back, e.g. through a NumPy
        view, are caught too). Anything else builds a new Gram.
        """
        key = (model.bias, model.n_features, tuple(X.shape), X.dtype, X.device, X._version,
               _checksum(X), None if sample_weight is None else _checksum(sample_weight))
        entry = cls._cache.get(id(X))
        if entry is not None and entry[0]() is X and entry[1] == key:
            cls._cache.move_to_end(id(X))
            return entry[2]
        gram = cls.from_features(model, X, sample_weight=sample_weight)
        FeatureGram.builds += 1
        cls._cache[id(X)] = (weakref.ref(X, _forget), key, gram)
        cls._cache.move_to_end(id(X))
        while len(cls._cache) > cls.CACHE_SIZE:
            cls._cache.popitem(last=False)
        return gram

    @classmethod
    def clear_cache(cls) -> None:
        cls._cache.clear()


def _forget(ref) -> None:
    """Drop the cache entry of a feature tensor that was freed (its Gram is D × D numbers)."""
    for k, entry in list(FeatureGram._cache.items()):
        if entry[0] is ref:
            FeatureGram._cache.pop(k, None)


def _checksum(T: torch.Tensor) -> tuple[float, float]:
    """(Σ t, ‖t‖) of a tensor: two passes, no copy."""
    return float(T.sum()), float(torch.linalg.vector_norm(T))


def condition_estimate(op: HessianOperator, iters: int = 20, seed: int = 0) -> float:
    """κ̄ = 1 + λ̄/shift, an estimate from above of the condition number of H + shift·I.

    The data Hessian is H = (1/n) Σ_i w_i S_i ⊗ a_i a_iᵀ with S_i = diag p_i − p_i p_iᵀ, whose
    largest eigenvalue is at most c_i = max_k 2 p_ik(1 − p_ik) (Gershgorin; binary: the scalar
    p_i(1 − p_i)). So H ⪯ I_K ⊗ G_c with G_c = (1/n) Σ_i w_i c_i a_i a_iᵀ, and λ̄ = λ_max(G_c)
    — found by ``iters`` power iterations, each two products of the features with one vector
    (about 1/K of a Hessian-vector product) — bounds λ_max(H) (up to the power iteration's
    shortfall), while λ_min(H + shift·I) ≥ shift. ``inf`` when shift = 0.
    """
    if op.shift <= 0:
        return math.inf
    model, X, P = op.model, op.X, op.P
    c = P[:, 0] * (1 - P[:, 0]) if model.binary else (2 * P * (1 - P)).amax(dim=1)
    if op.w is not None:
        c = c * op.w
    c = c.to(X.dtype)
    d = model.n_features
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(model.row_size, generator=g, dtype=torch.float64).to(dtype=X.dtype,
                                                                        device=X.device)
    lam = 0.0
    for _ in range(iters):
        v = v / v.norm()
        Av = X @ v[:d] + (v[d] if model.bias else 0.0)          # a_iᵀ v for every row
        cAv = c * Av
        w = torch.empty_like(v)
        w[:d] = X.T @ cAv
        if model.bias:
            w[d] = cAv.sum()
        w /= op.n
        lam = float(v @ w)                                       # Rayleigh quotient
        v = w
    return 1.0 + max(lam, 0.0) / op.shift


def choose_preconditioner(op: HessianOperator) -> tuple[str | None, float]:
    """The rule of ``precondition="auto"``: ("kfac", κ̄) when :func:`condition_estimate` κ̄ ≥
    :data:`KFAC_MIN_CONDITION`, else (None, κ̄)."""
    kappa = condition_estimate(op)
    return ("kfac" if kappa >= KFAC_MIN_CONDITION else None), kappa


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


def preconditioner_name(preconditioner) -> str | None:
    """"kfac", "jacobi" or None for what :func:`make_preconditioner` returned."""
    if isinstance(preconditioner, KFACPreconditioner):
        return "kfac"
    return "jacobi" if isinstance(preconditioner, JacobiPreconditioner) else None


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


def make_preconditioner(precondition, op: HessianOperator, gram: "FeatureGram | None" = None,
                        features: torch.Tensor | None = None):
    """The preconditioner named by ``precondition`` (see :func:`normalise_precondition`) for the
    operator ``op``, or None. "kfac" uses ``gram`` when given, else the Gram of ``features``
    (default ``op``'s X) and ``op``'s sample weights from :meth:`FeatureGram.cached` (one D × D
    eigendecomposition per data set). "auto": K-FAC or none by :func:`choose_preconditioner`."""
    name = normalise_precondition(precondition)
    if name == "auto":
        name, op.condition_estimate = choose_preconditioner(op)
    if name == "jacobi":
        return JacobiPreconditioner(op)
    if name == "kfac":
        if gram is None:
            X = op.X if features is None else features
            gram = FeatureGram.cached(op.model, X, sample_weight=op.w)
        return KFACPreconditioner(op, gram)
    return None
