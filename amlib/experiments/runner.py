"""Run a registered experiment and write its results, with provenance, to the results folder.

Results of different profiles never share a file: the paper profile writes ``<name>.json`` (the
committed results the book shows), the quick profile ``<name>.quick.json``.  An existing
paper-profile file is replaced only with ``force=True`` (``amlib reproduce --force``), and the
output folder is checked *before* the experiment runs, so no run is lost at the end.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from . import _load_all
from .registry import EXPERIMENTS, UnknownExperimentError, current_profile
from .trials import sweep_settings
from ..paths import committed_results_dir
from ..paths import results_dir as default_results_dir
from ..provenance import provenance

__all__ = ["reproduce", "results_path", "check_output", "read_results", "results_dir",
           "ResultsExistError", "OutputPathError", "BACKENDS", "cluster_backend"]

BACKENDS = ("local", "dask", "ray")


class ResultsExistError(FileExistsError):
    """A run would replace committed paper-profile results without ``--force``."""


class OutputPathError(ValueError):
    """The output folder cannot be used (empty, an existing file, or not writable)."""


def results_dir() -> Path:
    """The folder of the committed paper-profile results (what the book reads)."""
    return committed_results_dir()


def results_path(name: str, profile: str, out_dir: Path | str | None = None) -> Path:
    """``<out_dir>/<name>.json`` for the paper profile, ``<name>.<profile>.json`` otherwise."""
    folder = default_results_dir() if out_dir is None else Path(out_dir)
    return folder / (f"{name}.json" if profile == "paper" else f"{name}.{profile}.json")


def check_output(path: Path, *, force: bool = False) -> None:
    """Raise before a run whose results could not be written or would replace paper results."""
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"the output folder {folder} is a file: give --out a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".amlib-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise OutputPathError(f"cannot write results into {folder} ({error.strerror}): "
                              "choose another folder with --out") from error
    if path.is_file() and not force:
        try:
            existing = json.loads(path.read_text())["provenance"]["profile"]
        except (ValueError, KeyError, TypeError):
            existing = "unknown"
        if existing != "quick":
            raise ResultsExistError(
                f"{path} already holds {existing}-profile results; rerun with --force to "
                "replace them, or --out another folder")


@contextlib.contextmanager
def cluster_backend(backend: str = "local", scheduler: str | None = None):
    """Send every sweep inside the block to a cluster through joblib's backend API.

    ``"dask"`` connects to ``scheduler`` (an address such as ``tcp://10.0.0.5:8786``) or, when
    none is given, starts a ``distributed.LocalCluster``; ``"ray"`` uses ``ray.init(address=
    scheduler)`` and ray's joblib backend.  ``"local"`` changes nothing.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use one of {BACKENDS}")
    if backend == "local":
        yield
        return
    import joblib

    previous = sweep_settings["backend"]
    sweep_settings["backend"] = backend
    try:
        if backend == "dask":
            from distributed import Client

            client = Client(scheduler) if scheduler else Client(processes=True)
            try:
                with joblib.parallel_config(backend="dask"):
                    yield
            finally:
                client.close()
        else:
            import ray
            from ray.util.joblib import register_ray

            register_ray()
            ray.init(address=scheduler, ignore_reinit_error=True)
            try:
                with joblib.parallel_config(backend="ray"):
                    yield
            finally:
                ray.shutdown()
    finally:
        sweep_settings["backend"] = previous


def reproduce(name: str, profile: str | None = None, out_dir: Path | str | None = None, *,
              force: bool = False, backend: str = "local", scheduler: str | None = None) -> Path:
    """Run experiment ``name`` under ``profile`` and write its results file (see the module)."""
    _load_all()
    if name not in EXPERIMENTS:
        raise UnknownExperimentError(f"unknown experiment {name!r}; known: "
                                     f"{', '.join(sorted(EXPERIMENTS))} (or 'all')")
    profile = current_profile(profile)
    if out_dir is not None and str(out_dir).strip() == "":
        raise OutputPathError("--out is empty: give a folder for the results")
    path = results_path(name, profile, out_dir)
    check_output(path, force=force)
    print(f"[amlib] running {name} with profile {profile!r} -> {path}")
    sweep_settings.update(profile=profile, reused=0, computed=0)
    start = time.perf_counter()
    try:
        with cluster_backend(backend, scheduler):
            payload = EXPERIMENTS[name](profile)
    finally:
        sweep_settings["profile"] = None
    wall = time.perf_counter() - start
    record = {"provenance": provenance(name, profile, payload.get("seed"), payload.get("config"),
                                       wall_time_s=round(wall, 2)),
              "results": payload["results"]}
    path.write_text(json.dumps(record, indent=2, default=float) + "\n")
    reused = sweep_settings["reused"]
    note = f" ({reused} cached trials reused)" if reused else ""
    print(f"[amlib] wrote {path} in {wall:.1f} s{note}")
    return path


def read_results(name: str) -> dict:
    """The committed results of ``name`` (raises with the command that makes them when absent)."""
    path = results_dir() / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run `amlib reproduce {name} --profile paper`")
    return json.loads(path.read_text())
