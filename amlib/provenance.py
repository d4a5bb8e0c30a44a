"""The provenance block stored beside every result and figure: what made it, and how."""
from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from importlib import metadata

from .paths import source_checkout

__all__ = ["provenance", "git_commit"]

_PACKAGES = ["amlib", "torch", "pytorch-lightning", "numpy", "pandas", "scipy", "scikit-learn",
             "statsmodels", "matplotlib", "seaborn"]


def git_commit() -> str:
    """The checkout's commit, with ``-dirty`` when tracked files differ from it ("unknown" outside git)."""
    repo = source_checkout()
    if repo is None:
        return "unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def provenance(experiment: str, profile: str, seed: int | None, config: dict | None = None,
               **extra) -> dict:
    """Experiment name, profile, seed, config, package versions, git commit and a UTC time stamp."""
    return {
        "experiment": experiment,
        "profile": profile,
        "seed": seed,
        "config": config or {},
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in _PACKAGES},
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
