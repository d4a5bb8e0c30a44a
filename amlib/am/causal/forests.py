"""Forest ATE estimators: a causal forest after imputation, and two forests that split on missingness.

``"cf"`` — econml's :class:`~econml.dml.CausalForestDML` (Wager & Athey 2018; Athey, Tibshirani &
Wager 2019, the GRF construction econml re-implements).  It stands in for R ``grf::causal_forest``
with its defaults, which the paper used (App. D.3) and which Debian does not ship.  Like grf it
first residualises Y and W on X with cross-fitted (``cv=2``) nuisance forests, then grows an honest
causal forest on the residuals:

- nuisance E[Y | x]: ``RandomForestRegressor`` (a regression forest on the 0/1 outcome estimates
  P(Y=1 | x), as grf's ``Y.hat`` does); nuisance P(W=1 | x): ``RandomForestClassifier``
  (``discrete_treatment=True``).  Both: ``n_nuisance = 50`` trees, ``min_samples_leaf=5``
  (grf's ``min.node.size``), ``max_samples=0.5`` (grf's ``sample.fraction``), grf's
  ``mtry = min(ceil(sqrt(d) + 20), d)`` candidate features per split;
- final forest: ``n_estimators = 100`` honest trees, the same ``mtry`` (econml defaults
  otherwise: ``max_samples=0.45``, ``min_samples_leaf=5``), ``random_state=seed``.  grf's
  defaults grow 2,000 trees; the ATE averages the CATE over all rows, so the Monte-Carlo noise of
  fewer trees mostly averages out, and 100 keeps a Twins-sized fit to a few seconds;
- tau_hat = ``est.ate(X)``, the mean of the forest's CATE over the rows given.

econml's forests reject NaN, so ``"cf"`` takes imputed covariates.

``"cf-mia"`` — the missing-incorporated-in-attributes criterion (Twala, Jones & Hand 2008): a
split sends the rows with a NaN in its feature to whichever child lowers the impurity more, so
"missing" acts as information.  scikit-learn >= 1.4 random forests split this way natively.
The estimator is a **T-learner of two scikit-learn ``RandomForestRegressor``s** (squared error on
0/1, i.e. the Gini split for a binary outcome), one per arm, fitted on X with its NaNs:
``n_estimators = 100`` trees, ``min_samples_leaf=5``, bootstrap samples of half the arm
(``max_samples=0.5``), grf's ``mtry`` candidate features per split.  mu_w(x_i) is the
out-of-bag prediction for the rows of arm w (as grf predicts on its training rows) and the
ordinary prediction for the others; tau_hat = mean_i (mu_1(x_i) - mu_0(x_i)) over all rows.  (grf's causal forest also splits with
MIA; a GRF-style causal forest that accepts NaN is not available to us, hence the T-learner.)

``"dr-mia"`` — augmented inverse-propensity weighting with MIA nuisance models, after Mayer,
Sverdrup, Gauss, Moyer, Wager & Josse (2020), who use grf's MIA forests: with ``folds``-fold
cross-fitting (stratified by W, shuffled with ``seed``; default 2), on each held-out fold the
outcome forests mu_0, mu_1 (as in ``"cf-mia"``, fitted on the other folds' rows of each arm) and
a ``RandomForestClassifier`` propensity e(x) (same settings, NaN-aware) give

    psi_i = mu_1(x_i) - mu_0(x_i) + w_i (y_i - mu_1(x_i)) / e(x_i)
            - (1 - w_i) (y_i - mu_0(x_i)) / (1 - e(x_i)),      tau_hat = mean_i psi_i,

with e clipped to [``clip``, 1 - ``clip``] = [0.01, 0.99] by default.  Mayer et al. show this is
consistent under "unconfoundedness despite missingness" (W independent of the potential outcomes
given the observed covariates and the mask).
"""
from __future__ import annotations

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.model_selection import StratifiedKFold

from ._checks import CausalInputError

__all__ = ["CF_DEFAULTS", "MIA_DEFAULTS", "DR_DEFAULTS", "causal_forest_ate", "mia_tlearner_ate",
           "dr_mia_ate"]

CF_DEFAULTS = {"n_estimators": 100, "n_nuisance": 50, "min_samples_leaf": 5, "n_jobs": 1}
MIA_DEFAULTS = {"n_estimators": 100, "min_samples_leaf": 5, "max_samples": 0.5, "n_jobs": 1}
DR_DEFAULTS = {**MIA_DEFAULTS, "folds": 2, "clip": 0.01}


def grf_mtry(d: int) -> int:
    """grf's default number of candidate features per split, min(ceil(sqrt(d) + 20), d)."""
    return int(min(np.ceil(np.sqrt(d) + 20), d))


def _forest(kind, seed, n_estimators, min_samples_leaf, max_samples, n_jobs, mtry, oob=False):
    cls = RandomForestRegressor if kind == "regressor" else RandomForestClassifier
    return cls(n_estimators=n_estimators, min_samples_leaf=min_samples_leaf, max_features=mtry,
               bootstrap=True, max_samples=max_samples, oob_score=oob, random_state=seed,
               n_jobs=n_jobs)


def causal_forest_ate(X, w, y, *, seed=0, n_estimators=100, n_nuisance=50, min_samples_leaf=5,
                      n_jobs=1) -> float:
    """tau_hat of econml's CausalForestDML (imputed X; see the module docstring)."""
    from econml.dml import CausalForestDML

    n_estimators = max(4, 4 * round(n_estimators / 4))  # econml grows trees in subforests of 4
    mtry = grf_mtry(X.shape[1])
    est = CausalForestDML(
        model_y=_forest("regressor", seed, n_nuisance, min_samples_leaf, 0.5, n_jobs, mtry),
        model_t=_forest("classifier", seed, n_nuisance, min_samples_leaf, 0.5, n_jobs, mtry),
        discrete_treatment=True, cv=2, n_estimators=n_estimators,
        min_samples_leaf=min_samples_leaf, max_features=mtry, inference=False,
        random_state=seed, n_jobs=n_jobs)
    est.fit(y, w.astype(int), X=X)
    return float(np.asarray(est.ate(X)).ravel()[0])


def _arm_predictions(X_fit, w_fit, y_fit, X_pred, seed, opts, oob=False):
    """mu_0 and mu_1 on X_pred from one NaN-aware regression forest per arm.

    With ``oob`` (X_pred is X_fit), rows of arm w get arm w's out-of-bag prediction.
    """
    mus = []
    for arm in (0, 1):
        rows = w_fit == arm
        forest = _forest("regressor", seed + arm, opts["n_estimators"], opts["min_samples_leaf"],
                         opts["max_samples"], opts["n_jobs"], grf_mtry(X_fit.shape[1]),
                         oob=oob)
        forest.fit(X_fit[rows], y_fit[rows])
        mu = forest.predict(X_pred)
        if oob:
            out_of_bag = np.asarray(forest.oob_prediction_).ravel()
            ok = ~np.isnan(out_of_bag)  # a row in every bootstrap sample has no OOB trees (rare)
            idx = np.flatnonzero(rows)
            mu[idx[ok]] = out_of_bag[ok]
        mus.append(mu)
    return mus


def mia_tlearner_ate(X, w, y, *, seed=0, **options) -> float:
    """tau_hat of the MIA random-forest T-learner (X may hold NaN; see the module docstring)."""
    opts = {**MIA_DEFAULTS, **options}
    mu0, mu1 = _arm_predictions(X, w, y, X, seed, opts, oob=True)
    return float(np.mean(mu1 - mu0))


def dr_mia_ate(X, w, y, *, seed=0, **options) -> float:
    """tau_hat of cross-fitted AIPW with MIA forests (X may hold NaN; see the module docstring)."""
    opts = {**DR_DEFAULTS, **options}
    clip = float(opts["clip"])
    if not 0.0 <= clip < 0.5:
        raise CausalInputError(f"clip must lie in [0, 0.5); got {clip}")
    psi = np.empty(len(y))
    splitter = StratifiedKFold(n_splits=int(opts["folds"]), shuffle=True, random_state=seed)
    for k, (train, test) in enumerate(splitter.split(X, w)):
        mu0, mu1 = _arm_predictions(X[train], w[train], y[train], X[test], seed + 10 * k, opts)
        prop = _forest("classifier", seed + 10 * k + 2, opts["n_estimators"],
                       opts["min_samples_leaf"], opts["max_samples"], opts["n_jobs"],
                       grf_mtry(X.shape[1]))
        prop.fit(X[train], w[train].astype(int))
        e = np.clip(prop.predict_proba(X[test])[:, 1], clip, 1.0 - clip)
        wt, yt = w[test], y[test]
        psi[test] = (mu1 - mu0 + wt * (yt - mu1) / e - (1.0 - wt) * (yt - mu0) / (1.0 - e))
    return float(np.mean(psi))
