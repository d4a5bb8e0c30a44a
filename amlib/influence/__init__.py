"""Influence functions for (multiclass) logistic regression and how to manipulate them.

Reproduces "Influence-based attributions can be manipulated" (the influence paper): models and
fitting (:mod:`.models`), matrix-free Hessian-vector products and inverse-HVP solvers
(:mod:`.hvp`), influence scores with the sign convention value = G_testᵀ H⁻¹ g_i, rank 0 = most
valuable (:mod:`.scores`), the backward-friendly gradient of Alg. 1 (:mod:`.surrogate`), the
targeted attacks, their loss-reweighing baseline and the scaling attack (:mod:`.attacks`,
:func:`scale_model`), the auditor of App. A.0.1 (:mod:`.audit`), the impossibility
construction of Theorem 1 (:mod:`.impossibility`) and, beyond the paper, how a data provider
detects a manipulated model (:mod:`.detection`: a Newton-decrement stationarity test).
"""
from .audit import AuditReport, audit_influence_calculator, honest_score_fn
from .detection import (HonestModel, audit_with_real_query, calibrate_threshold, detection_roc,
                        honest_models, stationarity_statistic)
from .hvp import (METHODS, PRECONDITIONERS, FeatureGram, HessianOperator, IHVPResult, InverseHVP,
                  KFACPreconditioner, LiSSADivergence, SingularHessianError, apply_hessian,
                  conjugate_gradient, dense_hessian, hvp, inverse_hvp, null_space_shift)
from .impossibility import max_rank_search, one_hot_construction
from .models import (FitResult, LogisticModel, NotStationaryWarning, as_features, as_labels,
                     fit_logistic, fit_logistic_sgd, scale_model)
from .scores import (InfluenceResult, influence_values, leave_one_out_values,
                     per_sample_grad_dot, per_sample_gradients, ranks, residuals_at,
                     stationarity, test_gradient)
from .surrogate import (OBJECTIVES, SurrogateGradient, attack_coefficients,
                        backward_friendly_grad, naive_objective, project_to_ball,
                        random_initialisation, surrogate_gradient, surrogate_objective,
                        value_objective)

# the attacks need Lightning, whose import costs seconds and ~200 MB: load them on first use
_LAZY = {"AttackResult": "attacks", "TargetedInfluenceAttack": "attacks",
         "loss_reweighing_baseline": "attacks", "run_targeted_attack": "attacks"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LogisticModel", "FitResult", "NotStationaryWarning", "fit_logistic", "fit_logistic_sgd",
    "scale_model", "as_features", "as_labels",
    "HessianOperator", "hvp", "dense_hessian", "null_space_shift", "conjugate_gradient",
    "InverseHVP", "inverse_hvp", "IHVPResult", "LiSSADivergence", "SingularHessianError",
    "METHODS", "PRECONDITIONERS", "FeatureGram", "KFACPreconditioner",
    "per_sample_grad_dot", "per_sample_gradients", "test_gradient", "influence_values",
    "InfluenceResult", "ranks", "leave_one_out_values", "stationarity", "apply_hessian",
    "residuals_at",
    "OBJECTIVES", "attack_coefficients", "surrogate_objective", "surrogate_gradient",
    "backward_friendly_grad", "SurrogateGradient", "naive_objective", "value_objective",
    "project_to_ball", "random_initialisation", "TargetedInfluenceAttack", "AttackResult",
    "run_targeted_attack", "loss_reweighing_baseline",
    "AuditReport", "audit_influence_calculator", "honest_score_fn",
    "stationarity_statistic", "calibrate_threshold", "detection_roc", "honest_models",
    "HonestModel", "audit_with_real_query",
    "one_hot_construction", "max_rank_search",
]
