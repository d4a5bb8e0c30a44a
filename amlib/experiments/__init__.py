"""Experiments: one declarative config per paper table/figure, with ``quick`` and ``paper`` profiles.

An experiment is a function ``run(profile) -> dict`` registered with :func:`register`; the
runner (:func:`amlib.experiments.runner.reproduce`) wraps its output with provenance and writes
``results/<name>.json``.
"""
from __future__ import annotations

import os
from typing import Callable

__all__ = ["PROFILES", "current_profile", "register", "EXPERIMENTS"]

PROFILES = ("quick", "paper")
EXPERIMENTS: dict[str, Callable[[str], dict]] = {}


def current_profile(profile: str | None = None) -> str:
    """The profile to run: the argument, else ``AMLIB_PROFILE``, else ``quick``."""
    chosen = profile or os.environ.get("AMLIB_PROFILE", "quick")
    if chosen not in PROFILES:
        raise ValueError(f"unknown profile {chosen!r}: use one of {PROFILES} "
                         "(argument or AMLIB_PROFILE)")
    return chosen


def register(name: str):
    """Decorator: make ``run(profile)`` reproducible as ``amlib reproduce <name>``."""
    def wrap(run: Callable[[str], dict]):
        EXPERIMENTS[name] = run
        return run
    return wrap


def _load_all() -> None:
    """Import the modules that register experiments."""
    from . import (am_datasets, am_defence, am_detection, am_pvalues, am_toy,  # noqa: F401
                   influence_fairness, influence_valuation)
