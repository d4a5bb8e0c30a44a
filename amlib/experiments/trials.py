"""Run many independent trials in parallel, caching each one so an interrupted sweep resumes.

Each trial is a JSON-serialisable ``dict`` of parameters passed to a top-level function that
returns a JSON-serialisable ``dict``.  A finished trial is stored as
``<cache>/<experiment>/<key>.json`` where ``key`` hashes its parameters, so rerunning a sweep
skips everything already done.  Trials run through :mod:`joblib`; registering a Dask or Ray joblib
backend (``joblib.parallel_config(backend="dask")``) sends the same sweep to a cluster.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable

from joblib import Parallel, delayed
from tqdm.auto import tqdm

__all__ = ["trial_key", "run_trials", "run_profile", "default_cache"]

_REPO = Path(__file__).resolve().parents[2]


def default_cache() -> Path:
    """``AMLIB_TRIAL_CACHE``, default ``.amlib_cache/trials`` in the repository (git-ignored)."""
    return Path(os.environ.get("AMLIB_TRIAL_CACHE", _REPO / ".amlib_cache" / "trials"))


def trial_key(params: dict) -> str:
    """A stable 16-hex-digit key of a trial's parameters (key order does not matter)."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _run_one(function: Callable[[dict], dict], params: dict, path: Path | None) -> dict:
    result = function(params)
    if path is not None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"params": params, "result": result}, default=float))
        tmp.replace(path)  # atomic: a killed run never leaves half a file behind
    return result


def run_trials(function: Callable[[dict], dict], trials: list[dict], *, experiment: str,
               n_jobs: int = 1, cache: Path | None | bool = True, progress: bool | None = None,
               ) -> list[dict]:
    """Results of ``function(params)`` for every ``params`` in ``trials``, in order.

    ``cache=True`` uses :func:`default_cache`, a path uses that folder, ``False`` disables it.
    ``progress=None`` shows a bar only when stderr is a terminal.
    """
    if not callable(function):
        raise TypeError("function must be a callable taking one dict of trial parameters")
    folder = None
    if cache:
        folder = (default_cache() if cache is True else Path(cache)) / experiment
        folder.mkdir(parents=True, exist_ok=True)
    results: list[dict | None] = [None] * len(trials)
    todo = []
    for index, params in enumerate(trials):
        path = folder / f"{trial_key(params)}.json" if folder else None
        if path is not None and path.is_file():
            results[index] = json.loads(path.read_text())["result"]
        else:
            todo.append((index, params, path))
    if progress is None:
        progress = os.isatty(2)
    bar = tqdm(total=len(trials), initial=len(trials) - len(todo), desc=experiment,
               disable=not progress)
    if n_jobs != 1 and todo:
        try:
            jobs = (delayed(_run_one)(function, params, path) for _, params, path in todo)
            outputs = Parallel(n_jobs=n_jobs, return_as="generator")(jobs)
            for (index, _, _), result in zip(todo, outputs):
                results[index] = result
                bar.update()
        except Exception as error:  # noqa: BLE001 - re-raised below if the trial itself failed
            # Worker processes cannot always be started (a sandbox without fork, strict memory
            # overcommit, ...).  Run what is left here: a genuine error in a trial is raised
            # again by the serial run, so nothing is hidden.
            left = sum(results[index] is None for index, _, _ in todo)
            warnings.warn(f"{experiment}: parallel trials stopped ({type(error).__name__}: "
                          f"{error}); running the {left} remaining trial(s) in this process",
                          RuntimeWarning, stacklevel=2)
    for index, params, path in todo:
        if results[index] is None:
            results[index] = _run_one(function, params, path)
            bar.update()
    bar.close()
    return results


def run_profile(function: Callable[[dict], dict], grid: Callable[[dict], list[dict]],
                profiles: dict, profile: str, *, experiment: str):
    """``(config, trials, results)``: the profile's settings, the trials ``grid(config)`` and
    their results from :func:`run_trials` (cached as ``<experiment>-<profile>``, ``n_jobs``
    from the profile)."""
    if profile not in profiles:
        raise KeyError(f"{experiment} has no profile {profile!r}; use one of {sorted(profiles)}")
    config = profiles[profile]
    trials = grid(config)
    results = run_trials(function, trials, experiment=f"{experiment}-{profile}",
                         n_jobs=config["n_jobs"])
    return config, trials, results
