"""Experiments: one declarative config per paper table/figure, with ``quick`` and ``paper`` profiles.

An experiment is a function ``run(profile) -> dict`` registered with
:func:`~amlib.experiments.registry.register`; the runner
(:func:`amlib.experiments.runner.reproduce`) wraps its output with provenance and writes
``<name>.json`` (paper profile) or ``<name>.quick.json`` (quick profile).
"""
from __future__ import annotations

from .registry import (EXPERIMENT_INFO, EXPERIMENTS, PROFILES, ExperimentInfo,
                       UnknownExperimentError, UnknownProfileError, current_profile, register)

__all__ = ["PROFILES", "current_profile", "register", "EXPERIMENTS", "EXPERIMENT_INFO",
           "ExperimentInfo", "UnknownExperimentError", "UnknownProfileError"]


def _load_all() -> None:
    """Import the modules that register experiments."""
    from . import (am_ate, am_datasets, am_defence, am_detection, am_pvalues, am_toy,  # noqa: F401
                   influence_fairness, influence_valuation)
