"""AM paper, Table 3: the four data sets, their target coefficients and the adversary's θα.

For each data set the complete-data GLM θp is fitted with statsmodels on the adversary's
training split, and the adversarial target θα is the constrained MLE with the target
coefficient fixed at zero (paper eq. 22), which for a GLM is the fit without the target column.
Both are scored on the auditing split (NMSE for regression, accuracy for classification).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np
import pandas as pd
import statsmodels.api as sm

from . import register
from ..data import load

__all__ = ["AMTarget", "AM_TARGETS", "fit_glm", "audit_score", "table3_row", "table3",
           "paper_table3"]


@dataclass(frozen=True)
class AMTarget:
    """A data set of the p-value experiments with its adversarial target feature."""

    dataset: str
    target_feature: str
    family: str  # "gaussian" or "binomial"


AM_TARGETS = [AMTarget("ca-housing", "MedInc", "gaussian"),
              AMTarget("wine-quality", "alcohol", "binomial"),
              AMTarget("diabetes", "sex", "gaussian"),
              AMTarget("german-credit", "installment_rate", "binomial")]

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


def table3(seeds) -> pd.DataFrame:
    """One row per data set and split seed."""
    return pd.DataFrame([table3_row(spec, seed) for spec in AM_TARGETS for seed in seeds])


def paper_table3() -> pd.DataFrame:
    """The paper's own Table 3 values, copied into ``paper_values/am_table3.csv``."""
    with resources.files(__package__).joinpath("paper_values/am_table3.csv").open() as handle:
        return pd.read_csv(handle)


# Fitting Table 3 takes seconds, so both profiles fit the same 20 random splits.
CONFIG = {"quick": {"seeds": list(range(20))}, "paper": {"seeds": list(range(20))}}


@register("am-table3")
def run(profile: str) -> dict:
    config = CONFIG[profile]
    rows = table3(config["seeds"])
    return {"seed": config["seeds"][0], "config": {**config, "targets": [asdict(t) for t in AM_TARGETS]},
            "results": rows.to_dict(orient="records")}
