"""AM paper, Section 5.1 / App. D.1-D.2: manipulating p-values (Tables 1, 5-9; Figures 5-7).

One *trial* is a (data set, attack) pair: BLAMM learns a neural mechanism that hides the target
feature (M = {target}, g = KL to θα), with the paper's Table 4 hyper-parameters; then 20 masks are
drawn from it and 20 from the MCAR mechanism with the same pattern probabilities, and every
modeler (mean, CCA, regression imputation, MICE) fits a GLM to each masked copy.  A trial records,
per mask, the target's coefficient and p-value, the normalised L1 distance to θα, and the
auditing-set score, plus BLAMM's training curve and learned missing rate.

The L1 distances leave the intercept out, as the paper's do: its Table 10 coefficients give
‖θ̂ − θα‖₁/‖θα‖₁ = 0.76 for ca-housing's MCAR mean/mean cell without the intercept (Table 1
prints 0.76) but 0.26 with it, and its Table 12 gives an unnormalised diabetes MCAR distance of
31 without (Table 7: 33.9 averaged over masks) against 42 with.

Every attack is trained by :func:`amlib.am.attack.train_attack` from the settings of
:data:`amlib.experiments.am_datasets.TABLE4` (which states how the paper's λs are converted).
The ``regression`` attack follows the paper: the CCA attack for the first 60% of the epochs, then
fine-tuning on the regression-imputation proxy with the learning rate divided by 100.

The paper profile also runs :data:`DIAGNOSTICS`: the ca-housing CCA attack again with two other
seeds, with twice and four times Table 4's epochs, and with the mechanism started near "fully
observed" (5% hidden) instead of PyTorch's initialisation (about half hidden); and the ca-housing
regression attack with four times Table 4's epochs.  They are not part
of the paper's tables; they test whether that cell's gap to the paper is the luck of one run, an
unconverged attack or the starting point (see :data:`KNOWN_DISAGREEMENTS`).  :func:`paper_values` reads the
paper's Tables 1, 5-9 and :func:`compare_cells` lines every (data set, modeler, attack,
mechanism) cell up with them.
"""
from __future__ import annotations

import time
from importlib import resources

import numpy as np
import pandas as pd

from .registry import register
from .am_datasets import AM_TARGETS, attack_trial, audit_score, train_on_split
from .trials import run_trials

__all__ = ["PROFILES", "DIAGNOSTICS", "CLAIMED_PAIRS",
           "KNOWN_DISAGREEMENTS", "trial_grid", "diagnostic_grid", "run_trial", "run", "summarise",
           "feature_table", "paper_values", "compare_cells", "claimed_cells", "missing_rates"]

#: ``epoch_scale`` multiplies Table 4's epochs; ``datasets``/``attacks`` restrict the grid.
PROFILES = {
    "paper": {"masks": 20, "epoch_scale": 1.0, "lr": 0.01, "seed": 0, "datasets": None,
              "attacks": None, "n_jobs": 2, "diagnostics": True},
    "quick": {"masks": 5, "epoch_scale": 1.0, "lr": 0.01, "seed": 0,
              "datasets": ["wine-quality", "german-credit", "diabetes"],
              "attacks": ["mean", "cca"], "n_jobs": 2, "diagnostics": False},
}

#: extra runs of the paper profile: (data set, attack, seed, epoch multiplier, modelers,
#: further trial parameters)
DIAGNOSTICS = [
    ("ca-housing", "cca", 1, 1.0, ("cca",), {}),
    ("ca-housing", "cca", 2, 1.0, ("cca",), {}),
    ("ca-housing", "cca", 0, 2.0, ("cca",), {}),
    ("ca-housing", "cca", 0, 4.0, ("cca", "regression", "mean"), {}),
    ("ca-housing", "cca", 0, 1.0, ("cca",), {"initial_missing_rate": 0.05}),
    ("ca-housing", "regression", 0, 4.0, ("cca", "regression", "mean"), {}),
]

#: (modeler, attack) pairs whose ticks in the paper the chapter checks in every data set:
#: each modeler against its own attack, and the mean modeler against the CCA attack.  Every
#: german-credit and diabetes cell is checked as well (see :func:`claimed_cells`).
CLAIMED_PAIRS = {("mean", "mean"), ("mean", "cca"), ("cca", "cca"), ("regression", "regression")}

#: Cells (data set, modeler, attack, mechanism) where our mean p-value falls on the other side
#: of 0.05 from the paper's Table 8, with the reason.  tests/test_am_pvalues_results.py checks
#: that this list is exactly the set of disagreeing cells of the committed paper results.
KNOWN_DISAGREEMENTS = {
    ("ca-housing", "cca", "cca", "BLAMM"):
        "paper 0.099 (borderline); ours below 0.05. At Table 4's 600 epochs the attack has not "
        "converged: the CCA proxy is blind to the overall missing rate, so the attack first "
        "hides over 90% of MedInc and the penalty then pulls the rate back over hundreds of "
        "epochs. Two other seeds also stay below 0.05 at 600 epochs; the same run continued to "
        "2,400 epochs crosses 0.05, and a start near fully observed fails (DIAGNOSTICS).",
    ("ca-housing", "cca", "regression", "BLAMM"):
        "paper 0.785; ours below 0.05. The regression attack is the CCA attack plus fine-tuning at "
        "lr/100, and for the CCA modeler it does not do better than the CCA attack it starts from, "
        "at Table 4's epochs or at four times as many (DIAGNOSTICS); the paper's value lies far "
        "above its own matched CCA cell (0.099).",
    ("ca-housing", "mean", "regression", "BLAMM"):
        "paper 0.093 (borderline); ours below 0.05. The attack tuned for regression imputation "
        "does not transfer to mean imputation in our run; at four times Table 4's epochs its mean "
        "p-value rises by orders of magnitude but stays below 0.05 (DIAGNOSTICS).",
    ("ca-housing", "regression", "cca", "BLAMM"):
        "paper 4e-4; ours just above 0.05. Our regression imputation of the one masked feature "
        "from the other features gives the target exactly the complete-case coefficient with a "
        "larger standard error, so its p-value exceeds the CCA modeler's on the same masks: "
        "the paper's pair (CCA 0.099, regression 4e-4) cannot both be matched.",
}


def _trial(dataset: str, attack: str, modelers, profile: dict, *, seed: int,
           epoch_scale: float, **extra) -> dict:
    return {**attack_trial(dataset, attack, epoch_scale), "modelers": list(modelers),
            "lr": profile["lr"], "masks": profile["masks"], "seed": seed, **extra}


def trial_grid(profile: dict) -> list[dict]:
    """The (data set, attack) trials of a profile, with everything a trial needs to run."""
    return [_trial(name, attack, spec.modelers, profile, seed=profile["seed"],
                   epoch_scale=profile["epoch_scale"])
            for name, spec in AM_TARGETS.items()
            if profile["datasets"] is None or name in profile["datasets"]
            for attack in spec.attacks
            if profile["attacks"] is None or attack in profile["attacks"]]


def diagnostic_grid(profile: dict) -> list[dict]:
    """The :data:`DIAGNOSTICS` trials (empty unless the profile asks for them)."""
    if not profile.get("diagnostics"):
        return []
    return [_trial(dataset, attack, modelers, profile, seed=seed, epoch_scale=scale, **extra)
            for dataset, attack, seed, scale, modelers, extra in DIAGNOSTICS]


def run_trial(params: dict) -> dict:
    """Train one attack and evaluate every modeler on its masks and on MCAR masks (see module doc)."""
    from ..am.modelers import fit_modeler, mice_backend

    start = time.perf_counter()
    data, _, run = train_on_split(params)
    attack = run.blamm
    thetas = attack.theta_frame()
    theta_alpha = thetas["theta_alpha"]
    alpha_norm = float(np.abs(theta_alpha.drop("const")).sum())
    history = run.history()[["loss", "g", "omega", "missing_rate"]].astype(float)
    train_time = time.perf_counter() - start
    X_audit, y_audit = data.X("audit"), data.y("audit")
    rows = []
    for mechanism in ("blamm", "mcar"):
        masks = attack.sample_masks(params["masks"], seed=params["seed"] + 1, mechanism=mechanism)
        for mask_index, masked in enumerate(masks):
            hidden = float(masked[params["target"]].isna().mean())
            for modeler in params["modelers"]:
                fit = fit_modeler(masked, modeler, params["family"], response=data.target,
                                  seed=params["seed"] + mask_index)
                theta_hat = fit.params.reindex(theta_alpha.index)
                l1 = float(np.abs(theta_hat - theta_alpha).drop("const").sum())
                rows.append({
                    "mechanism": mechanism.upper(),
                    "mask": mask_index, "modeler": modeler, "hidden_share": hidden,
                    "coef": float(fit.params[params["target"]]),
                    "pvalue": float(fit.pvalues[params["target"]]),
                    "l1": l1, "l1_normalised": l1 / alpha_norm,
                    "audit_score": audit_score(fit, X_audit, y_audit, params["family"]),
                    "params": fit.params.to_dict(), "pvalues": fit.pvalues.to_dict(),
                })
    return {"missing_rate": attack.missing_rate(), "train_time_s": train_time,
            "total_time_s": time.perf_counter() - start, "mice_backend": mice_backend(),
            "history": history.to_dict(orient="list"), "masks": rows,
            "theta_alpha": theta_alpha.to_dict(), "theta_tilde": thetas["theta_tilde"].to_dict()}


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
        pvalue_sd=("pvalue", "std"), coef=("coef", "mean"), audit_score=("audit_score", "mean"),
        audit_score_sd=("audit_score", "std"), audit_score_median=("audit_score", "median"),
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


def paper_values() -> pd.DataFrame:
    """The paper's Tables 1, 5, 6, 7, 8 and 9 (``paper_values/am_pvalues.csv``; attack and
    modeler ``linear`` renamed ``regression``; ``check`` = 1 where the paper prints a tick)."""
    with resources.files(__package__).joinpath("paper_values/am_pvalues.csv").open() as handle:
        return pd.read_csv(handle, comment="#")


def compare_cells(summary: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per cell of the paper's Table 8: its mean p-value and ours, ✓ on each side
    (mean p > 0.05) and whether they agree.  Cells we did not run are dropped."""
    paper = paper_values() if paper is None else paper
    p8 = paper[paper["table"] == "AM-8"][["dataset", "modeler", "attack", "mechanism", "value"]]
    p8 = p8.rename(columns={"value": "pvalue_paper"})
    ours = summary[["dataset", "modeler", "attack", "mechanism", "pvalue"]].rename(
        columns={"pvalue": "pvalue_ours"})
    cells = p8.merge(ours, on=["dataset", "modeler", "attack", "mechanism"], how="inner")
    cells["check_paper"] = cells["pvalue_paper"] > 0.05
    cells["check_ours"] = cells["pvalue_ours"] > 0.05
    cells["agree"] = cells["check_paper"] == cells["check_ours"]
    return cells.reset_index(drop=True)


def claimed_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """The BLAMM cells of :func:`compare_cells` that the paper ticks and the chapter asserts:
    a pair in :data:`CLAIMED_PAIRS`, or any german-credit or diabetes cell."""
    pair = pd.Series(list(zip(cells["modeler"], cells["attack"])), index=cells.index)
    chosen = pair.isin(CLAIMED_PAIRS) | cells["dataset"].isin(["german-credit", "diabetes"])
    return cells[(cells["mechanism"] == "BLAMM") & cells["check_paper"] & chosen]


def missing_rates(trials: list[dict], results: list[dict]) -> pd.DataFrame:
    """Table 5: the learned mechanism's expected missing rate of the target, ours and the paper's."""
    ours = pd.DataFrame([{"dataset": p["dataset"], "attack": p["attack"],
                          "ours_percent": 100 * r["missing_rate"]}
                         for p, r in zip(trials, results)])
    paper = paper_values()
    paper = paper[paper["table"] == "AM-5"][["dataset", "attack", "value"]].rename(
        columns={"value": "paper_percent"})
    return ours.merge(paper, on=["dataset", "attack"], how="left")


def _trial_record(params: dict, result: dict) -> dict:
    return {"params": params, **{k: result[k] for k in
            ("missing_rate", "train_time_s", "total_time_s", "mice_backend", "history",
             "theta_alpha", "theta_tilde")}}


@register("am-pvalues")
def run(profile: str) -> dict:
    config = PROFILES[profile]
    trials = trial_grid(config)
    extra = diagnostic_grid(config)
    results = run_trials(run_trial, trials + extra, experiment=f"am-pvalues-{profile}",
                         n_jobs=config["n_jobs"])
    main, diagnostic = results[:len(trials)], results[len(trials):]
    summary = summarise(trials, main)
    out = {"summary": summary.to_dict(orient="records"),
           "features": {name: feature_table(trials, main, name).to_dict(orient="records")
                        for name in {t["dataset"] for t in trials}},
           "trials": [_trial_record(p, r) for p, r in zip(trials, main)]}
    if extra:
        # one summary per run: the diagnostic runs share data set, attack and modeler
        rows = pd.concat([summarise([p], [r]).assign(
                              seed=p["seed"], epochs=p["epochs"],
                              initial_missing_rate=p.get("initial_missing_rate"))
                          for p, r in zip(extra, diagnostic)], ignore_index=True)
        out["diagnostics"] = {
            "summary": rows.to_dict(orient="records"),
            "trials": [_trial_record(p, r) for p, r in zip(extra, diagnostic)]}
    return {"seed": config["seed"], "config": {**config, "trials": trials, "diagnostic_trials": extra},
            "results": out}
