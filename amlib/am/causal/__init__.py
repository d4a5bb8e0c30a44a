"""ATE estimators (the victims of chapter 7): tau_hat = mean_i (mu_1(x_i) - mu_0(x_i)).

Public API
----------
- ``ESTIMATORS = ("linear", "tnet", "tarnet", "cf", "cf-mia", "dr-mia")``;
- :func:`estimate_ate(name, X, w, y, seed=0, **options)` returns tau_hat as a fraction;
- :func:`estimate_ate_many(name, datasets, seeds, **options)` returns one tau_hat per
  ``(X, w, y)`` in ``datasets`` (row counts may differ).  ``"tnet"`` and ``"tarnet"`` train all
  members as one batched network (stacked weights, one optimiser, per-member early stopping) and
  give the same numbers as separate calls with the same seeds; the others loop.

Estimators (each module's docstring says exactly what it fits):

=========== ======================================================== ===========================
name        model                                                    module
=========== ======================================================== ===========================
``linear``  logistic regression of Y on [X, W] (lbfgs, 600 it., none) :mod:`.linear`
``tnet``    T-Net (Curth & van der Schaar 2021), CATENets' Twins set  :mod:`.nets`
``tarnet``  TARNet (Shalit et al. 2017), CATENets' Twins set          :mod:`.nets`
``cf``      econml ``CausalForestDML`` (GRF; Wager & Athey 2018)      :mod:`.forests`
``cf-mia``  T-learner of NaN-aware (MIA) random forests               :mod:`.forests`
``dr-mia``  cross-fitted AIPW with MIA forests (Mayer et al. 2020)    :mod:`.forests`
=========== ======================================================== ===========================

References (book/references.bib): ``imbens2004nonparametric``, ``shalit2017tarnet``,
``curth2021catenets``, ``curth2021inductive``, ``wager2018estimation``, ``athey2019grf``,
``chernozhukov2018dml``, ``econml``, ``twala2008mia``, ``mayer2020doubly``; the paper's set-up is
``koyuncu2024am`` section 5.2 and App. D.3.

X is a float array (n, d) without NaN, except for ``"cf-mia"`` and ``"dr-mia"``, which take NaN
(missing-incorporated-in-attributes); w and y are 0/1 vectors.  Bad input raises
:class:`CausalInputError` (a ``ValueError``) naming the problem and the fix; so does an unknown
option.  ``options`` per estimator: ``linear``: ``max_iter``; nets: see
:data:`amlib.am.causal.nets.DEFAULTS`; ``cf``: ``n_estimators, n_nuisance, min_samples_leaf,
n_jobs``; ``cf-mia``: ``n_estimators, min_samples_leaf, max_samples, n_jobs``; ``dr-mia``: those
and ``folds, clip``.
"""
from __future__ import annotations

from collections.abc import Sequence

from ._checks import CausalInputError, check_data, check_options
from .forests import (CF_DEFAULTS, DR_DEFAULTS, MIA_DEFAULTS, causal_forest_ate, dr_mia_ate,
                      mia_tlearner_ate)
from .linear import DEFAULTS as LINEAR_DEFAULTS
from .linear import linear_ate

__all__ = ["ESTIMATORS", "NAN_AWARE", "CausalInputError", "estimate_ate", "estimate_ate_many"]

ESTIMATORS = ("linear", "tnet", "tarnet", "cf", "cf-mia", "dr-mia")
NAN_AWARE = ("cf-mia", "dr-mia")
_NETS = ("tnet", "tarnet")


def _defaults(name: str) -> dict:
    if name in _NETS:
        from .nets import DEFAULTS
        return DEFAULTS
    return {"linear": LINEAR_DEFAULTS, "cf": CF_DEFAULTS, "cf-mia": MIA_DEFAULTS,
            "dr-mia": DR_DEFAULTS}[name]


def _check_name(name) -> str:
    if name not in ESTIMATORS:
        raise CausalInputError(f"unknown estimator {name!r}; choose one of {ESTIMATORS}")
    return name


def _min_per_arm(name: str) -> int:
    # nets: a 30% validation split of each arm needs a few rows; DR: each fold needs both arms
    return {"tnet": 4, "tarnet": 4, "dr-mia": 4}.get(name, 2)


def estimate_ate(name: str, X, w, y, *, seed: int = 0, **options) -> float:
    """tau_hat (a fraction, e.g. 0.0986) of estimator ``name`` on one data set."""
    return estimate_ate_many(name, [(X, w, y)], [seed], **options)[0]


def estimate_ate_many(name: str, datasets: Sequence, seeds: Sequence[int], **options) -> list[float]:
    """tau_hat for each ``(X, w, y)`` in ``datasets``, member k seeded with ``seeds[k]``."""
    name = _check_name(name)
    datasets, seeds = list(datasets), [int(s) for s in seeds]
    if len(datasets) != len(seeds):
        raise CausalInputError(f"{len(datasets)} data sets but {len(seeds)} seeds; "
                               "give one seed per data set")
    if any(s < 0 for s in seeds):
        raise CausalInputError(f"seeds must be non-negative integers; got {seeds}")
    if not datasets:
        return []
    opts = check_options(name, options, _defaults(name))
    checked = []
    for item in datasets:
        if len(item) != 3:
            raise CausalInputError("each data set must be a tuple (X, w, y)")
        checked.append(check_data(name, *item, allow_nan=name in NAN_AWARE,
                                  min_per_arm=_min_per_arm(name)))
    if name in _NETS:
        from .nets import nets_ate_many
        return nets_ate_many(name, checked, seeds, **opts)
    fit = {"linear": linear_ate, "cf": causal_forest_ate, "cf-mia": mia_tlearner_ate,
           "dr-mia": dr_mia_ate}[name]
    return [fit(X, w, y, seed=s, **opts) for (X, w, y), s in zip(checked, seeds)]
