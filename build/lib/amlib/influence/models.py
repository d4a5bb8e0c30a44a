"""Binary and multiclass logistic regression in torch, as the influence paper's victim model.

The influence paper trains ``Linear(d, C)`` with cross-entropy on ResNet50 features; the fairness
application uses a binary L2-regularised logistic regression without intercept. Both are a
:class:`LogisticModel`:

- ``n_classes == 2``: one logit ``f = wᵀx + b`` and the sigmoid, labels ``y ∈ {0, 1}``,
  parameters ``K = 1`` row of ``d + bias`` numbers;
- ``n_classes = C > 2``: ``C`` logits and the softmax, labels ``0..C-1``, ``K = C`` rows (the
  same over-parameterised form as ``Linear(d, C)``).

The parameters are one flat tensor ``theta`` of length ``K·(d + bias)``: row ``k`` holds class
``k``'s weights followed by its bias. The training objective (the influence paper's ERM, Sec. 2) is

    R(θ) = (1/n) Σ_i w_i ℓ(z_i, θ) + (l2/2) ‖θ‖²          (w_i = 1 unless sample weights are given)

— the mean loss plus an L2 penalty on every parameter, biases included. With ``C > 2`` and
``l2 = 0`` the Hessian of R is singular along "add the same vector to every class row" (that
leaves the softmax unchanged); per-sample gradients are orthogonal to that direction, so the
influence scores stay well defined (see :mod:`amlib.influence.hvp`).

Fitting: :func:`fit_logistic` runs full-batch Newton (a dense Hessian up to ``dense_limit``
parameters, otherwise Newton-CG with the matrix-free Hessian-vector product) or L-BFGS to a
stationary point and reports the gradient norm; it warns when the point is not stationary (for
instance on linearly separable data without L2, where no finite minimiser exists).
:func:`fit_logistic_sgd` is the paper's recipe (SGD, lr 1e-3, 100 epochs, batch 64, seed 42),
kept for fidelity; it is a plain torch loop, not a Lightning run, because ten thousands of tiny
steps would mostly measure Lightning's per-step overhead — and it does not reach a stationary
point, which influence functions assume (Definition 1).

Inputs: ``X`` is an (n, d) float tensor or array; torch tensors keep their dtype, other arrays
become float64 when ``n·d ≤ 10⁷`` and float32 above (the ResNet-feature problems). Labels are
integers ``0..C-1``. Non-finite features, labels out of range and shape mismatches raise
``ValueError`` naming the problem.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["LogisticModel", "FitResult", "NotStationaryWarning", "fit_logistic",
           "fit_logistic_sgd", "scale_model", "as_features", "as_labels", "check_theta"]

#: arrays with more entries than this become float32 (torch tensors keep their dtype)
FLOAT32_ABOVE = 10_000_000


class NotStationaryWarning(UserWarning):
    """θ is not a stationary point of the training objective, so influence functions, which
    assume θ = θ* (Definition 1), describe some other model."""


def as_features(X, dtype: torch.dtype | None = None, name: str = "X") -> torch.Tensor:
    """Convert features to a 2-D float tensor and check that every entry is finite.

    A float tensor that already has ``dtype`` is returned as it is (detached), not copied; the
    finiteness check sums X once and scans it element-wise only when that sum is not finite.
    """
    if isinstance(X, torch.Tensor):
        t = X.detach() if X.requires_grad else X
        if not torch.is_floating_point(t):
            t = t.to(dtype or torch.float64)
    else:
        arr = np.asarray(X)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}; encode categorical "
                             "columns first")
        if dtype is None:
            dtype = torch.float32 if arr.size > FLOAT32_ABOVE else torch.float64
        t = torch.as_tensor(np.ascontiguousarray(arr), dtype=dtype)
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, d) matrix, got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    # a NaN or inf entry makes the sum non-finite: one pass, no feature-sized temporary; only
    # then (or when a huge finite sum overflows) the element-wise check runs
    if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
        bad = (~torch.isfinite(t)).any(dim=1).nonzero().flatten()[:5].tolist()
        raise ValueError(f"{name} has non-finite entries (NaN or inf), e.g. in rows {bad}; impute "
                         "or drop them before fitting")
    return t


def as_labels(y, n_rows: int, n_classes: int | None = None, device=None,
              name: str = "y") -> torch.Tensor:
    """Convert labels to a 1-D int64 tensor of length ``n_rows`` with values in 0..C-1."""
    if isinstance(y, torch.Tensor):
        t = y.detach()
    else:
        t = torch.as_tensor(np.array(y))
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1 or t.shape[0] != n_rows:
        raise ValueError(f"{name} must have one label per row ({n_rows}), got shape "
                         f"{tuple(t.shape)}")
    if torch.is_floating_point(t):
        if not bool(torch.isfinite(t).all()) or not bool((t == t.round()).all()):
            raise ValueError(f"{name} must hold integer class labels 0..C-1 (binary: 0/1; map "
                             "-1/+1 labels to 0/1)")
    t = t.to(torch.int64)
    if device is not None:
        t = t.to(device)
    if bool((t < 0).any()):
        raise ValueError(f"{name} has negative labels; use 0..C-1 (binary: map -1/+1 to 0/1)")
    if n_classes is not None and bool((t >= n_classes).any()):
        raise ValueError(f"{name} has label {int(t.max())} but the model has only {n_classes} "
                         "classes")
    return t


@dataclass(frozen=True)
class LogisticModel:
    """Shape and penalty of a (multiclass) logistic regression; θ lives outside (a flat tensor).

    ``n_features`` d (without the bias column); ``n_classes`` C ≥ 2 (C = 2: one sigmoid logit);
    ``bias`` whether every logit has an intercept; ``l2`` the strength of ``(l2/2)‖θ‖²``.
    """

    n_features: int
    n_classes: int
    bias: bool = True
    l2: float = 0.0

    def __post_init__(self):
        if int(self.n_features) < 1:
            raise ValueError(f"n_features must be >= 1, got {self.n_features}")
        if int(self.n_classes) < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")
        if not (self.l2 >= 0 and math.isfinite(self.l2)):
            raise ValueError(f"l2 must be a finite number >= 0, got {self.l2}")

    # ----- shapes -------------------------------------------------------------------------
    @property
    def n_outputs(self) -> int:
        """K: 1 logit for binary, C for multiclass."""
        return 1 if self.n_classes == 2 else self.n_classes

    @property
    def row_size(self) -> int:
        """D = d + bias."""
        return self.n_features + int(self.bias)

    @property
    def n_params(self) -> int:
        return self.n_outputs * self.row_size

    @property
    def binary(self) -> bool:
        return self.n_classes == 2

    def weights(self, theta: torch.Tensor) -> torch.Tensor:
        """θ as a (K, d + bias) matrix (a view; the bias is the last column)."""
        return theta.reshape(self.n_outputs, self.row_size)

    def split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W (K, d), b (K,) or None)."""
        M = self.weights(theta)
        if self.bias:
            return M[:, :-1], M[:, -1]
        return M, None

    def zeros(self, dtype=torch.float64, device=None) -> torch.Tensor:
        return torch.zeros(self.n_params, dtype=dtype, device=device)

    # ----- forward ------------------------------------------------------------------------
    def logits(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """(n, K) logits ``X Wᵀ + b`` (no copy of X for the bias column)."""
        W, b = self.split(theta)
        out = X @ W.T
        return out + b if b is not None else out

    def probs_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """(n, K): sigmoid(f) for binary (the probability of class 1), softmax for multiclass."""
        return torch.sigmoid(logits) if self.binary else torch.softmax(logits, dim=1)

    def probs(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        return self.probs_from_logits(self.logits(theta, X))

    def targets(self, y: torch.Tensor, dtype) -> torch.Tensor:
        """(n, K) targets matching :meth:`probs`: y itself (binary) or one-hot rows."""
        if self.binary:
            return y.to(dtype)[:, None]
        return F.one_hot(y, self.n_classes).to(dtype)

    def loss(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
             reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy of each row (``reduction="none"``), their mean or sum. No L2 term."""
        f = self.logits(theta, X)
        if self.binary:
            return F.binary_cross_entropy_with_logits(f[:, 0], y.to(f.dtype), reduction=reduction)
        return F.cross_entropy(f, y, reduction=reduction)

    def objective(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                  sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        """The training objective R(θ) = (1/n) Σ w_i ℓ_i + (l2/2)‖θ‖²."""
        if sample_weight is None:
            data = self.loss(theta, X, y)
        else:
            data = (sample_weight * self.loss(theta, X, y, "none")).sum() / X.shape[0]
        return data + 0.5 * self.l2 * (theta * theta).sum()

    def predict(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        f = self.logits(theta, X)
        return (f[:, 0] > 0).long() if self.binary else f.argmax(dim=1)

    def accuracy(self, theta: torch.Tensor, X, y) -> float:
        X = as_features(X, dtype=theta.dtype)
        y = as_labels(y, X.shape[0], self.n_classes, device=X.device)
        with torch.no_grad():
            return float((self.predict(theta, X) == y).double().mean())

    # ----- derivatives of R (closed form; used by the fitters and the influence code) ------
    def residuals(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(n, K) ``P − Y``: row i times [x_i, 1] is the per-sample gradient g_i."""
        return self.probs(theta, X) - self.targets(y, X.dtype)

    def gradient_from_residuals(self, R: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """Σ_i R_i ⊗ [x_i, 1] as a flat vector (no division by n)."""
        parts = [R.T @ X]
        if self.bias:
            parts.append(R.sum(dim=0)[:, None])
        return torch.cat(parts, dim=1).reshape(-1)

    def gradient(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                 sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        """∇R(θ) in closed form."""
        R = self.residuals(theta, X, y)
        if sample_weight is not None:
            R = R * sample_weight[:, None]
        return self.gradient_from_residuals(R, X) / X.shape[0] + self.l2 * theta

    def validate(self, theta: torch.Tensor | None, X, y=None, name: str = ""):
        """Convert and check (X, y) against this model (and θ's length/dtype when given)."""
        dtype = theta.dtype if theta is not None else None
        X = as_features(X, dtype=dtype, name="X" + name)
        if X.shape[1] != self.n_features:
            raise ValueError(f"X{name} has {X.shape[1]} columns but the model has "
                             f"{self.n_features} features")
        if theta is not None:
            check_theta(self, theta)
            if theta.device != X.device:
                X = X.to(theta.device)
        if y is None:
            return X
        return X, as_labels(y, X.shape[0], self.n_classes, device=X.device, name="y" + name)


def check_theta(model: LogisticModel, theta: torch.Tensor) -> None:
    if not isinstance(theta, torch.Tensor) or not torch.is_floating_point(theta):
        raise TypeError("theta must be a floating-point torch tensor")
    if theta.ndim != 1 or theta.shape[0] != model.n_params:
        raise ValueError(f"theta must be a flat vector of {model.n_params} parameters "
                         f"(K={model.n_outputs} rows of d+bias={model.row_size}), got shape "
                         f"{tuple(theta.shape)}")
    if not bool(torch.isfinite(theta.detach()).all()):
        raise ValueError("theta has non-finite entries")


@dataclass
class FitResult:
    """A fitted model: the model description, θ, ‖∇R(θ)‖, iterations, seconds and the history."""

    model: LogisticModel
    theta: torch.Tensor
    grad_norm: float
    n_iter: int
    seconds: float = 0.0
    method: str = ""
    converged: bool = True
    history: list = field(default_factory=list)


def _infer_classes(y: torch.Tensor, n_classes: int | None) -> int:
    C = int(y.max()) + 1 if n_classes is None else int(n_classes)
    return max(C, 2)


def _dense_newton_step(model, theta, X, y, w, grad):
    from .hvp import dense_hessian, null_space_shift
    H = dense_hessian(model, theta, X, sample_weight=w)
    H.diagonal().add_(model.l2)
    if not model.binary and model.l2 == 0:
        H = H + null_space_shift(model, H)
    L, info = torch.linalg.cholesky_ex(H)
    if int(info) != 0:   # near-singular: Levenberg-Marquardt style fallback
        H.diagonal().add_(1e-8 * float(H.diagonal().abs().max()) + 1e-12)
        return -torch.linalg.solve(H, grad)
    return -torch.cholesky_solve(grad[:, None], L)[:, 0]


def fit_logistic(X, y, *, n_classes: int | None = None, bias: bool = True, l2: float = 0.0,
                 method: str = "newton", tol: float | None = None, max_iter: int | None = None,
                 sample_weight=None, theta0: torch.Tensor | None = None,
                 dense_limit: int = 3000, dtype: torch.dtype | None = None,
                 warn: bool = True) -> FitResult:
    """Minimise R(θ) = (1/n) Σ w_i ℓ_i + (l2/2)‖θ‖² to a stationary point (θ* of Sec. 2).

    ``method``: ``"newton"`` — full-batch Newton with Armijo backtracking; the Newton system is
    solved with a dense Cholesky up to ``dense_limit`` parameters and with conjugate gradients on
    the matrix-free Hessian (Newton-CG) above; ``"lbfgs"`` — torch's L-BFGS with a strong-Wolfe
    line search. Stops when ``‖∇R‖ ≤ tol`` (default in float64 1e-10 for Newton, 1e-7 for L-BFGS,
    whose line search compares objective values and stalls near 1e-8; 1e-5 in float32).
    ``sample_weight`` gives per-row weights w_i (the loss-reweighing baseline; leave-one-out uses
    a zero weight). Warns with :class:`NotStationaryWarning` when ``max_iter`` ends above ``tol``
    (``warn=False`` silences it; ``FitResult.converged`` still says so).
    """
    X = as_features(X, dtype=dtype)
    y = as_labels(y, X.shape[0], n_classes, device=X.device)
    C = _infer_classes(y, n_classes)
    model = LogisticModel(X.shape[1], C, bias=bias, l2=float(l2))
    w = None
    if sample_weight is not None:
        w = (sample_weight.detach() if isinstance(sample_weight, torch.Tensor)
             else torch.as_tensor(np.asarray(sample_weight, dtype=float)))
        w = w.to(dtype=X.dtype, device=X.device)
        if w.shape != (X.shape[0],) or not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise ValueError("sample_weight must be one finite, non-negative weight per row")
    if tol is None:   # L-BFGS's line search compares objective values and stalls near 1e-8
        tol = (1e-10 if method == "newton" else 1e-7) if X.dtype == torch.float64 else 1e-5
    if method not in ("newton", "lbfgs"):
        raise ValueError(f"unknown method {method!r}; use 'newton' or 'lbfgs'")
    theta = model.zeros(X.dtype, X.device) if theta0 is None else theta0.detach().clone().to(X)
    check_theta(model, theta)
    start = time.perf_counter()
    history = []

    def objective(t):
        return float(model.objective(t, X, y, w))

    if method == "newton":
        max_iter = 100 if max_iter is None else max_iter
        dense = model.n_params <= dense_limit
        it = 0
        grad = model.gradient(theta, X, y, w)
        gnorm = float(grad.norm())
        f = objective(theta)
        history.append({"iter": 0, "objective": f, "grad_norm": gnorm})
        while gnorm > tol and it < max_iter:
            it += 1
            if dense:
                step = _dense_newton_step(model, theta, X, y, w, grad)
            else:
                from .hvp import HessianOperator, conjugate_gradient
                op = HessianOperator(model, theta, X, sample_weight=w)
                forcing = min(0.5, math.sqrt(gnorm))   # Eisenstat-Walker style accuracy
                step = -conjugate_gradient(op.matvec, grad[None], tol=forcing,
                                           max_iter=200)[0][0]
            slope = float(grad @ step)
            if slope >= 0:   # not a descent direction (numerical trouble): use the gradient
                step, slope = -grad, -gnorm ** 2
            t = 1.0
            if -slope < 1e-12 * (1.0 + abs(f)):
                # the predicted decrease is below the round-off of R: full Newton step, no search
                f_new = objective(theta + step)
            else:
                while True:
                    f_new = objective(theta + t * step)
                    if f_new <= f + 1e-4 * t * slope or t < 1e-10:
                        break
                    t *= 0.5
                if t < 1e-10:
                    break   # no further decrease is possible at this precision
            theta = theta + t * step
            f = f_new
            grad = model.gradient(theta, X, y, w)
            gnorm = float(grad.norm())
            history.append({"iter": it, "objective": f, "grad_norm": gnorm, "step_size": t})
    else:
        max_iter = 500 if max_iter is None else max_iter
        param = theta.clone().requires_grad_(True)
        opt = torch.optim.LBFGS([param], lr=1.0, max_iter=max_iter,
                                tolerance_grad=tol / math.sqrt(model.n_params),
                                tolerance_change=0.0, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = model.objective(param, X, y, w)
            loss.backward()
            return loss

        it, gnorm = 0, float("inf")
        while it < max_iter:   # torch's L-BFGS may stop early on a stalled line search: restart
            opt.step(closure)
            done = int(opt.state[opt._params[0]].get("n_iter", 0))
            it += done
            theta = param.detach().clone()
            gnorm = float(model.gradient(theta, X, y, w).norm())
            history.append({"iter": it, "objective": objective(theta), "grad_norm": gnorm})
            if gnorm <= tol or done <= 1:
                break
            opt = torch.optim.LBFGS([param], lr=1.0, max_iter=max(max_iter - it, 1),
                                    tolerance_grad=tol / math.sqrt(model.n_params),
                                    tolerance_change=0.0, history_size=20,
                                    line_search_fn="strong_wolfe")
    converged = gnorm <= tol
    if not converged and warn:
        warnings.warn(_stationary_message(gnorm, tol, theta, f"fit_logistic({method!r}) stopped "
                                          f"after {it} iterations"),
                      NotStationaryWarning, stacklevel=2)
    return FitResult(model, theta, gnorm, it, time.perf_counter() - start, method, converged,
                     history)


def _stationary_message(gnorm, tol, theta, what):
    return (f"{what} with ‖∇R(θ)‖ = {gnorm:.3g} > {tol:.3g}: θ is not a stationary point, so "
            "influence functions (which assume θ = θ*) describe a different model. Raise "
            "max_iter, or add l2 > 0 if the data are linearly separable (‖θ‖ = "
            f"{float(theta.norm()):.3g} keeps growing without a penalty).")


def fit_logistic_sgd(X, y, *, n_classes: int | None = None, bias: bool = True, l2: float = 0.0,
                     lr: float = 1e-3, epochs: int = 100, batch_size: int = 64, seed: int = 42,
                     momentum: float = 0.0, dtype: torch.dtype | None = None,
                     warn: bool = False) -> FitResult:
    """The influence paper's training recipe (Sec. 4.1): minibatch SGD on the cross-entropy.

    ``Linear(d, K)`` initialised as torch does (uniform ±1/√d, seeded by ``seed``), reshuffled
    every epoch by a generator seeded with ``seed``, plain SGD with step ``lr``, ``epochs``
    passes, batches of ``batch_size`` (last batch kept). ``l2`` adds (l2/2)‖θ‖² to every batch
    loss. The result is generally *not* stationary; ``grad_norm`` says how far (``warn=True``
    also emits :class:`NotStationaryWarning`).
    """
    X = as_features(X, dtype=dtype)
    y = as_labels(y, X.shape[0], n_classes, device=X.device)
    C = _infer_classes(y, n_classes)
    model = LogisticModel(X.shape[1], C, bias=bias, l2=float(l2))
    if lr <= 0 or epochs < 1 or batch_size < 1:
        raise ValueError("lr must be > 0, epochs >= 1 and batch_size >= 1")
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = torch.nn.Linear(model.n_features, model.n_outputs, bias=bias)
    parts = [layer.weight.detach()]
    if bias:
        parts.append(layer.bias.detach()[:, None])
    theta = torch.cat(parts, dim=1).reshape(-1).to(X.dtype).to(X.device)
    param = theta.clone().requires_grad_(True)
    opt = torch.optim.SGD([param], lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(seed)
    n = X.shape[0]
    history = []
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen).to(X.device)
        total = 0.0
        for lo in range(0, n, batch_size):
            idx = order[lo:lo + batch_size]
            opt.zero_grad()
            loss = model.objective(param, X[idx], y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        history.append({"epoch": epoch, "train_objective": total / n})
    theta = param.detach()
    gnorm = float(model.gradient(theta, X, y).norm())
    if warn:
        warnings.warn(_stationary_message(gnorm, 0.0, theta, "fit_logistic_sgd finished"),
                      NotStationaryWarning, stacklevel=2)
    return FitResult(model, theta, gnorm, epochs, time.perf_counter() - start, "sgd",
                     False, history)


def scale_model(theta: torch.Tensor, s: float) -> torch.Tensor:
    """The untargeted scaling attack: θ → s·θ with s > 0 (Sec. 5 of the influence paper).

    Every logit, bias included, is multiplied by s, so the sign of a binary logit and the argmax
    of a softmax are unchanged: predictions and accuracy are identical (with or without bias),
    while the probabilities — hence gradients, Hessian and influence scores — change.
    """
    s = float(s)
    if not (s > 0 and math.isfinite(s)):
        raise ValueError(f"the scale s must be a finite number > 0 (s <= 0 flips or erases "
                         f"predictions), got {s}")
    return theta * s
