"""Where the library reads and writes: one place for every default folder.

Nothing is ever written into the installed package's own folder.  Defaults:

- results: ``AMLIB_RESULTS_DIR``, else ``results/`` in the current working directory;
- committed results (read only): ``AMLIB_RESULTS_DIR``, else the source checkout's ``results/``
  when amlib runs from a git checkout, else ``results/`` in the working directory;
- figures: ``AMLIB_FIGURE_DIR``, else the checkout's ``book/figures``, else ``figures/`` in the
  working directory;
- the trial cache: ``AMLIB_TRIAL_CACHE``, else ``trials/`` in the user cache directory
  (``platformdirs``; ``~/.cache/amlib/trials`` on Linux).
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["source_checkout", "results_dir", "committed_results_dir", "figure_dir",
           "user_cache_dir", "trial_cache_dir"]

_PACKAGE = Path(__file__).resolve().parent


def source_checkout() -> Path | None:
    """The git checkout amlib is imported from (an editable install), or ``None``."""
    root = _PACKAGE.parent
    if (root / "pyproject.toml").is_file() and (root / ".git").exists():
        return root
    return None


def results_dir() -> Path:
    """Where ``amlib reproduce`` writes: ``AMLIB_RESULTS_DIR`` or ``./results``."""
    configured = os.environ.get("AMLIB_RESULTS_DIR")
    return Path(configured).expanduser() if configured else Path.cwd() / "results"


def committed_results_dir() -> Path:
    """Where the book reads the committed paper-profile results from."""
    configured = os.environ.get("AMLIB_RESULTS_DIR")
    if configured:
        return Path(configured).expanduser()
    checkout = source_checkout()
    return checkout / "results" if checkout is not None else Path.cwd() / "results"


def figure_dir() -> Path:
    """Where figures and their provenance sidecars go."""
    configured = os.environ.get("AMLIB_FIGURE_DIR")
    if configured:
        return Path(configured).expanduser()
    checkout = source_checkout()
    return checkout / "book" / "figures" if checkout is not None else Path.cwd() / "figures"


def user_cache_dir() -> Path:
    """The user's cache folder for amlib (``platformdirs``)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("amlib"))


def trial_cache_dir() -> Path:
    """Finished trials: ``AMLIB_TRIAL_CACHE`` or ``<user cache>/trials``."""
    configured = os.environ.get("AMLIB_TRIAL_CACHE")
    return Path(configured).expanduser() if configured else user_cache_dir() / "trials"
