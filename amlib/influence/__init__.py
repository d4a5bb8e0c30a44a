"""Influence functions for (multiclass) logistic regression and how to manipulate them.

Reproduces "Influence-based attributions can be manipulated" (the influence paper) on one engine:

- the victim model (:mod:`.models`) and its fitting (:mod:`.fitting`);
- the matrix-free Hessian (:mod:`.hessian`), inverse-HVP solvers behind one interface
  (:mod:`.solvers`: exact and CG; :mod:`.lissa`; :mod:`.refinement`: CG to a requested
  accuracy in float32 with float64 residuals; picked by name with :func:`InverseHVP`,
  :mod:`.ihvp`) and their preconditioners (:mod:`.preconditioners`);
- influence values and ranks at θ with one sign convention — value = G_queryᵀ H⁻¹ g_i, higher =
  more valuable, rank 0 = the top — computed in one place, :func:`values_and_ranks`
  (:mod:`.scores`);
- the backward-friendly gradient of Alg. 1 (:mod:`.surrogate`), the targeted attacks, their
  loss-reweighing baseline (:mod:`.attacks`) and the scaling attack :func:`scale_theta`;
- the auditor of App. A.0.1 (:mod:`.audit`), the impossibility construction of Theorem 1
  (:mod:`.impossibility`) and Li & Liu's influence-based fair reweighing (:mod:`.fairness`);
- beyond the paper, how a data provider detects a manipulated model (:mod:`.detection`: a
  Newton-decrement stationarity test);
- the bytes a backward pass keeps (:mod:`.memory`) and the worked example and set-up of the
  book's influence chapters (:mod:`.examples`, imported on its own).
"""
from .audit import AuditReport, audit_influence_calculator, honest_score_fn
from .detection import (HonestModel, audit_with_real_query, calibrate_threshold, detection_roc,
                        honest_models, stationarity_statistic)
from .fitting import FitResult, fit_logistic, fit_logistic_sgd
from .hessian import (HessianOperator, apply_hessian, dense_hessian, direction_logits, hvp,
                      null_space_shift)
from .ihvp import METHODS, SOLVERS, InverseHVP, inverse_hvp
from .impossibility import max_rank_search, one_hot_construction
from .lissa import LiSSADivergence, LiSSASolver
from .memory import SavedTensorBytes, saved_bytes
from .models import (LogisticModel, NotStationaryWarning, as_features, as_labels,
                     scale_theta)
from .preconditioners import (KFAC_MIN_CONDITION, PRECONDITIONERS, FeatureGram,
                              JacobiPreconditioner, KFACPreconditioner, choose_preconditioner,
                              condition_estimate)
from .refinement import RefinedCGSolver
from .scores import (InfluenceResult, influence_values, leave_one_out_values,
                     per_sample_grad_dot, per_sample_gradients, query_gradient, ranks,
                     residuals_at, stationarity, values_and_ranks)
from .solvers import (CGSolver, ExactSolver, IHVPResult, InverseHVPSolver,
                      SingularHessianError, conjugate_gradient)
from .surrogate import (OBJECTIVES, SurrogateGradient, attack_coefficients,
                        backward_friendly_grad, dense_objective_and_gradient,
                        naive_objective, project_to_ball,
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
    "scale_theta", "as_features", "as_labels",
    "HessianOperator", "hvp", "dense_hessian", "null_space_shift", "apply_hessian",
    "direction_logits",
    "InverseHVPSolver", "ExactSolver", "CGSolver", "LiSSASolver", "RefinedCGSolver",
    "conjugate_gradient",
    "InverseHVP", "inverse_hvp", "IHVPResult", "LiSSADivergence", "SingularHessianError",
    "METHODS", "SOLVERS", "PRECONDITIONERS", "FeatureGram", "KFACPreconditioner",
    "JacobiPreconditioner", "condition_estimate", "choose_preconditioner", "KFAC_MIN_CONDITION",
    "values_and_ranks", "per_sample_grad_dot", "per_sample_gradients", "query_gradient",
    "influence_values", "InfluenceResult", "ranks", "leave_one_out_values", "stationarity",
    "residuals_at",
    "OBJECTIVES", "attack_coefficients", "surrogate_objective", "surrogate_gradient",
    "backward_friendly_grad", "SurrogateGradient", "naive_objective", "value_objective",
    "dense_objective_and_gradient", "SavedTensorBytes", "saved_bytes",
    "project_to_ball", "random_initialisation", "TargetedInfluenceAttack", "AttackResult",
    "run_targeted_attack", "loss_reweighing_baseline",
    "AuditReport", "audit_influence_calculator", "honest_score_fn",
    "stationarity_statistic", "calibrate_threshold", "detection_roc", "honest_models",
    "HonestModel", "audit_with_real_query",
    "one_hot_construction", "max_rank_search",
]
