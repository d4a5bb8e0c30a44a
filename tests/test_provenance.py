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
    assert sidecar["config"] == {"n": 2} and "results_provenance" not in sidecar


def test_a_figure_from_committed_results_records_their_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("AMLIB_FIGURE_DIR", str(tmp_path))
    fig, ax = plt.subplots()
    source = {"experiment": "demo", "profile": "paper", "git_commit": "abc123", "wall_time_s": 1.0}
    save_figure(fig, "bars", experiment="demo", profile="paper", seed=0, results=source)
    plt.close(fig)
    sidecar = json.loads((tmp_path / "bars.json").read_text())
    assert sidecar["results_provenance"] == source


def test_profiles_are_validated(monkeypatch):
    monkeypatch.setenv("AMLIB_PROFILE", "paper")
    assert current_profile() == "paper"
    with pytest.raises(ValueError, match="unknown profile"):
        current_profile("fast")


def test_reproduce_writes_results_with_provenance(tmp_path):
    from amlib.experiments import EXPERIMENTS, register

    @register("test-squares")
    def squares(profile):
        n = 3 if profile == "quick" else 10
        return {"seed": 7, "config": {"n": n}, "results": [i * i for i in range(n)]}

    try:
        path = reproduce("test-squares", "quick", out_dir=tmp_path)
    finally:
        EXPERIMENTS.pop("test-squares")
    record = json.loads(path.read_text())
    assert record["results"] == [0, 1, 4]
    assert record["provenance"]["profile"] == "quick" and record["provenance"]["seed"] == 7
    assert record["provenance"]["config"] == {"n": 3} and record["provenance"]["wall_time_s"] >= 0
    with pytest.raises(KeyError, match="unknown experiment"):
        reproduce("no-such-experiment", "quick", out_dir=tmp_path)


def test_cli_lists_experiments_and_fetches(mirror, capsys):
    from amlib.cli import main

    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "am-table3" in listed and "am-pvalues" in listed and "german-credit" in listed
    assert main(["data", "fetch", "german-credit"]) == 0
    assert "german.data" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["reproduce", "am-table3", "--profile", "fast"])
