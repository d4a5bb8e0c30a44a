"""The regression ("S-learner") ATE estimator with a logistic outcome model (paper App. D.3).

The modeler of section 5.2 fits one logistic regression of Y on the covariates and the treatment,
``logit P(Y=1 | x, w) = b0 + x'b + g w`` (W is "an additional covariate", Imbens 2004), with
scikit-learn's ``LogisticRegression`` under the paper's settings: lbfgs, ``max_iter=600`` and no
penalty (``penalty='none'`` in the paper; scikit-learn >= 1.8 spells it ``C=np.inf``).  The
estimate is the plug-in average over the rows given,

    tau_hat = mean_i [ p(x_i, 1) - p(x_i, 0) ],

which is the paper's tau_hat = mean(mu_1(x) - mu_0(x)) for this model.  When lbfgs stops at
``max_iter`` without meeting its tolerance, scikit-learn's ConvergenceWarning is silenced (the
paper's setting is kept as is) and logged at DEBUG level by ``amlib.am.causal``.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

__all__ = ["DEFAULTS", "linear_ate"]

_LOG = logging.getLogger("amlib.am.causal")
DEFAULTS = {"max_iter": 600}


def linear_ate(X: np.ndarray, w: np.ndarray, y: np.ndarray, *, seed: int = 0,
               max_iter: int = 600) -> float:
    """tau_hat of a logistic regression of y on [X, w] (checked inputs, no NaN)."""
    model = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(np.column_stack([X, w]), y)
    for item in caught:
        if issubclass(item.category, ConvergenceWarning):
            _LOG.debug("linear: %s", item.message)
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    ones, zeros = np.ones(len(X)), np.zeros(len(X))
    p1 = model.predict_proba(np.column_stack([X, ones]))[:, 1]
    p0 = model.predict_proba(np.column_stack([X, zeros]))[:, 1]
    return float(np.mean(p1 - p0))
