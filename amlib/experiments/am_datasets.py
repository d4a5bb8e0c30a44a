"""AM paper, Table 3: the four data sets, their target coefficients and the adversary's θα.

This module also holds the one table of the AM experiments: :data:`AM_TARGETS` (data set →
target feature, GLM family, the attacks it is attacked with and the modelers that fit it) and
:data:`TABLE4` (the paper's Table 4 hyper-parameters per attack), which the p-value, detection
and defence experiments read through :func:`attack_trial` and :func:`train_on_split`.

For each data set the complete-data GLM θp is fitted with statsmodels on the adversary's
training split, and the adversarial target θα is the constrained MLE with the target
coefficient fixed at zero (paper eq. 22), which for a GLM is the fit without the target column.
Both are scored on the auditing split (NMSE for regression, accuracy for classification).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd
import statsmodels.api as sm

from .registry import register
from .trials import run_trials
from ..am.attack import ATTACKS, AttackRun, train_attack
from ..data import load

__all__ = ["AMTarget", "AM_TARGETS", "TABLE4", "attack_trial", "train_on_split", "fit_glm",
           "audit_score", "table3_row", "table3", "table3_targets", "paper_table3"]

MODELERS = ("mean", "cca", "regression", "mice")


@dataclass(frozen=True)
class AMTarget:
    """A data set of the p-value experiments with its adversarial target feature, the attacks
    it is attacked with and the modelers that fit it (the paper's Tables 1, 3 and 5-9)."""

    dataset: str
    target_feature: str
    family: str  # "gaussian" or "binomial"
    attacks: tuple[str, ...] = ATTACKS
    modelers: tuple[str, ...] = MODELERS


#: data set -> its target, in the order of the paper's Tables 1 and 5-9
AM_TARGETS = {spec.dataset: spec for spec in [
    AMTarget("ca-housing", "MedInc", "gaussian"),
    AMTarget("wine-quality", "alcohol", "binomial"),
    AMTarget("german-credit", "installment_rate", "binomial"),
    # sex is binary: only complete-case analysis and MICE make sense for it (paper, Table 7)
    AMTarget("diabetes", "sex", "gaussian", attacks=("cca",), modelers=("cca", "mice")),
]}

#: the paper's Table 4: (epochs, λ upper, λ lower) per (data set, attack); lr 0.01 throughout.
#: The λs are in the paper's units; :func:`amlib.am.attack.train_attack` converts them.
TABLE4 = {
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


def attack_trial(dataset: str, attack: str, epoch_scale: float = 1.0) -> dict:
    """The target, family and Table 4 settings of one (data set, attack), as trial parameters
    (``epochs`` multiplied by ``epoch_scale`` and rounded up)."""
    if (dataset, attack) not in TABLE4:
        raise KeyError(f"the paper runs no {attack!r} attack on {dataset!r}; choose one of "
                       f"{sorted(TABLE4)}")
    spec = AM_TARGETS[dataset]
    epochs, lam_upper, lam_lower = TABLE4[(dataset, attack)]
    return {"dataset": dataset, "target": spec.target_feature, "family": spec.family,
            "attack": attack, "epochs": max(1, math.ceil(epochs * epoch_scale)),
            "lam_upper": lam_upper, "lam_lower": lam_lower}


def train_on_split(params: dict):
    """Load the split ``params["seed"]`` of ``params["dataset"]`` and train the attack of
    ``params`` (keys of :func:`attack_trial` plus ``lr`` and ``seed``, and optionally
    ``initial_missing_rate``) on its training part.

    Returns ``(data, frame, run)``: the :class:`~amlib.data.TabularDataset`, the attacker's
    table (features, then the response) and the :class:`~amlib.am.attack.AttackRun`.
    """
    data = load(params["dataset"], seed=params["seed"])
    frame = data.part("train")[data.features + [data.target]].reset_index(drop=True)
    run: AttackRun = train_attack(frame, params["target"], params["family"], params["attack"],
                                  epochs=params["epochs"], lam_upper=params["lam_upper"],
                                  lam_lower=params["lam_lower"], lr=params["lr"],
                                  seed=params["seed"],
                                  initial_missing_rate=params.get("initial_missing_rate"))
    return data, frame, run

_FAMILIES = {"gaussian": sm.families.Gaussian, "binomial": sm.families.Binomial}


def fit_glm(X: pd.DataFrame, y: pd.Series, family: str):
    """statsmodels GLM with an intercept (IRLS from its defaults)."""
    if family not in _FAMILIES:
        raise ValueError(f"unknown family {family!r}; use one of {sorted(_FAMILIES)}")
    return sm.GLM(y, sm.add_constant(X, has_constant="add"), family=_FAMILIES[family]()).fit()


def audit_score(result, X: pd.DataFrame, y: pd.Series, family: str) -> float:
    """NMSE = mean squared error / variance of y (Gaussian) or accuracy at 0.5 (binomial)."""
    predicted = result.predict(sm.add_constant(X, has_constant="add"))
    if family == "gaussian":
        return float(np.mean((y - predicted) ** 2) / np.var(y))
    return float(np.mean((predicted > 0.5) == (y > 0.5)))


def table3_row(spec: AMTarget, seed: int = 0) -> dict:
    """θp's target coefficient and p-value, θα, and both audit scores for one data set/split."""
    data = load(spec.dataset, seed=seed)
    if spec.target_feature not in data.features:
        raise KeyError(f"{spec.target_feature!r} is not a feature of {spec.dataset}")
    X_train, y_train = data.X("train"), data.y("train")
    X_audit, y_audit = data.X("audit"), data.y("audit")
    theta_p = fit_glm(X_train, y_train, spec.family)
    others = [c for c in data.features if c != spec.target_feature]
    theta_alpha = fit_glm(X_train[others], y_train, spec.family)
    return {
        "dataset": spec.dataset, "target": spec.target_feature, "seed": seed,
        "n_train": len(y_train), "n_audit": len(y_audit), "n_features": len(data.features),
        "metric": "NMSE" if spec.family == "gaussian" else "ACC",
        "coef": float(theta_p.params[spec.target_feature]),
        "pvalue": float(theta_p.pvalues[spec.target_feature]),
        "score_theta_p": audit_score(theta_p, X_audit, y_audit, spec.family),
        "score_theta_alpha": audit_score(theta_alpha, X_audit[others], y_audit, spec.family),
    }


def table3_targets() -> list[AMTarget]:
    """The targets in the row order of the paper's Table 3."""
    return [AM_TARGETS[name] for name in paper_table3()["dataset"]]


def _table3_trial(params: dict) -> dict:
    """One cached trial of :func:`table3`: the row of ``params["dataset"]`` on split
    ``params["seed"]``."""
    return table3_row(AM_TARGETS[params["dataset"]], params["seed"])


def table3(seeds, *, cache: bool = False, experiment: str = "am-table3",
           progress: bool | None = None) -> pd.DataFrame:
    """One row per data set (in Table 3's order) and split seed.

    The rows are fitted through :func:`~amlib.experiments.trials.run_trials`: one progress bar
    (only when stderr is a terminal) and, with ``cache=True``, one cached trial per (data set,
    seed), so an interrupted ``amlib reproduce am-table3`` resumes.
    """
    trials = [{"dataset": spec.dataset, "seed": int(seed)}
              for spec in table3_targets() for seed in seeds]
    rows = run_trials(_table3_trial, trials, experiment=experiment, cache=cache,
                      progress=progress)
    return pd.DataFrame(rows)


def paper_table3() -> pd.DataFrame:
    """The paper's own Table 3 values, copied into ``paper_values/am_table3.csv``."""
    with resources.files(__package__).joinpath("paper_values/am_table3.csv").open() as handle:
        return pd.read_csv(handle)


# Fitting Table 3 takes seconds, so both profiles fit the same 20 random splits.
CONFIG = {"quick": {"seeds": list(range(20))}, "paper": {"seeds": list(range(20))}}


@register("am-table3")
def run(profile: str) -> dict:
    config = CONFIG[profile]
    rows = table3(config["seeds"], cache=True, experiment=f"am-table3-{profile}")
    targets = [{"dataset": t.dataset, "target_feature": t.target_feature, "family": t.family}
               for t in table3_targets()]
    return {"seed": config["seeds"][0], "config": {**config, "targets": targets},
            "results": rows.to_dict(orient="records")}
