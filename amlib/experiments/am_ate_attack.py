"""AM paper, Section 5.2 / App. D.3: one BLAMM attack on the ATE of Twins and its baseline masks.

:func:`run_attack` is one *attack trial* of the ``am-ate`` experiment (:mod:`.am_ate`):

1. draw the observational Twins sample of the trial (:func:`amlib.data.twins.twins_observational`
   with ``seed = trial``: which twin of each pair is kept, and the 50/50 split);
2. on the training half, train BLAMM (Algorithm 2) with the App. D.3 set-up: lower level a
   logistic regression of Y on (X, W) under the mean-imputation proxy (eqs. 8–11), upper level
   ``g = |τ̂(θ̃) − 0.10|`` (App. C.2), M = {gestat, wtgain}, the per-sample mechanism (4 patterns,
   φ⁽ⁱ⁾ = 0 at the start, App. C.4), Adam with lr 0.05 for 300 epochs, the access mixture of
   eq. 24 with λ = 0.5, 0.25, 1e-4, 1e-4 for N0/N = 1, 0.75, 0.5, 0.25; the attacker's rows are a
   random N0 of the N (seeded by the trial);
3. draw one mask from the learned mechanism (p′ on the attacker's rows, nothing hidden on the
   others), one from MCAR at the same pattern probabilities over all rows, one from the logistic
   MNAR baseline (Muzellec et al. 2020; Z = (X_M, Y, W)) at the attack's expected missing rate
   and, when asked, more MNAR masks at fixed rates (25% and 50% at full access, Table 15);
4. apply chapter 14's two detectors to ``detect_masks`` masks of each kind (BLAMM, MCAR, MNAR at
   the attack's rate), the first being the very mask the victims receive.

Two choices the paper leaves open, stated here and in the chapter:

- *λ's scale.*  BLAMM's Ω is the expected hidden share of all d features (Section 4).  As in the
  p-value experiment (:mod:`.am_pvalues`) we read the paper's λ as weighting the missing rate of
  the masked features, i.e. BLAMM's ``λ = λ_paper · d / |M|``; this reproduces the paper's expected
  missing rates (7.2, 11.1, 24.3, 12.5%).
- *Separation.*  In Twins some indicator columns (``hemo``, rare ``pldel``/``resstatb`` levels)
  occur with only one outcome, so the unpenalised logistic MLE does not exist and IRLS stalls.
  The attacker's lower level therefore carries a ridge of ``lower_l2`` = 1e-6 (per row) at every
  access level; the paper's fallback (re-solve with L2 1e-3 when ``|intercept| > 1e10``, only when
  N0/N < 1) is kept on top and its triggers are counted.  The attacker's design drops the
  reference level of each one-hot group (and columns constant in the half) so [1, X, W] has
  full rank; the victims get all 39 covariates.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..am.blamm import BLAMM
from ..am.missingness.mechanisms import (LogisticMNAR, masked_missing_rate, pattern_matrix,
                                         sample_patterns)
from ..data.twins import twins_observational

__all__ = ["MASKED", "TAU_ALPHA", "ACCESS_LAMBDA", "LOWER_L2", "FALLBACK_L2",
           "TrackedBLAMM", "attacker_columns", "detector_columns", "train_attack", "run_attack",
           "mask_frame"]

MASKED = ["gestat", "wtgain"]
TAU_ALPHA = 0.10
#: App. D.3: λ for each access level N0/N
ACCESS_LAMBDA = {1.0: 0.5, 0.75: 0.25, 0.5: 1e-4, 0.25: 1e-4}
LOWER_L2 = 1e-6
FALLBACK_L2 = 1e-3
INTERCEPT_LIMIT = 1e10


class TrackedBLAMM(BLAMM):
    """BLAMM that also logs, per epoch, the expected missing rate in M stratified by Y and the
    rate under the adversary's own mechanism p′ on its rows (Figure 8's right panels)."""

    def compute_loss(self):
        loss, parts = super().compute_loss()
        with torch.no_grad():
            effective = self.mechanism(self.Z)
            learned = self.adversary(self.Z)
            for name, probs in (("missing_rate", effective), ("local_rate", learned)):
                for label in (0, 1):
                    rows = self.y == label
                    parts[f"{name}_y{label}"] = float(masked_missing_rate(probs[rows]))
            parts["local_rate"] = float(masked_missing_rate(learned))
            parts["intercept"] = float(self.theta_tilde[0])
        parts["fallback"] = bool(parts["lower_l2"] > self.lam_lower)
        return loss, parts


def attacker_columns(sample, part: str = "train") -> list[str]:
    """The lower-level GLM's features: full-rank covariates, then the treatment ``w``."""
    return sample.linear_covariates(part) + ["w"]


def detector_columns(sample, part: str = "train", min_share: float = 0.01) -> list[str]:
    """Columns the detectors look at: the masked features, then the full-rank covariates whose
    rarer value covers at least ``min_share`` of the rows (rarer indicators make the EM
    covariance and the missingness logit singular), then ``w`` and ``y``."""
    rows = sample.part(part)
    keep = []
    for column in sample.linear_covariates(part):
        if column in MASKED:
            continue
        share = rows[column].value_counts(normalize=True)
        if len(share) > 2 or share.min() >= min_share:
            keep.append(column)
    return MASKED + keep + ["w", "y"]


def mask_frame(frame, patterns):
    """``frame`` with the masked features set to NaN where the pattern index hides them."""
    bits = pattern_matrix(len(MASKED)).numpy().astype(bool)[np.asarray(patterns)]
    out = frame.copy()
    for j, column in enumerate(MASKED):
        out[column] = out[column].astype(float).where(bits[:, j])
    return out


def train_attack(params: dict, sample=None) -> TrackedBLAMM:
    """Train the App. D.3 attack of one trial (``params``: trial, access, epochs, lr)."""
    sample = twins_observational(params["trial"]) if sample is None else sample
    train = sample.part("train")
    features = attacker_columns(sample)
    access = float(params["access"])
    lam = params.get("lam_upper", ACCESS_LAMBDA[access])
    scaled = lam * len(features) / len(MASKED)   # λ on the rate in M, see the module doc
    return TrackedBLAMM(
        train[features + ["y"]], "y", MASKED, family="bernoulli", proxy="mean",
        mechanism="per-sample", objective="ate", treatment="w", tau_alpha=TAU_ALPHA,
        access=access, lam_upper=scaled, lam_lower=params.get("lower_l2", LOWER_L2),
        fallback_l2=FALLBACK_L2 if access < 1.0 else None, lr=params["lr"],
        epochs=params["epochs"], seed=params["trial"], progress_bar=False).fit()


def _detect(frame, columns, patterns) -> dict:
    from ..am.detection import little_mcar_test, missingness_predictability_test

    masked = mask_frame(frame[columns], patterns)
    predictors = [c for c in columns if c not in MASKED]
    little = little_mcar_test(masked)
    out = {"hidden_share": float(masked[MASKED].isna().to_numpy().mean()),
           "little_pvalue": little.pvalue, "little_statistic": little.statistic}
    for column in MASKED:
        test = missingness_predictability_test(masked, column, predictors=predictors)
        out[f"lr_pvalue_{column}"] = test.pvalue
        out[f"auc_{column}"] = test.auc
    return out


def run_attack(params: dict) -> dict:
    """One attack trial (see the module doc).  ``params``: trial, access, epochs, lr,
    mnar_rates (extra fixed MNAR rates), detect_masks (masks per mechanism for the detectors)."""
    start = time.perf_counter()
    sample = twins_observational(params["trial"])
    attack = train_attack(params, sample)
    train_time = time.perf_counter() - start
    history = attack.history_frame()
    rate = attack.missing_rate("effective")
    mask_seed = [params["trial"], int(round(100 * params["access"]))]
    masks = {"BLAMM": attack.sample_patterns(1, seed=int(np.random.SeedSequence(
                 mask_seed + [1]).generate_state(1)[0]), mechanism="learned")[0],
             "MCAR": attack.sample_patterns(1, seed=int(np.random.SeedSequence(
                 mask_seed + [2]).generate_state(1)[0]), mechanism="mcar")[0]}
    train = sample.part("train")
    Z = torch.tensor(train[MASKED + ["y", "w"]].to_numpy(float), dtype=torch.float64)
    mnar = {"MNAR": rate}
    mnar.update({f"MNAR-{int(round(100 * r))}": r for r in params.get("mnar_rates", [])})
    mnar_mechanisms = {}
    for k, (label, r) in enumerate(mnar.items()):
        seed = int(np.random.SeedSequence(mask_seed + [3, k]).generate_state(1)[0])
        mechanism = LogisticMNAR(Z, len(MASKED), r, seed=seed)
        mnar_mechanisms[label] = mechanism
        with torch.no_grad():
            masks[label] = sample_patterns(mechanism(Z), 1, seed=seed)[0]
    detection = []
    n_detect = int(params.get("detect_masks", 0))
    if n_detect:
        columns = detector_columns(sample)
        seed = int(np.random.SeedSequence(mask_seed + [4]).generate_state(1)[0])
        extra = {"BLAMM": attack.sample_patterns(n_detect - 1, seed=seed, mechanism="learned"),
                 "MCAR": attack.sample_patterns(n_detect - 1, seed=seed + 1, mechanism="mcar")}
        with torch.no_grad():
            extra["MNAR"] = sample_patterns(mnar_mechanisms["MNAR"](Z), n_detect - 1, seed=seed + 2)
        for label, patterns in extra.items():
            # the first mask tested is the one the victims see in the tables
            for index, row in enumerate([masks[label], *patterns]):
                detection.append({"mechanism": label, "mask": index,
                                  **_detect(train, columns, row)})
    keep = ["loss", "g", "missing_rate", "missing_rate_y0", "missing_rate_y1", "local_rate",
            "local_rate_y0", "local_rate_y1", "intercept", "lower_iters"]
    return {"missing_rate": rate, "local_rate": attack.missing_rate("learned"),
            "fallbacks": int(history["fallback"].sum()), "epochs": len(history),
            "max_abs_intercept": float(history["intercept"].abs().max()),
            "final_g": float(history["g"].iloc[-1]),
            "tau_proxy": _proxy_tau(attack),
            "train_time_s": train_time, "total_time_s": time.perf_counter() - start,
            "history": history[keep].astype(float).to_dict(orient="list"),
            "masks": {label: np.asarray(p).astype(int).tolist() for label, p in masks.items()},
            "mask_rates": {label: float((pattern_matrix(len(MASKED)).numpy()[np.asarray(p)] == 0)
                                        .mean()) for label, p in masks.items()},
            "detection": detection}


def _proxy_tau(attack: BLAMM) -> float:
    """τ̂(θ̃) of the attacker's proxy at the final mechanism (App. C.2's estimator)."""
    from ..am.glm import ate

    return float(ate(attack.theta_tilde, attack.design_treated, attack.design_control,
                     attack.family))
