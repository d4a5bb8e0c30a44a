"""Influence-based fair reweighing (Li & Liu 2022) and the scaling attack on it (influence paper, Sec. 5).

The pipeline of Li & Liu, with the settings of the influence paper's code:

1. fit an L2-regularised logistic regression *without intercept*, the objective being
   ``Σ_i w_i ℓ(z_i, θ) + (l2/2)‖θ‖²`` (sklearn's ``C = 1/l2``; :func:`fit_weighted`);
2. for a validation function F (the summed validation log-loss for utility, a differentiable
   fairness gap for fairness) compute the influence of every training sample,
   ``infl_F(i) = g_iᵀ H_Σ⁻¹ ∇F(θ)`` with ``g_i = (p_i − y_i) x_i`` and
   ``H_Σ = Σ_i p_i(1 − p_i) x_i x_iᵀ + l2·I``: the first-order change of F when sample i is
   *removed* (:func:`influence_on_validation`);
3. solve the linear programme over removal fractions ``x ∈ [0, 1]ⁿ`` and retrain with sample
   weights ``w = 1 − x`` (:func:`reweighing_lp`, :func:`reweigh`).

The attack (:func:`scaling_attack`) hands step 2 the model ``s·θ_ERM`` instead of ``θ_ERM``:
``sign(s·θᵀx) = sign(θᵀx)`` for ``s > 0``, so predictions and accuracy are unchanged, but every
probability, gradient and the Hessian change, and with them the reweighing.

Fairness functions (Li & Liu's): DP — mean predicted probability of group 1 minus group 0; EOP —
mean log-loss of group-0 positives minus that of group-1 positives. Reported gaps
(:func:`dp_gap`, :func:`eop_gap`) use hard predictions: |P(ŷ=1 | s=1) − P(ŷ=1 | s=0)| and the
absolute difference of true-positive rates.

One influence engine, one sign convention
-----------------------------------------
Li & Liu write the objective as a *sum* (sklearn's ``C = 1/l2``) and the influence of
*removing* a sample; :mod:`amlib.influence` works with the *mean* loss and reports the value of
*up-weighting* (:mod:`amlib.influence.scores`). The two meet exactly, and the influences here are
computed by :func:`~amlib.influence.scores.values_and_ranks` (exact solver) after this
conversion:

- penalty: Σ_i ℓ_i + (l2/2)‖θ‖² = n·[(1/n) Σ_i ℓ_i + (l2/(2n))‖θ‖²], the same minimiser as
  the library's R(θ) with ``LogisticModel(l2 = l2/n)``, and Hessians H_Σ = n·H;
- sign: the library's value of sample i for a query gradient G is ``Gᵀ H⁻¹ g_i``, the value of
  up-weighting, and removing i changes G's function by ≈ value/n (see
  :func:`~amlib.influence.scores.leave_one_out_values`). With G = ∇F:

      infl_F(i) = g_iᵀ H_Σ⁻¹ ∇F = ∇Fᵀ H⁻¹ g_i / n = value_F(i) / n.

So a *negative* ``infl_F(i)`` is a sample whose removal lowers F (helps fairness or utility),
exactly Li & Liu's convention, and ``infl = values / n`` is the only conversion.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linprog
from scipy.special import expit

from .fitting import fit_logistic
from .models import LogisticModel
from .scores import query_gradient, values_and_ranks

__all__ = ["METRICS", "LI_LIU_SETTINGS", "SCALES", "dp_gap", "eop_gap", "fairness_function",
           "Influences", "influence_on_validation", "LPResult", "InfeasibleLPError",
           "reweighing_lp", "fit_weighted", "evaluate", "reweigh", "scaling_attack"]

METRICS = ("dp", "eop")
#: (β, γ) of the LP per (data set, metric), from the influence paper's code (Table 4)
LI_LIU_SETTINGS = {("adult", "dp"): (0.8, 0.3), ("adult", "eop"): (0.5, 0.2),
                   ("compas", "dp"): (0.3, 0.1), ("german", "dp"): (0.5, 0.0)}
#: the scaling coefficients s of the attack (s = 1 is honest reweighing)
SCALES = (0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0, 3.0)


class InfeasibleLPError(RuntimeError):
    """The reweighing LP (and its fallback, where allowed) has no solution."""


def _arrays(x, y=None, groups=None):
    """Check shapes and values; return float features, 0/1 labels and 0/1 groups (or None)."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ValueError(f"features must be a finite 2-D array, got shape {x.shape}")
    out = [x]
    for name, v in (("labels", y), ("groups", groups)):
        if v is None:
            out.append(None)
            continue
        v = np.asarray(v, dtype=float).reshape(-1)
        if v.shape != (len(x),):
            raise ValueError(f"{name} must have one entry per row ({len(x)}), got {v.shape}")
        if not np.isin(v, (0.0, 1.0)).all():
            raise ValueError(f"{name} must be 0/1")
        out.append(v)
    return out


def _group_masks(groups, where=None):
    """Boolean masks of group 0 and group 1 (restricted to ``where``); both must be non-empty."""
    if groups is None:
        raise ValueError("the sensitive group column is missing (pass 0/1 groups, one per row)")
    g = np.asarray(groups, dtype=float).reshape(-1)
    where = np.ones(len(g), bool) if where is None else where
    masks = (where & (g == 0), where & (g == 1))
    if not masks[0].any() or not masks[1].any():
        raise ValueError("both sensitive groups (0 and 1) need at least one row"
                         + ("" if where.all() else " among the positives"))
    return masks


def dp_gap(pred, groups) -> float:
    """Demographic-parity gap of 0/1 predictions: |P(ŷ=1 | s=1) − P(ŷ=1 | s=0)| (paper's Def. 2)."""
    pred = np.asarray(pred, dtype=float).reshape(-1)
    g0, g1 = _group_masks(groups)
    return float(abs(pred[g1].mean() - pred[g0].mean()))


def eop_gap(pred, y, groups) -> float:
    """Equal-opportunity gap: |TPR(s=1) − TPR(s=0)| of 0/1 predictions."""
    pred, y = np.asarray(pred, float).reshape(-1), np.asarray(y, float).reshape(-1)
    g0, g1 = _group_masks(groups, y == 1)
    return float(abs(pred[g1].mean() - pred[g0].mean()))


def fairness_function(theta, x, y, groups, metric: str = "dp") -> tuple[float, np.ndarray]:
    """Li & Liu's differentiable fairness function F on a validation set, and ∇_θ F.

    DP: F = mean_{s=1} σ(θᵀx) − mean_{s=0} σ(θᵀx), ∇F = mean_{s=1} p(1−p)x − mean_{s=0} p(1−p)x.
    EOP: F = mean log-loss over group-0 positives − over group-1 positives (same for ∇F).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {METRICS}")
    p = expit(x @ theta)
    if metric == "dp":
        g0, g1 = _group_masks(groups)
        value = p[g1].mean() - p[g0].mean()
        dp = (p * (1 - p))[:, None] * x
        return float(value), dp[g1].mean(0) - dp[g0].mean(0)
    g0, g1 = _group_masks(groups, y == 1)
    loss = -np.log(np.clip(p, 1e-16, None))           # log-loss of a positive
    grad = (p - 1)[:, None] * x
    return float(loss[g0].mean() - loss[g1].mean()), grad[g0].mean(0) - grad[g1].mean(0)


@dataclass
class Influences:
    """Influences of removing each training sample on the validation utility and fairness."""

    utility: np.ndarray        # infl_util(i): change of the summed validation log-loss
    fairness: np.ndarray       # infl_fair(i): change of the fairness function F
    utility_loss: float        # summed validation log-loss at θ
    fairness_loss: float       # F at θ


def influence_on_validation(theta, x_train, y_train, x_val, y_val, s_val, l2: float,
                            metric: str = "dp") -> Influences:
    """``infl_F(i) = g_iᵀ H_Σ⁻¹ ∇F(θ)`` for utility and fairness (Li & Liu 2022, Sec. 3).

    Removing sample i from ``Σ_j ℓ_j + (l2/2)‖θ‖²`` moves the minimiser by ≈ ``H_Σ⁻¹ g_i``, so F
    changes by ≈ ``∇Fᵀ H_Σ⁻¹ g_i``. Computed by the library's engine at ``theta`` (which need not
    be a minimiser: the attack evaluates it at ``s·θ_ERM``): the values of the two query
    gradients (∇ of the summed validation log-loss, ∇F) for ``LogisticModel(l2 = l2/n)``, no
    intercept, exact solver, divided by n (the conversion is in the module docstring).
    """
    x_train, y_train, _ = _arrays(x_train, y_train)
    x_val, y_val, s_val = _arrays(x_val, y_val, s_val)
    theta = np.asarray(theta, dtype=float).reshape(-1)
    if theta.shape != (x_train.shape[1],) or x_val.shape[1] != x_train.shape[1]:
        raise ValueError("theta, training and validation features must have the same dimension")
    if not l2 > 0:
        raise ValueError(f"l2 must be > 0 (the Hessian must be positive definite), got {l2}")
    n = len(y_train)
    model = LogisticModel(x_train.shape[1], 2, bias=False, l2=l2 / n)
    theta_t = torch.as_tensor(theta, dtype=torch.float64)
    X, y = torch.tensor(x_train), torch.tensor(y_train).long()
    X_val, y_val_t = torch.tensor(x_val), torch.tensor(y_val).long()
    util_grad = query_gradient(model, theta_t, X_val, y_val_t)     # ∇ Σ_val ℓ
    with torch.no_grad():
        util_loss = float(model.loss(theta_t, X_val, y_val_t, "sum"))
    fair_loss, fair_grad = fairness_function(theta, x_val, y_val, s_val, metric)
    queries = torch.stack([util_grad, torch.as_tensor(fair_grad, dtype=torch.float64)])
    values = values_and_ranks(model, theta_t, X, y, query_grad=queries, method="exact").values
    infl = (values / n).numpy()
    return Influences(infl[:, 0], infl[:, 1], util_loss, fair_loss)


@dataclass
class LPResult:
    """Removal fractions x, sample weights w = 1 − x and which programme produced them."""

    removal: np.ndarray
    branch: str               # "normal" or "fallback"

    @property
    def weights(self) -> np.ndarray:
        return 1.0 - self.removal


def reweighing_lp(fair_infl, util_infl, fair_loss: float, beta: float, gamma: float,
                  alpha: float = 0.2, fallback: bool = True) -> LPResult:
    """Li & Liu's reweighing LP (their Eq. 7, the influence paper's App. A.2), solved by HiGHS.

    Normal case: min Σx s.t. fairᵀx ≤ β·(−F), utilᵀx ≤ γ·max_util, x ∈ [0,1]ⁿ, where
    max_util = Σ_{util_i<0} util_i (the largest predicted decrease of the validation loss).
    When F ≥ −max_fair (no removal can cancel F; max_fair = Σ_{fair_i<0} fair_i) — and, beyond
    the original code, when the normal LP is infeasible — the fallback: min fairᵀx s.t.
    utilᵀx ≤ 0, Σx ≤ α·n. ``fallback=False`` raises :class:`InfeasibleLPError` instead.
    """
    fair = np.asarray(fair_infl, dtype=float).reshape(-1)
    util = np.asarray(util_infl, dtype=float).reshape(-1)
    if fair.shape != util.shape or not (np.isfinite(fair).all() and np.isfinite(util).all()):
        raise ValueError("fair_infl and util_infl must be finite and of the same length")
    if not (0 <= beta <= 1 and 0 <= gamma <= 1 and 0 < alpha <= 1):
        raise ValueError(f"need 0 ≤ β, γ ≤ 1 and 0 < α ≤ 1, got β={beta}, γ={gamma}, α={alpha}")
    n = len(fair)
    max_fair, max_util = fair[fair < 0].sum(), util[util < 0].sum()
    if fair_loss < -max_fair:
        res = linprog(np.ones(n), A_ub=np.vstack([fair, util]),
                      b_ub=[beta * -fair_loss, gamma * max_util], bounds=(0, 1), method="highs")
        if res.status == 0:
            return LPResult(np.clip(res.x, 0, 1), "normal")
        if not fallback:
            raise InfeasibleLPError(f"the reweighing LP has no solution ({res.message}); "
                                    "allow the fallback or relax β, γ")
    elif not fallback:
        raise InfeasibleLPError(f"the fairness loss {fair_loss:.4g} exceeds the largest predicted "
                                f"reduction {-max_fair:.4g}: only the fallback LP applies")
    res = linprog(fair, A_ub=np.vstack([util, np.ones(n)]), b_ub=[0.0, alpha * n],
                  bounds=(0, 1), method="highs")
    if res.status != 0:
        raise InfeasibleLPError(f"the fallback LP failed too: {res.message}")
    return LPResult(np.clip(res.x, 0, 1), "fallback")


def fit_weighted(x, y, l2: float, sample_weight=None) -> np.ndarray:
    """θ minimising ``Σ_i w_i ℓ(z_i, θ) + (l2/2)‖θ‖²`` (no intercept), by Newton's method.

    The same minimiser as sklearn's ``LogisticRegression(C=1/l2, fit_intercept=False)`` that
    Li & Liu use; weights must lie in [0, 1] (the LP's ``1 − x``).
    """
    x, y, _ = _arrays(x, y)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=float).reshape(-1)
        if sample_weight.shape != (len(y),):
            raise ValueError(f"need one sample weight per row ({len(y)}), got {sample_weight.shape}")
        if not np.isfinite(sample_weight).all() or sample_weight.min() < 0 or sample_weight.max() > 1:
            raise ValueError("sample weights must lie in [0, 1] (w = 1 − x, x the removal fraction)")
    if not l2 > 0:
        raise ValueError(f"l2 must be > 0, got {l2}")
    fit = fit_logistic(x, y.astype(int), n_classes=2, bias=False, l2=l2 / len(y),
                       sample_weight=sample_weight)
    return fit.theta.numpy().astype(float)


def evaluate(theta, x, y, groups) -> dict:
    """Accuracy, DP gap and EOP gap of the classifier ``1[θᵀx > 0]`` on (x, y, groups)."""
    pred = (np.asarray(x) @ theta > 0).astype(float)
    return {"accuracy": float((pred == y).mean()), "dp_gap": dp_gap(pred, groups),
            "eop_gap": eop_gap(pred, y, groups)}


def reweigh(data, metric: str, beta: float, gamma: float, scale: float = 1.0, alpha: float = 0.2,
            theta_erm=None) -> dict:
    """One run of the pipeline on a :class:`~amlib.data.fairness.FairnessDataset`.

    Influences at ``scale·θ_ERM`` (``scale = 1``: honest), the LP, a fresh weighted fit, and the
    downstream model's test metrics plus the LP's branch and total removal.
    """
    if not scale > 0:
        raise ValueError(f"the scaling coefficient must be > 0, got {scale}")
    if getattr(data, "s_val", None) is None or getattr(data, "s_train", None) is None:
        raise ValueError("the data set has no sensitive group column (s_train / s_val / s_test)")
    if theta_erm is None:
        theta_erm = fit_weighted(data.x_train, data.y_train, data.l2_reg)
    infl = influence_on_validation(scale * np.asarray(theta_erm), data.x_train, data.y_train,
                                   data.x_val, data.y_val, data.s_val, data.l2_reg, metric)
    lp = reweighing_lp(infl.fairness, infl.utility, infl.fairness_loss, beta, gamma, alpha)
    theta = fit_weighted(data.x_train, data.y_train, data.l2_reg, lp.weights)
    return {"scale": float(scale), "branch": lp.branch, "removed": float(lp.removal.sum()),
            "fairness_loss_val": infl.fairness_loss,
            **evaluate(theta, data.x_test, data.y_test, data.s_test)}


def scaling_attack(data, metric: str, beta: float, gamma: float, scales=SCALES,
                   alpha: float = 0.2) -> dict:
    """The scaling attack (influence paper, Sec. 5): :func:`reweigh` for every s in ``scales``.

    Always scales the ERM model (never a reweighted one). Returns the ERM model's test metrics
    (no reweighing) and one row per s.
    """
    theta_erm = fit_weighted(data.x_train, data.y_train, data.l2_reg)
    rows = [reweigh(data, metric, beta, gamma, s, alpha, theta_erm) for s in scales]
    return {"no_reweighing": evaluate(theta_erm, data.x_test, data.y_test, data.s_test),
            "runs": rows}
