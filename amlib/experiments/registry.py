"""The experiment registry: profiles, the ``register`` decorator and what each experiment is.

An experiment is a function ``run(profile) -> dict`` registered with :func:`register`; the
runner (:func:`amlib.experiments.runner.reproduce`) wraps its output with provenance and writes
``<name>.json`` (paper profile) or ``<name>.quick.json`` (quick profile) into the results folder.
:data:`EXPERIMENT_INFO` says what each experiment reproduces, how long its paper profile takes
on a 2-core CPU and whether an interrupted run resumes (``amlib list`` prints it).  Experiment
modules import this module (not the package), so the package can import them without a cycle.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

__all__ = ["PROFILES", "current_profile", "register", "EXPERIMENTS", "EXPERIMENT_INFO",
           "ExperimentInfo", "UnknownExperimentError", "UnknownProfileError"]

PROFILES = ("quick", "paper")
EXPERIMENTS: dict[str, Callable[[str], dict]] = {}


class UnknownExperimentError(KeyError):
    """``amlib reproduce`` was given a name no experiment is registered under."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class UnknownProfileError(ValueError):
    """A profile other than ``quick`` or ``paper`` was asked for."""


@dataclass(frozen=True)
class ExperimentInfo:
    """What an experiment reproduces, its paper-profile wall time here, and if it resumes."""

    reproduces: str
    wall_time: str
    resumable: bool = True


EXPERIMENT_INFO: dict[str, ExperimentInfo] = {
    "am-table3": ExperimentInfo("AM paper Table 3: adversarial GLMs and their NMSE/accuracy",
                                "9 s"),
    "am-toy": ExperimentInfo("AM paper Figure 2: BLAMM on a two-feature toy, five seeds", "24 s"),
    "am-pvalues": ExperimentInfo("AM paper Tables 4–9: p-values of the hidden coefficient",
                                 "343 s"),
    "am-defence": ExperimentInfo("AM paper Figure 4: KNN-Shapley and LAVA as defences", "204 s"),
    "am-detection": ExperimentInfo("beyond the paper: Little's MCAR test and missingness "
                                   "predictability against the attacks", "19 s"),
    "am-ate": ExperimentInfo("AM paper Tables 2, 13–15, Figure 8: the Twins ATE attack",
                             "78 min (shared machine)"),
    "influence-fairness": ExperimentInfo("influence paper Figure 5: the scaling attack on "
                                         "influence-based fair reweighing", "18 s"),
    "influence-valuation": ExperimentInfo("influence paper Tables 1–2, Figures 2–4: targeted "
                                          "attacks on data valuation, and their detection",
                                          "≤ 60 min"),
}


def current_profile(profile: str | None = None) -> str:
    """The profile to run: the argument, else ``AMLIB_PROFILE``, else ``quick``."""
    chosen = profile or os.environ.get("AMLIB_PROFILE", "quick")
    if chosen not in PROFILES:
        raise UnknownProfileError(f"unknown profile {chosen!r}: use one of {PROFILES} "
                                  "(argument or AMLIB_PROFILE)")
    return chosen


def register(name: str):
    """Decorator: make ``run(profile)`` reproducible as ``amlib reproduce <name>``."""
    def wrap(run: Callable[[str], dict]):
        EXPERIMENTS[name] = run
        return run
    return wrap
