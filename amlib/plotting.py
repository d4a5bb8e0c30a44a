"""One figure style for the whole book, and the one function every figure is saved through."""
from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

from .paths import figure_dir
from .provenance import provenance

__all__ = ["set_style", "save_figure", "figure_dir"]

def set_style() -> None:
    """The book's seaborn theme (white grid, colour-blind palette, readable font sizes)."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    matplotlib.rcParams.update({"figure.dpi": 110, "savefig.dpi": 200, "savefig.bbox": "tight"})


def save_figure(fig, name: str, *, experiment: str, profile: str, seed: int | None,
                config: dict | None = None, results: dict | None = None) -> Path:
    """Write ``name``.png (for the book) and ``name``.pdf (for papers) plus ``name``.json.

    The JSON sidecar holds the provenance block (experiment, profile, seed, config, package
    versions, git commit), so a cited figure can be regenerated.  A figure drawn from committed
    results passes their provenance as ``results``: the sidecar then also records the command,
    commit and configuration that produced the numbers, not only the commit that drew them.
    Returns the PNG's path.
    """
    folder = figure_dir()
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}.png"
    fig.savefig(png)
    fig.savefig(folder / f"{name}.pdf")
    extra = {"figure": name}
    if results is not None:
        extra["results_provenance"] = results
    sidecar = provenance(experiment, profile, seed, config, **extra)
    (folder / f"{name}.json").write_text(json.dumps(sidecar, indent=2, default=str) + "\n")
    return png
