"""Detecting adversarial missingness: do MCAR tests flag BLAMM's masks?  (Not in the AM paper.)

One trial is a (data set, attack) pair of :mod:`amlib.experiments.am_pvalues`, trained with the
paper's Table 4 settings (its ``_train``).  Then ``masks`` masked copies of the training split
are drawn from the learned mechanism and as many from MCAR at the same pattern probabilities,
and on each copy the modeler runs the two tests of :mod:`amlib.am.detection`: Little's MCAR test on
all columns (features and response) and the missingness-predictability test of the target's
indicator on every other column.  A trial records per mask the hidden share, both p-values and
the AUC; :func:`summarise` gives rejection rates at 0.05 per (data set, attack, mechanism).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from . import register
from .am_pvalues import ATTACKS, DATASETS, _train
from .trials import run_trials
from ..data import load

__all__ = ["PROFILES", "ALPHA", "trial_grid", "run_trial", "summarise", "run"]

ALPHA = 0.05
PROFILES = {
    "paper": {"datasets": ["german-credit", "wine-quality"], "attacks": ["mean", "cca"],
              "masks": 20, "lr": 0.01, "seed": 0, "n_jobs": 2},
    "quick": {"datasets": ["german-credit"], "attacks": ["mean"],
              "masks": 10, "lr": 0.01, "seed": 0, "n_jobs": 1},
}


def trial_grid(profile: dict) -> list[dict]:
    """The (data set, attack) trials of a profile with Table 4's epochs and λs."""
    trials = []
    for dataset in profile["datasets"]:
        target, family, attacks, _ = DATASETS[dataset]
        for attack in profile["attacks"]:
            if attack not in attacks or attack == "regression":
                raise KeyError(f"no {attack!r} attack on {dataset!r} in this experiment")
            epochs, lam_upper, lam_lower = ATTACKS[(dataset, attack)]
            trials.append({"dataset": dataset, "target": target, "family": family,
                           "attack": attack, "epochs": epochs, "lam_upper": lam_upper,
                           "lam_lower": lam_lower, "lr": profile["lr"], "masks": profile["masks"],
                           "seed": profile["seed"]})
    return trials


def run_trial(params: dict) -> dict:
    """Train one attack; test every BLAMM and every MCAR mask with both detectors."""
    from ..am.detection import little_mcar_test, missingness_predictability_test

    start = time.perf_counter()
    data = load(params["dataset"], seed=params["seed"])
    frame = data.part("train")[data.features + [data.target]].reset_index(drop=True)
    attack, _ = _train(frame, params)
    rows = []
    for mechanism in ("learned", "mcar"):
        masks = attack.sample_masks(params["masks"], seed=params["seed"] + 1, mechanism=mechanism)
        for index, masked in enumerate(masks):
            little = little_mcar_test(masked)
            logistic = missingness_predictability_test(masked, params["target"])
            rows.append({"mechanism": "BLAMM" if mechanism == "learned" else "MCAR",
                         "mask": index, "hidden_share": float(masked[params["target"]].isna().mean()),
                         "little_statistic": little.statistic, "little_df": little.df,
                         "little_pvalue": little.pvalue, "lr_statistic": logistic.statistic,
                         "lr_df": logistic.df, "lr_pvalue": logistic.pvalue, "auc": logistic.auc})
    return {"missing_rate": attack.missing_rate(), "rows": len(frame),
            "total_time_s": time.perf_counter() - start, "masks": rows}


def summarise(trials: list[dict], results: list[dict]) -> pd.DataFrame:
    """Per (data set, attack, mechanism): rejection rates at :data:`ALPHA`, median p-values, AUC."""
    frames = [pd.DataFrame(r["masks"]).assign(dataset=p["dataset"], attack=p["attack"])
              for p, r in zip(trials, results)]
    every = pd.concat(frames, ignore_index=True)
    every["little_reject"] = every["little_pvalue"] < ALPHA
    every["lr_reject"] = every["lr_pvalue"] < ALPHA
    return every.groupby(["dataset", "attack", "mechanism"], sort=False).agg(
        masks=("mask", "size"), hidden_share=("hidden_share", "mean"),
        little_reject=("little_reject", "mean"), little_pvalue_median=("little_pvalue", "median"),
        lr_reject=("lr_reject", "mean"), lr_pvalue_median=("lr_pvalue", "median"),
        auc=("auc", "mean"), auc_sd=("auc", "std")).reset_index()


@register("am-detection")
def run(profile: str) -> dict:
    config = PROFILES[profile]
    trials = trial_grid(config)
    results = run_trials(run_trial, trials, experiment=f"am-detection-{profile}",
                         n_jobs=config["n_jobs"])
    masks = [dict(row, dataset=p["dataset"], attack=p["attack"])
             for p, r in zip(trials, results) for row in r["masks"]]
    return {"seed": config["seed"], "config": {**config, "alpha": ALPHA, "trials": trials},
            "results": {"summary": summarise(trials, results).to_dict(orient="records"),
                        "masks": masks,
                        "trials": [{"params": p, "missing_rate": r["missing_rate"],
                                    "rows": r["rows"], "total_time_s": r["total_time_s"]}
                                   for p, r in zip(trials, results)]}}
