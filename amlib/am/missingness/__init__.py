"""Missingness mechanisms p(R|X) and the differentiable proxies f̃ of the AM paper.

See :mod:`amlib.am.missingness.mechanisms` (App. C.4, eq. 24, baselines, mask sampling) and
:mod:`amlib.am.missingness.proxies` (eqs. 5.1, 8–11, App. B eqs. 15–17).
"""
from .mechanisms import (LogisticMNAR, MCARMechanism, NeuralMechanism, PartialAccess,
                         PerSampleMechanism, Standardizer, apply_patterns,
                         expected_missing_fraction, masked_missing_rate, mcar_matched,
                         observed_marginals, offset_for_rate, pattern_index, pattern_matrix,
                         sample_patterns)
from .proxies import (PROXIES, WeightedDesign, build_design, cca_proxy, mean_proxy,
                      proxy_objective, regression_proxy, weighted_mean_imputation,
                      weighted_regression_coefficients)

__all__ = ["LogisticMNAR", "MCARMechanism", "NeuralMechanism", "PartialAccess",
           "PerSampleMechanism", "Standardizer", "apply_patterns", "expected_missing_fraction",
           "masked_missing_rate", "mcar_matched", "observed_marginals", "offset_for_rate",
           "pattern_index",
           "pattern_matrix", "sample_patterns", "PROXIES", "WeightedDesign", "build_design",
           "cca_proxy", "mean_proxy", "proxy_objective", "regression_proxy",
           "weighted_mean_imputation", "weighted_regression_coefficients"]
