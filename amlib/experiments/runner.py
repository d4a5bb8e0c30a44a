"""Run a registered experiment and write its results, with provenance, to ``results/``."""
from __future__ import annotations

import json
import time
from pathlib import Path

from . import _load_all
from .registry import EXPERIMENTS, current_profile
from ..provenance import provenance

__all__ = ["reproduce", "results_dir", "read_results"]

_REPO = Path(__file__).resolve().parents[2]


def results_dir() -> Path:
    return _REPO / "results"


def reproduce(name: str, profile: str | None = None, out_dir: Path | None = None) -> Path:
    """Run experiment ``name`` under ``profile`` and write ``<out_dir>/<name>.json``."""
    _load_all()
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; known: {sorted(EXPERIMENTS)}")
    profile = current_profile(profile)
    print(f"[amlib] running {name} with profile {profile!r}")
    start = time.perf_counter()
    payload = EXPERIMENTS[name](profile)
    wall = time.perf_counter() - start
    record = {"provenance": provenance(name, profile, payload.get("seed"), payload.get("config"),
                                       wall_time_s=round(wall, 2)),
              "results": payload["results"]}
    folder = Path(out_dir) if out_dir else results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, default=float) + "\n")
    print(f"[amlib] wrote {path} in {wall:.1f} s")
    return path


def read_results(name: str) -> dict:
    """The committed results of ``name`` (raises with the command that makes them when absent)."""
    path = results_dir() / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run `amlib reproduce {name} --profile paper`")
    return json.loads(path.read_text())
