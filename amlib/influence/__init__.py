"""Influence functions for (multiclass) logistic regression and how to manipulate them.

Reproduces "Influence-based attributions can be manipulated" (the influence paper): models and
fitting (:mod:`.models`), matrix-free Hessian-vector products and inverse-HVP solvers
(:mod:`.hvp`), influence scores with the sign convention value = G_testᵀ H⁻¹ g_i, rank 0 = most
valuable (:mod:`.scores`).
"""
from .hvp import (METHODS, HessianOperator, IHVPResult, InverseHVP, LiSSADivergence,
                  SingularHessianError, conjugate_gradient, dense_hessian, hvp, inverse_hvp,
                  null_space_shift)
from .models import (FitResult, LogisticModel, NotStationaryWarning, as_features, as_labels,
                     fit_logistic, fit_logistic_sgd, scale_model)
from .scores import (InfluenceResult, influence_values, leave_one_out_values,
                     per_sample_grad_dot, per_sample_gradients, ranks, stationarity,
                     test_gradient)

__all__ = [
    "LogisticModel", "FitResult", "NotStationaryWarning", "fit_logistic", "fit_logistic_sgd",
    "scale_model", "as_features", "as_labels",
    "HessianOperator", "hvp", "dense_hessian", "null_space_shift", "conjugate_gradient",
    "InverseHVP", "inverse_hvp", "IHVPResult", "LiSSADivergence", "SingularHessianError",
    "METHODS",
    "per_sample_grad_dot", "per_sample_gradients", "test_gradient", "influence_values",
    "InfluenceResult", "ranks", "leave_one_out_values", "stationarity",
]
