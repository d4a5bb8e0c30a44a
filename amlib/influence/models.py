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
influence scores stay well defined (see :mod:`amlib.influence.hessian`).

Fitting to a stationary point (Newton, Newton-CG, L-BFGS) and the paper's SGD recipe live in
:mod:`amlib.influence.fitting`; :func:`scale_theta` is the untargeted scaling attack.

Inputs: ``X`` is an (n, d) float tensor or array; torch tensors keep their dtype, other arrays
become float64 when ``n·d ≤ 10⁷`` and float32 above (the ResNet-feature problems). Labels are
integers ``0..C-1``. Non-finite features, labels out of range and shape mismatches raise
``ValueError`` naming the problem.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["LogisticModel", "NotStationaryWarning", "scale_theta", "as_features", "as_labels",
           "check_theta"]

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


def scale_theta(theta: torch.Tensor, s: float) -> torch.Tensor:
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
