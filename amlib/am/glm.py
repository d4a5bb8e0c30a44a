"""Generalised linear models for the lower level of BLAMM (AM paper, Appendix C.1–C.2).

.. rubric:: Public API

- :func:`get_family` (``"gaussian"``, ``"bernoulli"`` = ``"binomial"``, ``"poisson"``) returns a
  :class:`Family`: a canonical-link exponential family given by its log-partition ``A`` (eq. 18),
  with ``mean = A'``, ``variance = A''`` and the per-row loss ``nll(y, eta)`` (half the deviance).
- :func:`irls` — the missingness-weighted IRLS of Algorithm 1 (gradient eq. 20, Hessian eq. 21).
  It minimises ``f(θ) = (1/N) Σ_k Σ_i w[k, i] · J(y_i, ⟨X[k, i], θ⟩) + (l2/2)·‖θ‖²`` where ``k``
  runs over missingness patterns (one design matrix per pattern, eq. 8).  Stops when the relative
  objective change falls below ``tol``; raises :class:`IRLSConvergenceError` (with diagnostics)
  when the objective is not finite or ``max_iter`` is reached, and :class:`SingularDesignError`
  when the Hessian cannot be factorised.
- :func:`solve_lower_level` — :func:`irls` with the paper's fallback (App. D.3): when the solve
  fails or ``|intercept| > 1e10`` it is solved again with an added L2 penalty of ``1e-3``.
- :func:`constrained_mle` — θα of eq. 22: the MLE with some coefficients fixed at zero.
- :func:`kl_divergence` — ``(1/N) Σ_i KL(p(y|x_i; θα) ‖ p(y|x_i; θ))`` (App. C.2), exact for any
  canonical family as the Bregman divergence of ``A``.
- :func:`ate_per_row` / :func:`ate` — the regression estimator of the ATE (App. C.2).

Everything is plain torch (float64 recommended); nothing here is trained by gradient steps.
Design matrices carry their own intercept column (see :func:`add_intercept`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

__all__ = ["Family", "GAUSSIAN", "BERNOULLI", "POISSON", "get_family", "add_intercept",
           "IRLSResult", "IRLSConvergenceError", "SingularDesignError", "irls",
           "solve_lower_level", "constrained_mle", "kl_divergence", "ate_per_row", "ate"]


@dataclass(frozen=True)
class Family:
    """A canonical-link GLM family ``p(y|η) = h(y) exp(ηy − A(η))`` (eq. 18, dispersion 1)."""

    name: str

    def log_partition(self, eta: torch.Tensor) -> torch.Tensor:
        """``A(η)``."""
        if self.name == "gaussian":
            return 0.5 * eta ** 2
        if self.name == "bernoulli":
            return F.softplus(eta)
        return torch.exp(eta)

    def mean(self, eta: torch.Tensor) -> torch.Tensor:
        """``A'(η)``: the mean of ``y`` (identity, sigmoid or exp)."""
        if self.name == "gaussian":
            return eta
        if self.name == "bernoulli":
            return torch.sigmoid(eta)
        return torch.exp(eta)

    def variance(self, eta: torch.Tensor) -> torch.Tensor:
        """``A''(η)``: the variance function that weights IRLS (eq. 21)."""
        if self.name == "gaussian":
            return torch.ones_like(eta)
        if self.name == "bernoulli":
            p = torch.sigmoid(eta)
            return p * (1 - p)
        return torch.exp(eta)

    def nll(self, y: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        """Per-row score ``J = A(η) − yη + c(y)``, with ``c`` chosen so that ``J`` is half the
        unit deviance (non-negative, zero at a perfect fit)."""
        if self.name == "gaussian":
            return 0.5 * (y - eta) ** 2
        if self.name == "bernoulli":
            return F.softplus(eta) - y * eta
        ylogy = torch.where(y > 0, y * torch.log(torch.clamp(y, min=1e-300)), torch.zeros_like(y))
        return torch.exp(eta) - y * eta - (y - ylogy)

    def validate_response(self, y: torch.Tensor) -> None:
        """Raise a clear error when ``y`` is outside the family's support."""
        if not torch.isfinite(y).all():
            raise ValueError(f"the response has NaN or infinite values; the {self.name} GLM "
                             "needs a complete response (the attacker's data must be complete)")
        if self.name == "bernoulli" and not torch.all((y == 0) | (y == 1)):
            raise ValueError("a bernoulli response must be coded 0/1")
        if self.name == "poisson" and torch.any(y < 0):
            raise ValueError("a poisson response must be non-negative")


GAUSSIAN, BERNOULLI, POISSON = Family("gaussian"), Family("bernoulli"), Family("poisson")
_ALIASES = {"gaussian": GAUSSIAN, "normal": GAUSSIAN, "linear": GAUSSIAN,
            "bernoulli": BERNOULLI, "binomial": BERNOULLI, "logistic": BERNOULLI,
            "poisson": POISSON}


def get_family(family: str | Family) -> Family:
    """The :class:`Family` named ``family`` (gaussian, bernoulli/binomial/logistic, poisson)."""
    if isinstance(family, Family):
        return family
    key = str(family).lower()
    if key not in _ALIASES:
        raise ValueError(f"unknown GLM family {family!r}; use one of {sorted(_ALIASES)}")
    return _ALIASES[key]


def add_intercept(X: torch.Tensor) -> torch.Tensor:
    """Prepend a column of ones to the last axis of ``X`` (coefficient 0 is the intercept)."""
    ones = torch.ones(*X.shape[:-1], 1, dtype=X.dtype, device=X.device)
    return torch.cat([ones, X], dim=-1)


class IRLSConvergenceError(RuntimeError):
    """IRLS did not converge; ``diagnostics`` holds iterations, objective history and ``|θ|``."""

    def __init__(self, message: str, diagnostics: dict):
        super().__init__(f"{message} (diagnostics: {diagnostics})")
        self.diagnostics = diagnostics


class SingularDesignError(RuntimeError):
    """The weighted Hessian ``Σ w A'' x xᵀ`` is singular (collinear/constant columns, or weights
    that vanish on the rows that identify a coefficient).  Add ``l2 > 0`` or drop the column."""


@dataclass
class IRLSResult:
    """The solution of Algorithm 1 plus what the implicit gradient needs."""

    theta: torch.Tensor
    objective: float
    n_iter: int
    converged: bool
    l2: float
    history: list = field(default_factory=list)
    cholesky: torch.Tensor | None = None  # factor of the Hessian at theta (eq. 21)


def _as_patterns(X: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None):
    """Bring ``X`` to (K, N, p) and ``weights`` to (K, N), checking shapes and values."""
    if X.dim() == 2:
        X = X.unsqueeze(0)
    if X.dim() != 3:
        raise ValueError(f"X must be (N, p) or (K, N, p), got shape {tuple(X.shape)}")
    K, N, _ = X.shape
    if y.shape != (N,):
        raise ValueError(f"y must have shape ({N},) to match X, got {tuple(y.shape)}")
    if weights is None:
        weights = torch.ones(K, N, dtype=X.dtype, device=X.device)
    elif weights.dim() == 1:
        weights = weights.unsqueeze(0)
    if weights.shape != (K, N):
        raise ValueError(f"weights must have shape ({K}, {N}) to match X, got "
                         f"{tuple(weights.shape)}")
    if not torch.isfinite(X).all():
        raise ValueError("the design matrix has NaN or infinite entries; the lower level needs the "
                         "attacker's complete data (impute or drop those rows first)")
    if not torch.isfinite(weights).all() or torch.any(weights < 0):
        raise ValueError("weights must be finite and non-negative")
    if float(weights.sum()) <= 0:
        raise ValueError("all weights are zero: no row takes part in the fit")
    return X, weights


def _objective(X, y, w, theta, family, l2, eta=None):
    eta = X @ theta if eta is None else eta
    return (w * family.nll(y, eta)).sum() / X.shape[1] + 0.5 * l2 * (theta @ theta)


def _gradient(X, y, w, theta, family, l2, eta):
    """Gradient of the weighted objective (eq. 20), divided by N."""
    resid = family.mean(eta) - y                    # A'(η) − y
    p = X.shape[-1]
    return (w * resid).reshape(-1) @ X.reshape(-1, p) / X.shape[1] + l2 * theta


def _hessian(X, w, family, l2, eta):
    """Hessian of the weighted objective (eq. 21), divided by N."""
    N, p = X.shape[1], X.shape[2]
    scale = w if family.name == "gaussian" else w * family.variance(eta)
    hess = (X * scale.unsqueeze(-1)).reshape(-1, p).T @ X.reshape(-1, p) / N
    return hess + l2 * torch.eye(p, dtype=X.dtype, device=X.device)


def _grad_hess(X, y, w, theta, family, l2, eta=None):
    eta = X @ theta if eta is None else eta
    return _gradient(X, y, w, theta, family, l2, eta), _hessian(X, w, family, l2, eta)


def _cholesky(hess: torch.Tensor) -> torch.Tensor:
    factor, info = torch.linalg.cholesky_ex(hess)
    # An exactly collinear design can still factor in floating point, leaving a pivot of order
    # sqrt(eps) relative to the largest one: treat that as singular too.
    pivots = torch.diagonal(factor, dim1=-2, dim2=-1).abs()
    tiny = 4 * torch.finfo(hess.dtype).eps ** 0.5
    if int(info.max()) != 0 or bool((pivots.amin(-1) <= tiny * pivots.amax(-1)).any()):
        raise SingularDesignError(
            "the weighted Hessian of the lower-level GLM is singular or not positive definite: "
            "a column of the design is constant or collinear with others, or the missingness "
            "weights vanish on the rows that identify a coefficient; drop the column or pass "
            "l2 > 0 (lam_lower in BLAMM)")
    return factor


def irls(X: torch.Tensor, y: torch.Tensor, family: str | Family = "gaussian",
         weights: torch.Tensor | None = None, *, l2: float = 0.0, tol: float = 1e-10,
         max_iter: int = 100, theta0: torch.Tensor | None = None,
         check: bool = True) -> IRLSResult:
    """Missingness-weighted IRLS (Algorithm 1) — Newton steps with the Hessian of eq. 21.

    ``X`` is (N, p) or (K, N, p) (one imputed design per missingness pattern), ``weights`` (N,) or
    (K, N) (the pattern probabilities ω_{i,r}(φ)), ``y`` (N,).  Tensors are used without gradient
    tracking; for a differentiable solution use :func:`amlib.am.implicit.glm_argmin`.  A step that
    raises the objective is halved (a safeguard Algorithm 1 does not need for convex, well
    conditioned problems).  Converged when ``|f_t − f_{t−1}| ≤ tol·|f_{t−1}|``; for the Gaussian
    family the objective is quadratic and the first Newton step is exact (App. C.1), so it stops
    there.
    ``check=False`` skips the input validation (for hot loops whose inputs are checked once).
    """
    family = get_family(family)
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    with torch.no_grad():
        y = y.detach()
        if check:
            X, w = _as_patterns(X.detach(), y, None if weights is None else weights.detach())
            family.validate_response(y)
        else:  # the caller guarantees shapes and finite values (BLAMM checks once up front)
            X = X.detach() if X.dim() == 3 else X.detach().unsqueeze(0)
            w = (torch.ones(X.shape[:2], dtype=X.dtype) if weights is None
                 else weights.detach().reshape(X.shape[:2]))
        p = X.shape[2]
        theta = (torch.zeros(p, dtype=X.dtype, device=X.device) if theta0 is None
                 else theta0.detach().clone().to(X.dtype))
        eta = X @ theta
        f_old = _objective(X, y, w, theta, family, l2, eta)
        history = [float(f_old)]
        converged = False
        it = 0
        hess = None
        for it in range(1, max_iter + 1):
            grad, hess = _grad_hess(X, y, w, theta, family, l2, eta)
            factor = _cholesky(hess)
            step = -torch.cholesky_solve(grad.unsqueeze(-1), factor).squeeze(-1)
            t, f_new = 1.0, None
            for _ in range(40):  # step halving
                candidate = theta + t * step
                eta_new = X @ candidate
                f_new = _objective(X, y, w, candidate, family, l2, eta_new)
                if torch.isfinite(f_new) and f_new <= f_old + 1e-12 * abs(float(f_old)):
                    break
                t *= 0.5
            if not torch.isfinite(f_new):
                raise IRLSConvergenceError("IRLS objective became non-finite",
                                           _diagnostics(it, history, theta))
            theta, eta = candidate, eta_new
            history.append(float(f_new))
            change = abs(float(f_new - f_old))
            f_old = f_new
            if change <= tol * max(abs(history[-2]), 1e-300) or family.name == "gaussian":
                converged = True  # a quadratic objective is minimised exactly by one Newton step
                break
        if not converged:
            raise IRLSConvergenceError(
                f"IRLS did not converge in {max_iter} iterations (relative tolerance {tol}); the "
                "data may be separable or the weights degenerate: pass l2 > 0 or raise max_iter",
                _diagnostics(it, history, theta))
        if family.name != "gaussian":  # the Gaussian Hessian does not depend on θ
            hess = _hessian(X, w, family, l2, eta)
        return IRLSResult(theta, float(f_old), it, True, l2, history, _cholesky(hess))


def _diagnostics(it, history, theta):
    return {"iterations": it, "objective_tail": [round(v, 12) for v in history[-4:]],
            "max_abs_theta": float(theta.abs().max()), "intercept": float(theta[0])}


def solve_lower_level(X, y, family="gaussian", weights=None, *, l2: float = 0.0,
                      tol: float = 1e-10, max_iter: int = 100, theta0=None,
                      fallback_l2: float | None = 1e-3, intercept_limit: float = 1e10,
                      check: bool = True) -> IRLSResult:
    """:func:`irls` with the fallback of App. D.3: if the solve fails to converge or the intercept
    (coefficient 0) exceeds ``intercept_limit`` in magnitude, solve again with ``l2 + fallback_l2``.
    ``fallback_l2=None`` disables the fallback (errors propagate)."""
    try:
        result = irls(X, y, family, weights, l2=l2, tol=tol, max_iter=max_iter, theta0=theta0,
                      check=check)
        if fallback_l2 is None or abs(float(result.theta[0])) <= intercept_limit:
            return result
    except (IRLSConvergenceError, SingularDesignError):
        if fallback_l2 is None:
            raise
    return irls(X, y, family, weights, l2=l2 + fallback_l2, tol=tol, max_iter=max_iter,
                check=check)


def constrained_mle(X: torch.Tensor, y: torch.Tensor, family="gaussian", *, zero=(),
                    weights=None, l2: float = 0.0, tol: float = 1e-12) -> torch.Tensor:
    """θα of eq. 22: the (weighted) MLE subject to ``θ_j = 0`` for ``j in zero``.

    For a GLM the constraint simply removes those columns; the returned vector has the full
    length of ``X``'s last axis with zeros at ``zero`` (indices into the columns of ``X``).
    """
    p = X.shape[-1]
    zero = sorted(set(int(j) for j in zero))
    if any(j < 0 or j >= p for j in zero):
        raise IndexError(f"constrained coefficients {zero} out of range for {p} columns")
    keep = [j for j in range(p) if j not in zero]
    result = irls(X[..., keep], y, family, weights, l2=l2, tol=tol)
    theta = torch.zeros(p, dtype=X.dtype, device=X.device)
    theta[keep] = result.theta
    return theta


def kl_divergence(X: torch.Tensor, theta_alpha: torch.Tensor, theta: torch.Tensor,
                  family="gaussian", scale: float = 1.0) -> torch.Tensor:
    """``(1/N) Σ_i KL(p(y|x_i; θα) ‖ p(y|x_i; θ))`` (App. C.2), differentiable in ``theta``.

    For a canonical family with dispersion ``scale`` the KL is the Bregman divergence
    ``[A(η) − A(ηα) − A'(ηα)(η − ηα)] / scale`` with ``η = ⟨x, θ⟩``; for the Gaussian it is
    ``(η − ηα)² / (2·scale)``.
    """
    family = get_family(family)
    eta_a, eta = X @ theta_alpha, X @ theta
    if family.name == "gaussian":
        kl = 0.5 * (eta - eta_a) ** 2
    else:
        kl = (family.log_partition(eta) - family.log_partition(eta_a)
              - family.mean(eta_a) * (eta - eta_a))
    return kl.mean() / scale


def ate_per_row(theta: torch.Tensor, X_treated: torch.Tensor, X_control: torch.Tensor,
                family="bernoulli") -> torch.Tensor:
    """``E[y|x_i, W=1; θ] − E[y|x_i, W=0; θ]`` for each row (App. C.2's regression estimator);
    ``X_treated``/``X_control`` are the design rows with the treatment column set to 1 / 0."""
    family = get_family(family)
    return family.mean(X_treated @ theta) - family.mean(X_control @ theta)


def ate(theta, X_treated, X_control, family="bernoulli") -> torch.Tensor:
    """The ATE estimate τ̂ = mean of :func:`ate_per_row`."""
    return ate_per_row(theta, X_treated, X_control, family).mean()
