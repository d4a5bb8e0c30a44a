"""Figures and results carry a provenance block; the CLI and runner write results files."""
import json

import matplotlib.pyplot as plt
import pytest

from amlib.experiments import current_profile
from amlib.experiments.runner import reproduce
from amlib.plotting import save_figure
from amlib.provenance import provenance


def test_provenance_block_has_everything_a_citation_needs():
    block = provenance("demo", "quick", 3, {"a": 1})
    assert {"experiment", "profile", "seed", "config", "git_commit", "packages", "created_utc"} <= set(block)
    assert block["packages"]["torch"].startswith("2.13.0")
    assert block["seed"] == 3 and block["config"] == {"a": 1}


def test_save_figure_writes_png_pdf_and_sidecar(tmp_path, monkeypatch):
    monkeypatch.setenv("AMLIB_FIGURE_DIR", str(tmp_path))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = save_figure(fig, "line", experiment="demo", profile="quick", seed=0, config={"n": 2})
    plt.close(fig)
    assert png.stat().st_size > 0 and (tmp_path / "line.pdf").stat().st_size > 0
    sidecar = json.loads((tmp_path / "line.json").read_text())
    assert sidecar["experiment"] == "demo" and sidecar["figure"] == "line"
    assert sidecar["config"] == {"n": 2}


def test_profiles_are_validated(monkeypatch):
    monkeypatch.setenv("AMLIB_PROFILE", "paper")
    assert current_profile() == "paper"
    with pytest.raises(ValueError, match="unknown profile"):
        current_profile("fast")


def test_reproduce_writes_results_with_provenance(mirror, tmp_path):
    path = reproduce("am-table3", "quick", out_dir=tmp_path)
    record = json.loads(path.read_text())
    assert record["provenance"]["profile"] == "quick"
    assert record["provenance"]["wall_time_s"] > 0
    assert len(record["results"]) == 4 * len(record["provenance"]["config"]["seeds"])
