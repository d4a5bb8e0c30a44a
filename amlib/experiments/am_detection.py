"""Detecting adversarial missingness: do MCAR tests flag BLAMM's masks?  (Not in the AM paper.)

One trial is a (data set, attack) pair of :mod:`amlib.experiments.am_pvalues`, trained with the
paper's Table 4 settings (:func:`amlib.am.attack.train_attack`).  Then ``masks`` masked copies of the training split
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

from .registry import register
from .am_datasets import AM_TARGETS, attack_trial, train_on_split
from .trials import run_profile

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
        for attack in profile["attacks"]:
            if attack not in AM_TARGETS[dataset].attacks or attack == "regression":
                raise KeyError(f"no {attack!r} attack on {dataset!r} in this experiment")
            trials.append({**attack_trial(dataset, attack), "lr": profile["lr"],
                           "masks": profile["masks"], "seed": profile["seed"]})
    return trials


def run_trial(params: dict) -> dict:
    """Train one attack; test every BLAMM and every MCAR mask with both detectors."""
    from ..am.detection import little_mcar_test, missingness_predictability_test

    start = time.perf_counter()
    _, frame, run = train_on_split(params)
    attack = run.blamm
    rows = []
    for mechanism in ("blamm", "mcar"):
        masks = attack.sample_masks(params["masks"], seed=params["seed"] + 1, mechanism=mechanism)
        for index, masked in enumerate(masks):
            little = little_mcar_test(masked)
            logistic = missingness_predictability_test(masked, params["target"])
            rows.append({"mechanism": mechanism.upper(),
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
    config, trials, results = run_profile(run_trial, trial_grid, PROFILES, profile,
                                          experiment="am-detection")
    masks = [dict(row, dataset=p["dataset"], attack=p["attack"])
             for p, r in zip(trials, results) for row in r["masks"]]
    return {"seed": config["seed"], "config": {**config, "alpha": ALPHA, "trials": trials},
            "results": {"summary": summarise(trials, results).to_dict(orient="records"),
                        "masks": masks,
                        "trials": [{"params": p, "missing_rate": r["missing_rate"],
                                    "rows": r["rows"], "total_time_s": r["total_time_s"]}
                                   for p, r in zip(trials, results)]}}
