"""AM paper, Section 5.2 / App. D.3: manipulating the ATE of Twins (Tables 2, 13–15, Figure 8).

The experiment has two stages, both run through :func:`.trials.run_trials` (cached, resumable,
with a progress bar):

1. *attack trials* (:func:`.am_ate_attack.run_attack`), one per (trial, access level): the
   trial's observational sample (twin choice and 50/50 split drawn from ``seed = trial``), the
   BLAMM attack of App. D.3 (its seed is the trial, which also draws the rows the adversary
   controls), and one mask each from BLAMM, MCAR at the same rate, logistic MNAR at the same rate
   and, at full access, logistic MNAR at 25% and 50% (mask seeds derived from trial and access);
2. *cells*, one per (access, mechanism, remediation): the masked training halves of all trials
   are remediated (mean imputation, MICE through :func:`amlib.am.modelers.remediate`, or nothing
   for the MIA forests, which take the NaNs) and every estimator of that remediation gives τ̂
   (:func:`amlib.am.causal.estimate_ate_many`, so the trials' T-Nets/TARNets train as one
   batched network).  Wall time is recorded per estimator.

So each of the 5 trials of a cell redraws the twin kept from each pair, the train/test split,
the attack (its seed and the adversary's rows) and the masks.  τ̂ is the estimator's average of
μ̂1(x) − μ̂0(x) over the (attacked) training half, where the attack's own objective is measured.

:func:`summarise` gives ``results.summary``: one record per (estimator, imputation, mechanism,
access, missing_rate) with the mean and sd of τ̂ in percent over the trials;
:func:`paper_values` reads Tables 2, 13, 14, 15 from ``paper_values/am_ate.csv`` and
:func:`compare` lines them up.
"""
from __future__ import annotations

import time
from importlib import resources

import numpy as np
import pandas as pd

from . import register
from .am_ate_attack import ACCESS_LAMBDA, MASKED, mask_frame, run_attack
from .trials import run_trials

__all__ = ["ROWS", "LABELS", "PROFILES", "PAPER_RATES", "TRUE_ATE", "TOLERANCE",
           "KNOWN_DISAGREEMENTS", "BASELINE_EXCEPTIONS", "attack_grid", "cell_grid",
           "run_cell", "summarise", "figure8", "detection_rates", "paper_values", "compare",
           "run"]

TRUE_ATE = -1.61   # percent, all 11,400 pairs (Section 5.2)
#: a cell agrees with the paper when the mean τ̂ is within this many points of the paper's
TOLERANCE = 3.0
#: (estimator, imputation, mechanism, access, rate_key) -> why ours differs from the paper by
#: more than TOLERANCE points.  tests/test_am_ate_results.py checks this is exactly the set of
#: disagreeing cells of the committed paper-profile results.
_FORESTS = ("our forests are not the paper's: econml's CausalForestDML (64 trees, cross-fitted "
            "nuisance forests) stands in for R grf's causal_forest, and CF + MIA is a T-learner of "
            "scikit-learn forests that split on NaN (no GRF causal forest accepting NaN exists in "
            "Python). The attack is tuned to a linear model; how much of it a forest inherits "
            "depends on such details. ")
KNOWN_DISAGREEMENTS: dict[tuple, str] = {
    ("tarnet", "mean", "BLAMM", 1.0, "attack"):
        "paper 10.52, ours 7.44 (still above the 7% target): our five TARNets range from 6.0 to "
        "10.1, so the transfer from the linear proxy varies with the sample; at 75% access ours "
        "(8.95) matches the paper's 8.49.",
    ("cf", "mean", "BLAMM", 1.0, "attack"):
        "paper 7.65, ours 3.65: " + _FORESTS + "Mean imputation puts every hidden gestat exactly "
        "at the column mean, so trees can isolate the imputed rows; at 7% missingness our "
        "forest undoes half of the shift.",
    ("cf", "mean", "BLAMM", 0.5, "attack"):
        "paper 3.01, ours 7.66: " + _FORESTS + "At 50% access the attack hides about half of "
        "its rows (24% of all), and our forest follows it further than the linear victim.",
    ("cf-mia", "mia", "BLAMM", 1.0, "attack"):
        "paper 9.0, ours 0.21: " + _FORESTS + "Our MIA forests split on 'gestat is missing', "
        "which the attack ties to short gestations, so missingness carries back the risk "
        "information the imputation destroys.",
    ("cf-mia", "mia", "BLAMM", 0.75, "attack"):
        "paper 3.47, ours 0.38: as at full access, our MIA T-learner is barely moved.",
    ("cf-mia", "mia", "BLAMM", 0.5, "attack"):
        "paper -0.41, ours 8.24: " + _FORESTS + "With half of the adversary's rows masked our "
        "MIA forests are moved as strongly as the paper's doubly robust estimator (8.79; ours "
        "8.85).",
    ("cf-mia", "mia", "BLAMM", 0.25, "attack"):
        "paper -0.95, ours 2.36: ours sits with the other victims at 25% access (linear 1.49, "
        "CF 1.83, DR 2.22), where the paper's own CF + MIA is the outlier.",
}

#: MCAR/MNAR cells more than 3 points from the true ATE (the issue's band), with the reason.
BASELINE_EXCEPTIONS: dict[tuple, str] = {
    ("tnet", "mean", "MNAR", 0.25, "attack"):
        "-4.73 (paper -4.9): T-Net itself is biased downwards on Twins; the paper's own T-Net "
        "MCAR/MNAR cells reach -5.24 and six of them leave the 3-point band.",
}
#: the paper's expected missing share in M over the whole data (Section 5.2), percent
PAPER_RATES = {1.0: 7.2, 0.75: 11.1, 0.5: 24.3, 0.25: 12.5}
#: (estimator, remediation) rows of Tables 2, 13, 14 (``"mia"``: NaNs left in)
ROWS = [("tarnet", "mean"), ("tnet", "mean"), ("linear", "mean"), ("cf", "mean"),
        ("tarnet", "mice"), ("tnet", "mice"), ("linear", "mice"), ("cf-mia", "mia"),
        ("dr-mia", "mia")]
LABELS = {("tarnet", "mean"): "TARnet + mean", ("tnet", "mean"): "Tnet + mean",
          ("linear", "mean"): "linear + mean", ("cf", "mean"): "CF + mean",
          ("tarnet", "mice"): "TARnet + MICE", ("tnet", "mice"): "Tnet + MICE",
          ("linear", "mice"): "linear + MICE", ("cf-mia", "mia"): "CF + MIA",
          ("dr-mia", "mia"): "CF (DR) + MIA"}

#: forest sizes: fewer trees than grf's 2000 to fit the 2-core budget (τ̂ averages the forest's
#: CATE over 5,700 rows, so its Monte-Carlo noise from the trees is small)
_FOREST_PAPER = {"cf": {"n_estimators": 64, "n_nuisance": 40},
                 "cf-mia": {"n_estimators": 64}, "dr-mia": {"n_estimators": 64}}
PROFILES = {
    "paper": {"trials": 5, "access": [1.0, 0.75, 0.5, 0.25], "epochs": 300, "lr": 0.05,
              "rows": [list(r) for r in ROWS], "mnar_rates": [0.25, 0.5],
              "extra_rows": [["tarnet", "mean"], ["tnet", "mean"], ["linear", "mean"],
                             ["cf", "mean"]],
              "options": _FOREST_PAPER, "detect_masks": 2,
              "clean": ["linear", "cf-mia", "dr-mia"], "seed": 0, "n_jobs": 2},
    "quick": {"trials": 2, "access": [1.0, 0.25], "epochs": 100, "lr": 0.05,
              "rows": [["linear", "mean"], ["linear", "mice"], ["cf-mia", "mia"]],
              "mnar_rates": [], "extra_rows": [], "detect_masks": 1, "clean": ["linear"],
              "options": {"cf-mia": {"n_estimators": 32}}, "seed": 0, "n_jobs": 1},
}


def attack_grid(config: dict) -> list[dict]:
    """One attack trial per (trial, access level)."""
    return [{"trial": config["seed"] + k, "access": float(a), "lam_upper": ACCESS_LAMBDA[a],
             "epochs": config["epochs"], "lr": config["lr"],
             "mnar_rates": config["mnar_rates"] if a == 1.0 else [],
             "detect_masks": config["detect_masks"]}
            for a in config["access"] for k in range(config["trials"])]


def cell_grid(config: dict) -> list[dict]:
    """One cell per (access, mechanism, remediation) with the estimators it feeds."""
    attacks = attack_grid(config)
    cells = []
    for access in config["access"]:
        mine = [a for a in attacks if a["access"] == float(access)]
        labels = ["BLAMM", "MCAR", "MNAR"]
        if access == 1.0:
            labels += [f"MNAR-{int(round(100 * r))}" for r in config["mnar_rates"]]
        for label in labels:
            rows = config["rows"] if "-" not in label else config["extra_rows"]
            for remediation in dict.fromkeys(r for _, r in rows):
                estimators = [e for e, r in rows if r == remediation]
                cells.append({"access": float(access), "mask": label, "remediation": remediation,
                              "estimators": estimators, "attacks": mine,
                              "options": {e: config["options"].get(e, {}) for e in estimators}})
    if config.get("clean"):   # estimators on the complete halves, for reference
        estimators = list(config["clean"])
        cells.append({"access": 1.0, "mask": "none", "remediation": "none",
                      "estimators": estimators,
                      "attacks": [a for a in attacks if a["access"] == 1.0],
                      "options": {e: config["options"].get(e, {}) for e in estimators}})
    return cells


def _attacks(attacks: list[dict], profile_tag: str, progress=None, n_jobs: int = 1) -> list[dict]:
    return run_trials(run_attack, attacks, experiment=f"am-ate-attacks-{profile_tag}",
                      progress=progress, n_jobs=n_jobs)


def with_masks(cell: dict, attack_results: list[dict]) -> dict:
    """The cell's trial parameters: the trials, the masks it evaluates (pattern indices of each
    trial's training half, from the attack trials) and the attacks' expected missing rates."""
    mine = list(attack_results)
    return {**{k: v for k, v in cell.items() if k != "attacks"},
            "trials": [a["trial"] for a in cell["attacks"]],
            "patterns": None if cell["mask"] == "none" else [r["masks"][cell["mask"]] for r in mine],
            "attack_rates": [r["missing_rate"] for r in mine]}


def run_cell(params: dict) -> dict:
    """τ̂ of every estimator of one cell on each trial's masked training half (module doc)."""
    import torch

    from ..am.causal import estimate_ate_many
    from ..am.modelers import mice_backend, remediate
    from ..data.twins import twins_observational

    torch.set_num_threads(1)   # one thread per worker: the machine is shared
    shares, seeds, times, plain = [], [], {}, []
    start = time.perf_counter()
    for k, trial in enumerate(params["trials"]):
        sample = twins_observational(trial)
        train = sample.part("train")[sample.covariates + ["w", "y"]]
        masked = train if params["patterns"] is None else mask_frame(train, params["patterns"][k])
        shares.append(float(masked[MASKED].isna().to_numpy().mean()))
        if params["remediation"] in ("mean", "mice"):
            completed = remediate(masked, params["remediation"], response="y", seed=1000 * trial + 7)
        else:
            completed = masked
        X = completed[sample.covariates].to_numpy(float)
        plain.append((X, completed["w"].to_numpy(float), completed["y"].to_numpy(float)))
        seeds.append(1000 * trial + 11)
    times["remediation"] = time.perf_counter() - start
    taus = {}
    for estimator in params["estimators"]:
        start = time.perf_counter()
        taus[estimator] = [float(t) for t in
                           estimate_ate_many(estimator, plain, seeds,
                                             **params["options"].get(estimator, {}))]
        times[estimator] = time.perf_counter() - start
    return {"taus": taus, "hidden_shares": shares, "time_s": times, "trials": params["trials"],
            "attack_rates": params["attack_rates"],
            "mice_backend": mice_backend() if params["remediation"] == "mice" else None}


def summarise(cells: list[dict], results: list[dict]) -> pd.DataFrame:
    """One record per (estimator, imputation, mechanism, access, missing_rate); τ̂ in percent.

    ``mechanism`` is BLAMM, MCAR or MNAR; ``missing_rate`` is the expected share hidden in M over
    the whole training half (the attack's rate for BLAMM/MCAR/MNAR-at-BLAMM-rate, 0.25/0.5 for
    Table 15's fixed MNAR rates), ``rate_rule`` says which.  Cells without missingness are left
    out (see :func:`clean_summary`)."""
    rows = []
    for cell, result in zip(cells, results):
        if cell["mask"] == "none":
            continue
        mechanism, _, fixed = cell["mask"].partition("-")
        rate = float(fixed) / 100 if fixed else float(np.mean(result["attack_rates"]))
        for estimator, taus in result["taus"].items():
            values = 100 * np.asarray(taus)
            rows.append({"estimator": estimator, "imputation": cell["remediation"],
                         "label": LABELS[(estimator, cell["remediation"])],
                         "mechanism": mechanism, "access": cell["access"],
                         "missing_rate": rate, "rate_rule": "fixed" if fixed else "BLAMM",
                         "hidden_share": float(np.mean(result["hidden_shares"])),
                         "ate_mean": float(values.mean()),
                         "ate_sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                         "n": len(values), "ates": values.tolist()})
    return pd.DataFrame(rows)


def clean_summary(cells: list[dict], results: list[dict]) -> pd.DataFrame:
    """τ̂ (percent) of every estimator on the complete training halves (no attack)."""
    rows = []
    for cell, result in zip(cells, results):
        if cell["mask"] != "none":
            continue
        for estimator, taus in result["taus"].items():
            values = 100 * np.asarray(taus)
            rows.append({"estimator": estimator, "ate_mean": float(values.mean()),
                         "ate_sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                         "n": len(values)})
    return pd.DataFrame(rows)


def figure8(attacks: list[dict], results: list[dict]) -> dict:
    """Figure 8's curves per access level: mean over trials of the upper loss g and of the
    expected missing share in M (all rows and by Y; effective mixture and the adversary's p′)."""
    out = {}
    for access in sorted({a["access"] for a in attacks}, reverse=True):
        runs = [pd.DataFrame(r["history"]) for a, r in zip(attacks, results)
                if a["access"] == access]
        mean = sum(runs) / len(runs)
        out[str(access)] = mean.drop(columns=["lower_iters"]).to_dict(orient="list")
    return out


def attack_table(attacks: list[dict], results: list[dict]) -> pd.DataFrame:
    """Per access level: expected missing share in M (ours and the paper's), proxy τ̂, fallbacks."""
    rows = [{"access": a["access"], "trial": a["trial"], "missing_rate": 100 * r["missing_rate"],
             "local_rate": 100 * r["local_rate"], "tau_proxy": 100 * r["tau_proxy"],
             "fallbacks": r["fallbacks"], "epochs": r["epochs"],
             "max_abs_intercept": r["max_abs_intercept"], "train_time_s": r["train_time_s"]}
            for a, r in zip(attacks, results)]
    table = pd.DataFrame(rows).groupby("access", sort=False).agg(
        missing_rate=("missing_rate", "mean"), missing_rate_sd=("missing_rate", "std"),
        local_rate=("local_rate", "mean"), tau_proxy=("tau_proxy", "mean"),
        fallbacks=("fallbacks", "sum"), epochs=("epochs", "sum"),
        max_abs_intercept=("max_abs_intercept", "max"),
        train_time_s=("train_time_s", "sum")).reset_index()
    table["paper_rate"] = table["access"].map(PAPER_RATES)
    return table


def detection_rates(attacks: list[dict], results: list[dict], alpha: float = 0.05) -> pd.DataFrame:
    """Chapter 14's detectors on the Twins masks: rejection rates at ``alpha`` per (access,
    mechanism); the predictability test rejects when either masked feature's test does."""
    rows = [dict(d, access=a["access"], trial=a["trial"])
            for a, r in zip(attacks, results) for d in r["detection"]]
    if not rows:
        return pd.DataFrame()
    every = pd.DataFrame(rows)
    every["little_reject"] = every["little_pvalue"] < alpha
    lr = every[[f"lr_pvalue_{c}" for c in MASKED]].min(axis=1)
    every["lr_reject"] = lr < alpha / len(MASKED)   # Bonferroni over the two masked features
    every["auc"] = every[[f"auc_{c}" for c in MASKED]].mean(axis=1)
    return every.groupby(["access", "mechanism"], sort=False).agg(
        masks=("mask", "size"), hidden_share=("hidden_share", "mean"),
        little_reject=("little_reject", "mean"), lr_reject=("lr_reject", "mean"),
        auc=("auc", "mean")).reset_index()


def paper_values() -> pd.DataFrame:
    """Tables 2, 13, 14, 15 as printed (``paper_values/am_ate.csv``), τ̂ in percent."""
    with resources.files(__package__).joinpath("paper_values/am_ate.csv").open() as handle:
        return pd.read_csv(handle, comment="#")


def compare(summary: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every paper cell next to ours (``ate_ours``/``sd_ours``; NaN where we did not run it)."""
    paper = paper_values() if paper is None else paper
    ours = summary.rename(columns={"ate_mean": "ate_ours", "ate_sd": "sd_ours"})
    ours = ours.assign(rate_key=np.where(ours["rate_rule"] == "fixed",
                                         (100 * ours["missing_rate"]).round().astype(int).astype(str),
                                         "attack"))
    keys = ["estimator", "imputation", "mechanism", "access", "rate_key"]
    return paper.merge(ours[keys + ["ate_ours", "sd_ours", "missing_rate"]], on=keys, how="left")


@register("am-ate")
def run(profile: str) -> dict:
    import torch

    config = PROFILES[profile]
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    try:
        attacks = attack_grid(config)
        attack_results = _attacks(attacks, profile, n_jobs=config["n_jobs"])
        cells = cell_grid(config)
        by_key = {(a["trial"], a["access"]): r for a, r in zip(attacks, attack_results)}
        params = [with_masks(c, [by_key[(a["trial"], a["access"])] for a in c["attacks"]])
                  for c in cells]
        results = run_trials(run_cell, params, experiment=f"am-ate-cells-{profile}",
                             n_jobs=config["n_jobs"])
    finally:
        torch.set_num_threads(threads)
    summary = summarise(cells, results)
    times: dict[str, float] = {"attack": float(sum(r["total_time_s"] for r in attack_results))}
    for result in results:
        for key, value in result["time_s"].items():
            times[key] = times.get(key, 0.0) + float(value)
    backends = {r["mice_backend"] for r in results if r["mice_backend"]}
    out = {"summary": summary.to_dict(orient="records"),
           "clean": clean_summary(cells, results).to_dict(orient="records"),
           "attacks": attack_table(attacks, attack_results).to_dict(orient="records"),
           "figure8": figure8(attacks, attack_results),
           "detection": detection_rates(attacks, attack_results).to_dict(orient="records"),
           "time_s": times, "mice_backend": sorted(backends),
           "true_ate": TRUE_ATE}
    slim = [{k: v for k, v in c.items() if k != "attacks"} for c in cells]
    return {"seed": config["seed"], "config": {**config, "attacks": attacks, "cells": slim},
            "results": out}
