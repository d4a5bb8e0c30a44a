"""Run many independent trials in parallel, caching each one so an interrupted sweep resumes.

Each trial is a JSON-serialisable ``dict`` of parameters passed to a top-level function that
returns a JSON-serialisable ``dict``.  A finished trial is stored as
``<cache>/<experiment>/<key>.json``, where ``key`` hashes the trial's parameters, the profile of
the run and a fingerprint of the library's source code: rerunning a sweep skips everything
already done, and a code change never returns a stale trial.  Trials run through :mod:`joblib`;
:func:`sweep_backend` (``amlib reproduce --backend dask``) sends the same sweep to a Dask or Ray
cluster.  No trial draws a progress bar of its own: the sweep shows one.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable

from joblib import Parallel, delayed
from tqdm.auto import tqdm

from ..paths import trial_cache_dir

__all__ = ["trial_key", "run_trials", "run_profile", "default_cache", "code_fingerprint",
           "sweep_settings", "IN_SWEEP_ENV"]

#: Set in the environment while a trial runs: Lightning's per-epoch bars stay off there.
IN_SWEEP_ENV = "AMLIB_IN_SWEEP"
_PACKAGE = Path(__file__).resolve().parents[1]
#: The profile and joblib backend of the running ``amlib reproduce`` (set by the runner).
sweep_settings: dict = {"profile": None, "backend": "local", "reused": 0, "computed": 0}


def default_cache() -> Path:
    """The trial cache folder (see :func:`amlib.paths.trial_cache_dir`)."""
    return trial_cache_dir()


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA256 (16 hex digits) of every ``.py`` file of the amlib package, in path order."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(_PACKAGE).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def trial_key(params: dict, profile: str | None = None) -> str:
    """A stable 16-hex-digit key of a trial's parameters, the run's profile and the code.

    Key order in ``params`` does not matter; any change to amlib's source gives new keys.
    """
    blob = json.dumps({"params": params, "profile": profile, "code": code_fingerprint()},
                      sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _read_cached(path: Path) -> dict | None:
    """A cached trial's result, or ``None`` (with a warning) when the file is unreadable."""
    try:
        return json.loads(path.read_text())["result"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        warnings.warn(f"discarding the unreadable cached trial {path} "
                      f"({type(error).__name__}: {error}); it will be recomputed",
                      RuntimeWarning, stacklevel=3)
        path.unlink(missing_ok=True)
        return None


def _run_one(function: Callable[[dict], dict], params: dict, path: Path | None) -> dict:
    before = os.environ.get(IN_SWEEP_ENV)
    os.environ[IN_SWEEP_ENV] = "1"
    try:
        result = function(params)
    finally:
        if before is None:
            os.environ.pop(IN_SWEEP_ENV, None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
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
    ``progress=None`` shows a bar only when stderr is a terminal.  Under a cluster backend
    (``sweep_settings["backend"]`` not ``"local"``) the trials are always dispatched through
    joblib, whatever ``n_jobs`` says.
    """
    if not callable(function):
        raise TypeError("function must be a callable taking one dict of trial parameters")
    folder = None
    if cache:
        folder = (default_cache() if cache is True else Path(cache)) / experiment
        folder.mkdir(parents=True, exist_ok=True)
    profile = sweep_settings["profile"]
    results: list[dict | None] = [None] * len(trials)
    todo = []
    for index, params in enumerate(trials):
        path = folder / f"{trial_key(params, profile)}.json" if folder else None
        if path is not None and path.is_file():
            results[index] = _read_cached(path)
        if results[index] is None:
            todo.append((index, params, path))
    sweep_settings["reused"] = sweep_settings.get("reused", 0) + len(trials) - len(todo)
    sweep_settings["computed"] = sweep_settings.get("computed", 0) + len(todo)
    if progress is None:
        progress = os.isatty(2)
    if sweep_settings["backend"] != "local":
        n_jobs = -1
    bar = tqdm(total=len(trials), initial=len(trials) - len(todo), desc=experiment,
               disable=not progress)
    if n_jobs != 1 and todo:
        try:
            jobs = (delayed(_run_one)(function, params, path) for _, params, path in todo)
            # Ray's joblib backend cannot stream results; the others stream for the bar.
            streaming = "list" if sweep_settings["backend"] == "ray" else "generator"
            outputs = Parallel(n_jobs=n_jobs, return_as=streaming)(jobs)
            for (index, _, _), result in zip(todo, outputs):
                results[index] = result
                bar.update()
        except Exception as error:  # noqa: BLE001 - re-raised below if the trial itself failed
            if sweep_settings["backend"] != "local":
                raise   # a cluster that fails must say so, not fall back to this machine
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
