"""AM paper, App. D.1 and Figure 4: data valuation as a defence against the p-value attack.

The attacker trains the CCA attack of :mod:`amlib.experiments.am_pvalues` (Table 4's settings);
the modeler mean-imputes each of the masked copies, scores every completed training row against
the clean auditing split with a data-valuation method, discards the lowest-valued share of rows
(0% to 50%) and fits the GLM to the rest.  Per share it records the target's p-value and the
L1 distances of the fitted coefficients to the adversary's θα and to the complete-data
estimate θp ("the true coefficients"), intercept excluded as in
:mod:`amlib.experiments.am_pvalues`.  The defence succeeds when the mean p-value drops below
0.05.

Valuation follows the paper: KNN-Shapley (Jia et al. 2019; regression utility, K = 10) on
ca-housing and LAVA (Just et al. 2023) on wine-quality, both from :mod:`amlib.am.valuation`
(OpenDataVal, which the paper used, cannot be installed beside this project's pinned torch,
numpy and pandas).  One trial is one data set: the attack is trained once and every mask is
valued in turn.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from .registry import register
from .am_datasets import attack_trial, audit_score, fit_glm, train_on_split
from .trials import run_profile

__all__ = ["DEFENCES", "PROFILES", "trial_grid", "run_trial", "summarise", "run"]

#: data set -> valuation method (the paper's Figure 4)
DEFENCES = {"ca-housing": "knn-shapley", "wine-quality": "lava"}

_SHARES_PAPER = [round(0.05 * k, 2) for k in range(11)]  # 0%, 5%, ..., 50%
PROFILES = {
    "paper": {"datasets": ["ca-housing", "wine-quality"], "masks": 20, "shares": _SHARES_PAPER,
              "k_neighbors": 10, "epoch_scale": 1.0, "lr": 0.01, "seed": 0, "n_jobs": 2},
    "quick": {"datasets": ["wine-quality"], "masks": 3, "shares": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
              "k_neighbors": 10, "epoch_scale": 1.0, "lr": 0.01, "seed": 0, "n_jobs": 1},
}


def trial_grid(profile: dict) -> list[dict]:
    """One trial per data set, with the CCA attack's Table 4 settings."""
    trials = []
    for dataset in profile["datasets"]:
        if dataset not in DEFENCES:
            raise KeyError(f"no defence is defined for {dataset!r}; use one of {sorted(DEFENCES)}")
        shares = [float(s) for s in profile["shares"]]
        if any(not 0 <= s < 1 for s in shares):
            raise ValueError(f"discarded shares must lie in [0, 1), got {shares}")
        trials.append({
            **attack_trial(dataset, "cca", profile["epoch_scale"]), "modeler": "mean",
            "valuation": DEFENCES[dataset], "k_neighbors": profile["k_neighbors"],
            "shares": shares, "lr": profile["lr"], "masks": profile["masks"],
            "seed": profile["seed"]})
    return trials


def _values(method: str, X, y, X_valid, y_valid, params: dict) -> np.ndarray:
    from ..am.valuation import knn_shapley, lava_values

    if method == "knn-shapley":
        return knn_shapley(X, y, X_valid, y_valid, K=params["k_neighbors"], task="regression")
    if method == "lava":
        return lava_values(X, y, X_valid, y_valid, seed=params["seed"])
    raise ValueError(f"unknown valuation {method!r}; use 'knn-shapley' or 'lava'")


def run_trial(params: dict) -> dict:
    """Train the CCA attack, then value, prune and refit every mean-imputed mask (module doc)."""
    from ..am.modelers import remediate

    start = time.perf_counter()
    data, frame, run = train_on_split(params)
    features, target, attack = data.features, params["target"], run.blamm
    theta_alpha = attack.theta_frame()["theta_alpha"]
    theta_true = fit_glm(frame[features], frame[data.target], params["family"]).params
    theta_true = theta_true.reindex(theta_alpha.index)
    train_time = time.perf_counter() - start
    X_audit, y_audit = data.X("audit"), data.y("audit")
    rows, value_time = [], 0.0
    for mask_index, masked in enumerate(attack.sample_masks(params["masks"], seed=params["seed"] + 1)):
        hidden = masked[target].isna().to_numpy()
        completed = remediate(masked, "mean", response=data.target)
        tick = time.perf_counter()
        values = _values(params["valuation"], completed[features].to_numpy(float),
                         completed[data.target].to_numpy(float), X_audit.to_numpy(float),
                         y_audit.to_numpy(float), params)
        value_time += time.perf_counter() - tick
        order = np.argsort(values, kind="stable")  # lowest value first
        for share in params["shares"]:
            n_drop = int(np.floor(share * len(completed)))
            keep = np.sort(order[n_drop:])
            kept = completed.iloc[keep]
            fit = fit_glm(kept[features], kept[data.target], params["family"])
            theta_hat = fit.params.reindex(theta_alpha.index)
            dropped = order[:n_drop]
            rows.append({
                "mask": mask_index, "share": share, "n_dropped": n_drop,
                "pvalue": float(fit.pvalues[target]), "coef": float(fit.params[target]),
                "l1_alpha": float(np.abs(theta_hat - theta_alpha).drop("const").sum()),
                "l1_true": float(np.abs(theta_hat - theta_true).drop("const").sum()),
                "audit_score": audit_score(fit, X_audit, y_audit, params["family"]),
                "hidden_share": float(hidden.mean()),
                "dropped_hidden_share": float(hidden[dropped].mean()) if n_drop else float("nan"),
                "params": fit.params.to_dict(),
            })
    return {"missing_rate": attack.missing_rate(), "train_time_s": train_time,
            "valuation_time_s": value_time, "total_time_s": time.perf_counter() - start,
            "theta_alpha": theta_alpha.to_dict(), "theta_true": theta_true.to_dict(),
            "rows": rows}


def summarise(trials: list[dict], results: list[dict]) -> pd.DataFrame:
    """Figure 4's curves: per (data set, share) the mean (and sd) over masks, and the mean
    fitted coefficients (``coefs``)."""
    frames = []
    for params, result in zip(trials, results):
        frame = pd.DataFrame(result["rows"])
        frame["dataset"], frame["valuation"] = params["dataset"], params["valuation"]
        frames.append(frame)
    every = pd.concat(frames, ignore_index=True)
    keys = ["dataset", "valuation", "share"]
    coefs = (pd.DataFrame(every["params"].tolist()).assign(**{k: every[k] for k in keys})
             .groupby(keys, sort=False).mean())
    every = every.drop(columns=["params"])
    summary = every.groupby(keys, sort=False).agg(
        pvalue=("pvalue", "mean"), pvalue_sd=("pvalue", "std"),
        l1_alpha=("l1_alpha", "mean"), l1_alpha_sd=("l1_alpha", "std"),
        l1_true=("l1_true", "mean"), l1_true_sd=("l1_true", "std"),
        coef=("coef", "mean"), audit_score=("audit_score", "mean"),
        dropped_hidden_share=("dropped_hidden_share", "mean"), hidden_share=("hidden_share", "mean"),
    ).reset_index()
    summary["defended"] = summary["pvalue"] < 0.05
    # the mean fitted coefficients, one dict per row
    summary["coefs"] = [coefs.loc[tuple(row)].dropna().to_dict()
                        for row in summary[keys].itertuples(index=False)]
    return summary


@register("am-defence")
def run(profile: str) -> dict:
    config, trials, results = run_profile(run_trial, trial_grid, PROFILES, profile,
                                          experiment="am-defence")
    return {"seed": config["seed"], "config": {**config, "trials": trials},
            "results": {"summary": summarise(trials, results).to_dict(orient="records"),
                        "trials": [{"params": p, **{k: r[k] for k in (
                            "missing_rate", "train_time_s", "valuation_time_s", "total_time_s",
                            "theta_alpha", "theta_true")}} for p, r in zip(trials, results)]}}
