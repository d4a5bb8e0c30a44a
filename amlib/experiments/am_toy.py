"""AM paper, Figure 2: BLAMM on a two-dimensional logistic regression, over several seeds.

A mean-imputing modeler fits ``label ~ x + y``; the adversary may hide only ``x`` and wants the
fitted coefficient of ``x`` to vanish (θα: the constrained MLE with θ_x = 0, eq. 22).  One trial
is one seed: a fresh data set of 400 rows, a BLAMM attack (neural mechanism, λ = 0.1, Adam
lr 0.01), then ``masks`` masked copies from the learned mechanism and from MCAR at the same
rate, each fitted by the modeler.  Chapter 5 runs seed 0 live and draws the boundaries; this
experiment says how typical that seed is.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .registry import register
from .trials import run_profile

__all__ = ["PROFILES", "TRUE_COEF", "PAPER_FIGURE2", "toy_data", "toy_accuracy", "trial_grid",
           "run_trial", "run"]

#: the toy's true logit: 0.8·x + 2.5·y (the boundary is already close to horizontal)
TRUE_COEF = {"x": 0.8, "y": 2.5}
#: what the paper reports for its Figure 2 run: share of x hidden (%), the mean p-value of x
#: after the attack, and the change in accuracy (points)
PAPER_FIGURE2 = {"hidden_percent": 8.4, "pvalue": 0.688, "accuracy_change_points": -0.4}
PROFILES = {
    "paper": {"seeds": [0, 1, 2, 3, 4], "rows": 400, "test_rows": 20_000, "masks": 20,
              "epochs": 300, "lam_upper": 0.1, "lr": 0.01, "n_jobs": 2},
    "quick": {"seeds": [0], "rows": 400, "test_rows": 20_000, "masks": 10,
              "epochs": 300, "lam_upper": 0.1, "lr": 0.01, "n_jobs": 1},
}


def toy_data(n: int, seed: int) -> pd.DataFrame:
    """``n`` rows of x, y ~ N(0, 1) and a Bernoulli label with logit 0.8·x + 2.5·y."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    eta = TRUE_COEF["x"] * X[:, 0] + TRUE_COEF["y"] * X[:, 1]
    label = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"x": X[:, 0], "y": X[:, 1], "label": label})


def toy_accuracy(results, data: pd.DataFrame) -> float:
    """Accuracy on ``data`` of a fitted statsmodels logistic GLM with columns const, x, y."""
    prob = results.predict(np.column_stack([np.ones(len(data)), data[["x", "y"]]]))
    return float(np.mean((prob > 0.5) == (data["label"] > 0.5)))


def run_trial(params: dict) -> dict:
    """One seed: attack, then the modeler on BLAMM's and MCAR's masks (JSON-serialisable)."""
    import tempfile

    from ..am.blamm import BLAMM
    from ..am.modelers import fit_modeler

    seed = params["seed"]
    frame, test = toy_data(params["rows"], seed), toy_data(params["test_rows"], seed + 1)
    clean = fit_modeler(frame, "mean", "bernoulli", response="label")
    clean_acc = toy_accuracy(clean, test)
    with tempfile.TemporaryDirectory(prefix="am-toy-") as log_dir:
        attack = BLAMM(frame, "label", ["x"], "bernoulli", "mean", lam_upper=params["lam_upper"],
                       lr=params["lr"], epochs=params["epochs"], seed=seed,
                       log_dir=log_dir).fit()
    out = {"seed": seed, "missing_rate": float(attack.missing_rate()),
           "clean_pvalue": float(clean.pvalues["x"]), "clean_accuracy": clean_acc}
    for mechanism in ("blamm", "mcar"):
        frames = attack.sample_masks(params["masks"], seed=seed + 1, mechanism=mechanism)
        fits = [fit_modeler(f, "mean", "bernoulli", response="label") for f in frames]
        out[f"{mechanism}_pvalue"] = float(np.mean([r.pvalues["x"] for r in fits]))
        out[f"{mechanism}_coef"] = float(np.mean([r.params["x"] for r in fits]))
        out[f"{mechanism}_accuracy_change"] = float(
            np.mean([toy_accuracy(r, test) for r in fits]) - clean_acc)
    return out


def trial_grid(profile: dict) -> list[dict]:
    """One trial per seed of the profile."""
    keys = ("rows", "test_rows", "masks", "epochs", "lam_upper", "lr")
    return [{"seed": s, **{k: profile[k] for k in keys}} for s in profile["seeds"]]


@register("am-toy")
def run(profile: str) -> dict:
    config, _, results = run_profile(run_trial, trial_grid, PROFILES, profile, experiment="am-toy")
    return {"seed": config["seeds"][0], "config": config, "results": results}
