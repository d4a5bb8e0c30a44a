"""AM paper, Section 5.1 / App. D.1-D.2: manipulating p-values (Tables 1, 5-9; Figures 5-7).

One *trial* is a (data set, attack) pair: BLAMM learns a neural mechanism that hides the target
feature (M = {target}, g = KL to θα), with the paper's Table 4 hyper-parameters; then 20 masks are
drawn from it and 20 from the MCAR mechanism with the same pattern probabilities, and every
modeler (mean, CCA, regression imputation, MICE) fits a GLM to each masked copy.  A trial records,
per mask, the target's coefficient and p-value, the normalised L1 distance to θα, and the
auditing-set score, plus BLAMM's training curve and learned missing rate.

The ``regression`` attack follows the paper: the CCA attack for the first 60% of the epochs, then
fine-tuning on the regression-imputation proxy with the learning rate divided by 100.
"""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import pandas as pd

from . import register
from .am_datasets import audit_score
from .trials import run_trials
from ..data import load

__all__ = ["DATASETS", "ATTACKS", "PROFILES", "trial_grid", "run_trial", "run", "summarise",
           "feature_table"]

#: data set -> (target feature, GLM family, attacks it is attacked with, modelers it is fitted by)
DATASETS = {
    "ca-housing": ("MedInc", "gaussian", ("mean", "cca", "regression"),
                   ("mean", "cca", "regression", "mice")),
    "wine-quality": ("alcohol", "binomial", ("mean", "cca", "regression"),
                     ("mean", "cca", "regression", "mice")),
    "german-credit": ("installment_rate", "binomial", ("mean", "cca", "regression"),
                      ("mean", "cca", "regression", "mice")),
    # sex is binary: only complete-case analysis and MICE make sense for it (paper, Table 7)
    "diabetes": ("sex", "gaussian", ("cca",), ("cca", "mice")),
}

#: the paper's Table 4: (epochs, λ upper, λ lower) per attack and data set; lr 0.01 throughout
ATTACKS = {
    ("ca-housing", "mean"): (200, 0.01, 0.0),
    ("wine-quality", "mean"): (200, 0.01, 0.0),
    ("german-credit", "mean"): (200, 0.01, 0.0),
    ("ca-housing", "cca"): (600, 0.05, 0.0),
    ("wine-quality", "cca"): (300, 0.01, 1e-7),
    ("german-credit", "cca"): (200, 0.01, 0.0),
    ("diabetes", "cca"): (200, 0.01, 0.0),
    ("ca-housing", "regression"): (1000, 0.05, 0.0),
    ("wine-quality", "regression"): (500, 0.01, 1e-7),
    ("german-credit", "regression"): (333, 0.01, 0.0),
}

#: ``epoch_scale`` multiplies Table 4's epochs; ``datasets``/``attacks`` restrict the grid.
PROFILES = {
    "paper": {"masks": 20, "epoch_scale": 1.0, "lr": 0.01, "seed": 0, "datasets": None,
              "attacks": None, "n_jobs": 2},
    "quick": {"masks": 5, "epoch_scale": 1.0, "lr": 0.01, "seed": 0,
              "datasets": ["wine-quality", "german-credit", "diabetes"],
              "attacks": ["mean", "cca"], "n_jobs": 2},
}


def trial_grid(profile: dict) -> list[dict]:
    """The (data set, attack) trials of a profile, with everything a trial needs to run."""
    trials = []
    for dataset, (target, family, attacks, modelers) in DATASETS.items():
        if profile["datasets"] is not None and dataset not in profile["datasets"]:
            continue
        for attack in attacks:
            if profile["attacks"] is not None and attack not in profile["attacks"]:
                continue
            epochs, lam_upper, lam_lower = ATTACKS[(dataset, attack)]
            trials.append({
                "dataset": dataset, "target": target, "family": family, "attack": attack,
                "modelers": list(modelers), "epochs": max(1, math.ceil(epochs * profile["epoch_scale"])),
                "lam_upper": lam_upper, "lam_lower": lam_lower, "lr": profile["lr"],
                "masks": profile["masks"], "seed": profile["seed"]})
    return trials


def _train(frame: pd.DataFrame, params: dict):
    from ..blamm import BLAMM

    # Table 4's lower-level λ multiplies ‖θ‖² next to a *sum* over rows (eq. 8); amlib's lower
    # objective is a mean over rows, so the same penalty is λ/N here.
    # Table 4's upper λ multiplies the missing rate of the target (Table 5's quantity); BLAMM's Ω
    # is the hidden share of all d features, which is that rate / d, so the same penalty is λ·d.
    d = frame.shape[1] - 1
    common = dict(response=frame.columns[-1], masked=[params["target"]], family=params["family"],
                  lam_upper=params["lam_upper"] * d, lam_lower=params["lam_lower"] / len(frame),
                  seed=params["seed"], progress_bar=False)
    if params["attack"] != "regression":
        return BLAMM(frame, proxy=params["attack"], lr=params["lr"], epochs=params["epochs"],
                     **common).fit(), None
    warm_epochs = max(1, int(round(0.6 * params["epochs"])))
    warm = BLAMM(frame, proxy="cca", lr=params["lr"], epochs=warm_epochs, **common).fit()
    tuned = BLAMM(frame, proxy="regression", mechanism=copy.deepcopy(warm.adversary),
                  lr=params["lr"] / 100, epochs=max(1, params["epochs"] - warm_epochs),
                  **common).fit()
    return tuned, warm


def run_trial(params: dict) -> dict:
    """Train one attack and evaluate every modeler on its masks and on MCAR masks (see module doc)."""
    from ..modelers import fit_modeler, mice_backend

    start = time.perf_counter()
    data = load(params["dataset"], seed=params["seed"])
    frame = data.part("train")[data.features + [data.target]].reset_index(drop=True)
    attack, warm = _train(frame, params)
    theta_alpha = attack.theta_frame()["theta_alpha"]
    history = attack.history_frame()
    if warm is not None:
        history = pd.concat([warm.history_frame().assign(stage="cca"),
                             history.assign(stage="regression")], ignore_index=True)
    history = history[["loss", "g", "omega", "missing_rate"]].astype(float)
    train_time = time.perf_counter() - start
    X_audit, y_audit = data.X("audit"), data.y("audit")
    rows = []
    for mechanism in ("learned", "mcar"):
        masks = attack.sample_masks(params["masks"], seed=params["seed"] + 1, mechanism=mechanism)
        for mask_index, masked in enumerate(masks):
            hidden = float(masked[params["target"]].isna().mean())
            for modeler in params["modelers"]:
                fit = fit_modeler(masked, modeler, params["family"], response=data.target,
                                  seed=params["seed"] + mask_index)
                theta_hat = fit.params.reindex(theta_alpha.index)
                l1 = float(np.abs(theta_hat - theta_alpha).sum())
                rows.append({
                    "mechanism": "BLAMM" if mechanism == "learned" else "MCAR",
                    "mask": mask_index, "modeler": modeler, "hidden_share": hidden,
                    "coef": float(fit.params[params["target"]]),
                    "pvalue": float(fit.pvalues[params["target"]]),
                    "l1": l1, "l1_normalised": l1 / float(np.abs(theta_alpha).sum()),
                    "audit_score": audit_score(fit, X_audit, y_audit, params["family"]),
                    "params": fit.params.to_dict(), "pvalues": fit.pvalues.to_dict(),
                })
    return {"missing_rate": attack.missing_rate(), "train_time_s": train_time,
            "total_time_s": time.perf_counter() - start, "mice_backend": mice_backend(),
            "history": history.to_dict(orient="list"), "masks": rows,
            "theta_alpha": theta_alpha.to_dict()}


def summarise(trials: list[dict], results: list[dict]) -> pd.DataFrame:
    """One row per (data set, modeler, attack, mechanism): means and sds over masks, with ✓."""
    frames = []
    for params, result in zip(trials, results):
        masks = pd.DataFrame(result["masks"])
        masks["dataset"], masks["attack"] = params["dataset"], params["attack"]
        masks["missing_rate"] = result["missing_rate"]
        frames.append(masks)
    every = pd.concat(frames, ignore_index=True).drop(columns=["params", "pvalues"], errors="ignore")
    keys = ["dataset", "modeler", "attack", "mechanism"]
    summary = every.groupby(keys, sort=False).agg(
        l1_normalised=("l1_normalised", "mean"), l1_normalised_sd=("l1_normalised", "std"),
        l1=("l1", "mean"), l1_sd=("l1", "std"), pvalue=("pvalue", "mean"),
        coef=("coef", "mean"), audit_score=("audit_score", "mean"),
        hidden_share=("hidden_share", "mean"), missing_rate=("missing_rate", "first"),
    ).reset_index()
    summary["insignificant"] = summary["pvalue"] > 0.05
    return summary


def feature_table(trials: list[dict], results: list[dict], dataset: str) -> pd.DataFrame:
    """Tables 10-12: mean coefficient and p-value of every feature per (modeler, attack, mechanism)."""
    rows = []
    for params, result in zip(trials, results):
        if params["dataset"] != dataset:
            continue
        for mask in result["masks"]:
            for feature, coef in mask["params"].items():
                rows.append({"modeler": mask["modeler"], "attack": params["attack"],
                             "mechanism": mask["mechanism"], "feature": feature, "coef": coef,
                             "pvalue": mask["pvalues"][feature]})
    if not rows:
        raise KeyError(f"no trials for data set {dataset!r}")
    return (pd.DataFrame(rows).groupby(["feature", "modeler", "attack", "mechanism"], sort=False)
            [["coef", "pvalue"]].mean().reset_index())


@register("am-pvalues")
def run(profile: str) -> dict:
    config = PROFILES[profile]
    trials = trial_grid(config)
    results = run_trials(run_trial, trials, experiment=f"am-pvalues-{profile}",
                         n_jobs=config["n_jobs"])
    summary = summarise(trials, results)
    return {"seed": config["seed"], "config": {**config, "trials": trials},
            "results": {"summary": summary.to_dict(orient="records"),
                        "features": {name: feature_table(trials, results, name).to_dict(orient="records")
                                     for name in {t["dataset"] for t in trials}},
                        "trials": [{"params": p, **{k: r[k] for k in
                                    ("missing_rate", "train_time_s", "total_time_s",
                                     "mice_backend", "history", "theta_alpha")}}
                                   for p, r in zip(trials, results)]}}
