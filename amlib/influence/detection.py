"""How a data provider catches a manipulated model (beyond the influence paper, cf. its Sec. 6).

The paper's adversary (the influence calculator) reports scores computed *honestly* from a model
θ′ that it moved inside the ball ‖θ′ − θ*‖ ≤ ε‖θ*‖ (Eqs. 4–5). The provider owns the training
data and receives θ′. Influence functions (Definition 1) are only defined at the optimum of the
agreed training objective R(θ) = (1/n) Σ ℓ_i + (l2/2)‖θ‖² (:mod:`amlib.influence.models`), so
the provider can ask: *is θ′ a stationary point of R?*

Statistic (:func:`stationarity_statistic`): the squared **Newton decrement**

    λ²(θ′) = g(θ′)ᵀ H(θ′)⁻¹ g(θ′),   g = ∇R(θ′), H = ∇²R(θ′).

Why this normalisation rather than ‖g‖ or ‖g‖/‖θ′‖: λ² is invariant under every invertible
linear reparameterisation θ = Aφ (rescaled or standardised features, other units), does not
grow with n or p, and has a meaning in the objective's own units (nats per sample): for a
quadratic model of R, λ²/2 is the decrease a Newton step would bring, i.e.
λ²/2 ≈ R(θ′) − R(θ*) near the optimum, and λ² = (θ′ − θ*)ᵀ H (θ′ − θ*) to second order. A raw
gradient norm mixes parameter scales and makes one threshold meaningless across data sets.
H⁻¹g is one inverse-HVP solve: exact (dense Cholesky) for small models, conjugate gradients with
the K-FAC preconditioner otherwise (:class:`~amlib.influence.hvp.InverseHVP`). The relative
gradient norm of :func:`~amlib.influence.scores.stationarity` is available as ``kind="gradient"``.

Threshold (:func:`calibrate_threshold`): a conformal (1 − fpr) quantile of the statistic over a
family of honest fits (:func:`honest_models`: different optimisers, stopping tolerances and random
starts), so a new honest model from the same family is flagged with probability ≤ fpr.
:func:`detection_roc` gives the ROC, its AUC and the detection rate at 5 % false positives.

The audit of App. A.0.1 (chapter 9, :func:`~amlib.influence.audit.audit_influence_calculator`)
checks the other half: that reported scores are an honest linear function of the query.
:func:`audit_with_real_query` fits the implied map on spanning queries and then checks the
*real* test query (the test set's summed gradient G_test and its per-point gradients) against it,
so a calculator that answers audit queries honestly but the real query differently is caught.
Together: the audit ties the scores to *some* model, the provider's recomputation ties them to
the published θ′, and the stationarity test ties θ′ to θ*.

What these tests cannot catch:

- **an attack inside the tolerance**: any θ′ with λ²(θ′) below the threshold passes, so an
  attacker who constrains its search to that set (an ellipsoid of H-radius √threshold around θ*)
  is invisible; the looser the honest family (early-stopped SGD counts as honest?), the larger it
  is. The test bounds the manipulation; it does not forbid it.
- **a provider who cannot recompute**: without the training data (or the agreed l2, bias and
  preprocessing) g and H cannot be evaluated; an outside auditor is left with the linearity audit,
  which an honest computation on a manipulated θ′ passes by construction.
- **a calculator who reports a modified objective**: if it may choose l2, sample weights, data
  augmentation or drop "outliers", θ′ can be the exact optimum of *its* objective (the paper's
  loss-reweighing baseline is stationary for the reweighted loss); the objective must be fixed by
  contract and the check run on the provider's own data.
- **the scaling attack without L2 on separable data**: R has no finite minimiser, the gradient
  vanishes as ‖θ‖ → ∞, so θ′ = s·θ with s > 1 is *more* stationary than the honest fit and
  passes (scaling by s < 1, as in the fairness attack, raises λ² and is caught). With l2 > 0 the
  optimum is unique and scaling is detected.
- **models the provider never sees**: scores computed from a θ′ other than the published one are
  caught only by recomputing the scores from the published θ′ (cheap: one inverse-HVP).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from .audit import AuditReport, audit_influence_calculator
from .hvp import InverseHVP
from .models import LogisticModel, as_features, as_labels, fit_logistic, fit_logistic_sgd
from .scores import per_sample_gradients, stationarity, test_gradient

__all__ = ["stationarity_statistic", "calibrate_threshold", "detection_roc", "honest_models",
           "HonestModel", "audit_with_real_query", "model_for"]


def model_for(X, theta: torch.Tensor, l2: float, *, n_classes: int | None = None,
              bias: bool = True) -> LogisticModel:
    """The :class:`LogisticModel` of a flat θ on features X (the class count read off θ)."""
    d = X.shape[1]
    D = d + int(bias)
    if theta.ndim != 1 or theta.shape[0] % D:
        raise ValueError(f"theta of shape {tuple(theta.shape)} is not K rows of d + bias = {D} "
                         "numbers; pass bias= to match how the model was fitted")
    K = theta.shape[0] // D
    C = 2 if K == 1 else K
    if n_classes is not None and int(n_classes) != C:
        raise ValueError(f"theta holds {K} rows, which is {C} classes, not n_classes={n_classes}")
    return LogisticModel(d, C, bias=bias, l2=float(l2))


def _prepare(X, y, theta, l2, n_classes, bias):
    X = as_features(X, dtype=torch.float64)
    theta = torch.as_tensor(theta).detach().to(torch.float64).reshape(-1)
    model = model_for(X, theta, l2, n_classes=n_classes, bias=bias)
    y = as_labels(y, X.shape[0], model.n_classes)
    return model, X, y, theta


def stationarity_statistic(X, y, theta, l2: float, *, n_classes: int | None = None,
                           bias: bool = True, kind: str = "newton", method: str = "auto",
                           tol: float = 1e-7, max_iter: int = 2000) -> float:
    """How far θ is from the optimum of R(θ) = mean cross-entropy + (l2/2)‖θ‖² on (X, y).

    ``kind="newton"`` (default): the squared Newton decrement gᵀH⁻¹g ≈ 2·(R(θ) − R(θ*)), in nats
    (see the module docstring); ``kind="gradient"``: ‖g‖ relative to the typical per-sample
    gradient (:func:`~amlib.influence.scores.stationarity`). Computed in float64. ``method``:
    ``"exact"``, ``"cg"`` (K-FAC-preconditioned, relative residual ``tol``) or ``"auto"`` (exact
    up to 3,000 parameters). CG's error in gᵀH⁻¹g is rᵀH⁻¹r for the final residual r, second
    order in ``tol``, so the default 1e-7 gives far more digits than a threshold needs.
    """
    model, X, y, theta = _prepare(X, y, theta, l2, n_classes, bias)
    if kind == "gradient":
        return stationarity(model, theta, X, y)[1]
    if kind != "newton":
        raise ValueError(f"unknown kind {kind!r}; use 'newton' or 'gradient'")
    g = model.gradient(theta, X, y)
    if method == "auto":
        method = "exact" if model.n_params <= 3000 else "cg"
    if method not in ("exact", "cg"):
        raise ValueError(f"unknown method {method!r}; use 'auto', 'exact' or 'cg'")
    opts = {"precondition": "kfac", "tol": tol, "max_iter": max_iter} if method == "cg" else {}
    solver = InverseHVP(model, theta, X, method=method, **opts)
    s = solver.solve(g).solution
    return max(float(g @ s), 0.0)


def calibrate_threshold(honest_statistics, fpr: float = 0.05) -> float:
    """The detection threshold: flag θ when its statistic is **above** the returned value.

    The conformal quantile: the ⌈(1 − fpr)(m + 1)⌉-th smallest of m honest statistics, so a new
    honest model exchangeable with them is flagged with probability ≤ fpr. Needs
    m ≥ 1/fpr − 1 statistics (19 for 5 %); with fewer the guarantee is impossible and a
    ``ValueError`` says how many are needed.
    """
    h = np.sort(np.asarray(honest_statistics, dtype=float).ravel())
    if not (0 < fpr < 1):
        raise ValueError(f"fpr must lie in (0, 1), got {fpr}")
    if h.size == 0 or not np.isfinite(h).all():
        raise ValueError("honest_statistics must be a non-empty array of finite numbers")
    rank = math.ceil((1 - fpr) * (h.size + 1))
    if rank > h.size:
        raise ValueError(f"{h.size} honest statistics cannot calibrate a false-positive rate of "
                         f"{fpr}: at least {math.ceil(1 / fpr - 1)} are needed")
    return float(h[rank - 1])


def detection_roc(honest_statistics, attacked_statistics, fpr_target: float = 0.05) -> dict:
    """ROC of "flag when statistic > t" over every threshold t (positives: attacked models).

    Returns ``fpr``, ``tpr``, ``thresholds`` (arrays, from flagging nothing to flagging all),
    ``auc`` (the Mann–Whitney probability that an attacked model scores above an honest one, ties
    counted ½), ``tpr_at_5pct`` (the best detection rate among thresholds whose honest
    false-positive rate is ≤ ``fpr_target``) with its ``threshold_at_5pct``, and the sizes.
    """
    h = np.asarray(honest_statistics, dtype=float).ravel()
    a = np.asarray(attacked_statistics, dtype=float).ravel()
    if h.size == 0 or a.size == 0:
        raise ValueError("need at least one honest and one attacked statistic")
    if not (np.isfinite(h).all() and np.isfinite(a).all()):
        raise ValueError("statistics must be finite")
    cuts = np.concatenate([[np.inf], np.unique(np.concatenate([h, a]))[::-1]])
    # flag when s > t; t = next-lower value makes every distinct value a step
    thresholds = np.concatenate([cuts[:1], np.nextafter(cuts[1:], -np.inf)])
    fpr = np.array([(h > t).mean() for t in thresholds])
    tpr = np.array([(a > t).mean() for t in thresholds])
    greater = (a[:, None] > h[None, :]).mean()
    ties = (a[:, None] == h[None, :]).mean()
    ok = fpr <= fpr_target + 1e-12
    best = int(np.flatnonzero(ok)[np.argmax(tpr[ok])])
    return {"fpr": fpr, "tpr": tpr, "thresholds": thresholds, "auc": float(greater + 0.5 * ties),
            "tpr_at_5pct": float(tpr[best]), "threshold_at_5pct": float(thresholds[best]),
            "fpr_target": fpr_target, "n_honest": int(h.size), "n_attacked": int(a.size)}


@dataclass
class HonestModel:
    """One honest fit: θ, how it was obtained, ‖∇R(θ)‖, seconds, and whether ‖∇R‖ ≤ tol."""

    theta: torch.Tensor
    optimiser: str
    tol: float
    seed: int
    grad_norm: float
    seconds: float
    converged: bool


HONEST_OPTIMISERS = ("lbfgs", "newton", "adam", "sgd")


def _adam_full_batch(model, X, y, theta0, tol, lr=0.1, max_iter=2000, betas=(0.9, 0.999),
                     eps=1e-8):
    """Full-batch Adam (Kingma & Ba's update on the closed-form gradient) with the learning rate
    ×0.1 at 50 % and 80 % of ``max_iter``; stops at ‖∇R‖ ≤ tol. A provider who trains with a
    first-order method and a stopping rule."""
    theta = theta0.clone()
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    b1, b2 = betas
    for t in range(1, max_iter + 1):
        g = model.gradient(theta, X, y)
        if float(g.norm()) <= tol:
            break
        step = lr * (0.1 if t > max_iter // 2 else 1.0) * (0.1 if t > 4 * max_iter // 5 else 1.0)
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        theta -= step * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)
    return theta


def honest_models(X, y, l2: float, n: int, seed: int = 0, *, n_classes: int | None = None,
                  bias: bool = True, optimisers=("lbfgs", "newton", "adam"),
                  tolerances=(1e-4, 1e-5, 1e-6, 1e-7, 1e-8), init_std: float | None = None,
                  sgd_epochs: int = 100, adam_iters: int = 2000,
                  adam_lr: float = 0.1) -> list[HonestModel]:
    """``n`` honest fits of R on (X, y) that differ the way honest providers differ.

    Model i uses optimiser ``optimisers[i % len]``, stopping tolerance on ‖∇R‖
    ``tolerances[(i // len(optimisers)) % len]`` and a random start θ₀ ~ N(0, init_std²·I)
    (default init_std = 1/√d, the scale of torch's ``Linear`` initialisation) seeded by
    ``seed + i``. Optimisers: ``"lbfgs"`` and ``"newton"`` (:func:`fit_logistic`), ``"adam"``
    (full-batch Adam from ``adam_lr`` with step decay, until the tolerance or ``adam_iters``) and ``"sgd"`` (the
    paper's recipe, :func:`fit_logistic_sgd`: minibatch SGD, lr 1e-3, ``sgd_epochs`` epochs, no
    stopping rule — far from stationary; include it only to show what a sloppy honest provider
    does to the threshold). ``HonestModel.converged`` says whether a fit met its tolerance
    (Newton's Armijo search and L-BFGS's line search can stall a little above the tightest ones).
    """
    unknown = set(optimisers) - set(HONEST_OPTIMISERS)
    if unknown or not optimisers:
        raise ValueError(f"unknown optimisers {sorted(unknown)}; choose from {HONEST_OPTIMISERS}")
    if n < 1:
        raise ValueError("n must be >= 1")
    X = as_features(X, dtype=torch.float64)
    C = int(n_classes) if n_classes is not None else max(int(torch.as_tensor(y).max()) + 1, 2)
    y = as_labels(y, X.shape[0], C)
    model = LogisticModel(X.shape[1], C, bias=bias, l2=float(l2))
    std = 1.0 / math.sqrt(X.shape[1]) if init_std is None else float(init_std)
    out = []
    for i in range(n):
        name = optimisers[i % len(optimisers)]
        tol = float(tolerances[(i // len(optimisers)) % len(tolerances)])
        gen = torch.Generator().manual_seed(seed + i)
        theta0 = std * torch.randn(model.n_params, generator=gen, dtype=torch.float64)
        start = time.perf_counter()
        if name in ("lbfgs", "newton"):
            theta = fit_logistic(X, y, n_classes=C, bias=bias, l2=l2, method=name, tol=tol,
                                 theta0=theta0, max_iter=5000 if name == "lbfgs" else 200,
                                 warn=False).theta
        elif name == "adam":
            theta = _adam_full_batch(model, X, y, theta0, tol, lr=adam_lr, max_iter=adam_iters)
        else:
            theta = fit_logistic_sgd(X, y, n_classes=C, bias=bias, l2=l2, epochs=sgd_epochs,
                                     seed=seed + i).theta
            tol = float("nan")
        gnorm = float(model.gradient(theta, X, y).norm())
        out.append(HonestModel(theta, name, tol, seed + i, gnorm, time.perf_counter() - start,
                               bool(gnorm <= tol)))
    return out


def audit_with_real_query(score_fn, model: LogisticModel, theta: torch.Tensor, X_test, y_test,
                          *, basis: str = "random", seed: int = 0, rtol: float = 1e-6,
                          n_random_checks: int = 3) -> AuditReport:
    """The audit of App. A.0.1 whose check queries include the *real* test query.

    ``score_fn(Q)`` is the calculator (test gradients Q, q × p → scores, q × n). The implied
    linear map is fitted on p spanning queries (``basis``), then checked on G_test (the summed
    test gradient that the valuation actually uses, Eq. 3), on every test point's own gradient and
    on ``n_random_checks`` random queries. ``theta`` is the model the calculator *published*: the
    real query's gradients are evaluated there. Cost: p + n_test + n_random_checks queries, so
    p must be small (thousands at most) for a full audit.
    """
    X_test, y_test = model.validate(theta, X_test, y_test, name="_test")
    real = torch.cat([test_gradient(model, theta, X_test, y_test)[None],
                      per_sample_gradients(model, theta, X_test, y_test)])
    gen = torch.Generator().manual_seed(int(seed) + 1)
    rand = torch.randn(n_random_checks, model.n_params, generator=gen, dtype=real.dtype)
    checks = torch.cat([real, rand]) if n_random_checks > 0 else real
    return audit_influence_calculator(score_fn, model.n_params, basis=basis, seed=seed,
                                      rtol=rtol, check_queries=checks, dtype=real.dtype)
