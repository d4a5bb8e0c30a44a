"""Fitting the logistic regression of :mod:`amlib.influence.models` to a stationary point.

:func:`fit_logistic` runs full-batch Newton (a dense Hessian up to ``dense_limit`` parameters,
otherwise Newton-CG with the matrix-free Hessian-vector product) or L-BFGS to a stationary point
θ* of R(θ) = (1/n) Σ_i w_i ℓ_i + (l2/2)‖θ‖² and reports the gradient norm; it warns when the
point is not stationary (for instance on linearly separable data without L2, where no finite
minimiser exists). :func:`fit_logistic_sgd` is the influence paper's recipe (SGD, lr 1e-3,
100 epochs, batch 64, seed 42), kept for fidelity; it is a plain torch loop, not a Lightning run,
because ten thousands of tiny steps would mostly measure Lightning's per-step overhead — and it
does not reach a stationary point, which influence functions assume (Definition 1).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .hessian import HessianOperator, dense_hessian, null_space_shift
from .models import LogisticModel, NotStationaryWarning, as_features, as_labels, check_theta
from .solvers import conjugate_gradient

__all__ = ["FitResult", "fit_logistic", "fit_logistic_sgd"]


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


def _data_and_model(X, y, n_classes: int | None, bias: bool, l2: float,
                    dtype: torch.dtype | None):
    """Checked features and labels, and the :class:`LogisticModel` they call for (C from the
    labels unless ``n_classes`` is given; at least 2)."""
    X = as_features(X, dtype=dtype)
    y = as_labels(y, X.shape[0], n_classes, device=X.device)
    C = max(int(y.max()) + 1 if n_classes is None else int(n_classes), 2)
    return X, y, LogisticModel(X.shape[1], C, bias=bias, l2=float(l2))


def _dense_newton_step(model, theta, X, y, w, grad):
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
    X, y, model = _data_and_model(X, y, n_classes, bias, l2, dtype)
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
    X, y, model = _data_and_model(X, y, n_classes, bias, l2, dtype)
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
