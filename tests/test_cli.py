"""The CLI and the runner never lose or overwrite results; user errors are one line and exit 2."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from amlib.cli import main
from amlib.experiments import EXPERIMENTS, register
from amlib.experiments.runner import (OutputPathError, ResultsExistError, reproduce,
                                      results_path)
from amlib.experiments.trials import run_trials

CALLS = []


def _square(params):
    return {"y": params["x"] ** 2}


@pytest.fixture
def toy_experiment():
    """A registered experiment whose every run is recorded in CALLS."""
    CALLS.clear()

    @register("test-cli-squares")
    def run(profile):
        CALLS.append(profile)
        n = 3 if profile == "quick" else 5
        out = run_trials(_square, [{"x": i} for i in range(n)], experiment="test-cli",
                         cache=False)
        return {"seed": 0, "config": {"n": n}, "results": [r["y"] for r in out]}

    yield "test-cli-squares"
    EXPERIMENTS.pop("test-cli-squares")


def test_profiles_write_separate_files(toy_experiment, tmp_path):
    quick = reproduce(toy_experiment, "quick", tmp_path)
    paper = reproduce(toy_experiment, "paper", tmp_path)
    assert quick.name == "test-cli-squares.quick.json" and paper.name == "test-cli-squares.json"
    assert json.loads(quick.read_text())["results"] == [0, 1, 4]
    assert json.loads(paper.read_text())["results"] == [0, 1, 4, 9, 16]
    reproduce(toy_experiment, "quick", tmp_path)   # a quick rerun leaves the paper file alone
    assert json.loads(paper.read_text())["results"] == [0, 1, 4, 9, 16]


def test_paper_results_are_replaced_only_with_force_and_checked_before_running(
        toy_experiment, tmp_path):
    path = reproduce(toy_experiment, "paper", tmp_path)
    before = path.read_text()
    CALLS.clear()
    with pytest.raises(ResultsExistError, match="--force"):
        reproduce(toy_experiment, "paper", tmp_path)
    assert CALLS == [] and path.read_text() == before   # refused before running anything
    reproduce(toy_experiment, "paper", tmp_path, force=True)
    assert CALLS == ["paper"]


def test_bad_output_folders_fail_before_the_run(toy_experiment, tmp_path):
    a_file = tmp_path / "taken.json"
    a_file.write_text("{}")
    CALLS.clear()
    with pytest.raises(OutputPathError, match="is a file"):
        reproduce(toy_experiment, "quick", a_file)
    with pytest.raises(OutputPathError, match="empty"):
        reproduce(toy_experiment, "quick", "")
    assert CALLS == []


def test_default_output_is_the_working_directory(toy_experiment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AMLIB_RESULTS_DIR", raising=False)
    assert results_path("x", "quick") == tmp_path / "results" / "x.quick.json"
    assert reproduce(toy_experiment, "quick").parent == tmp_path / "results"


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "no-such-experiment"], "unknown experiment 'no-such-experiment'"),
    (["data", "fetch", "no-such-file"], "unknown data file"),
])
def test_user_errors_are_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_profile_exits_2():
    with pytest.raises(SystemExit) as stop:
        main(["reproduce", "am-table3", "--profile", "fast"])
    assert stop.value.code == 2


def test_existing_paper_results_via_cli_exit_2(toy_experiment, tmp_path, capsys):
    assert main(["reproduce", toy_experiment, "--profile", "paper", "--out", str(tmp_path)]) == 0
    assert main(["reproduce", toy_experiment, "--profile", "paper", "--out", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err


def test_ctrl_c_says_how_to_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AMLIB_TRIAL_CACHE", str(tmp_path))
    (tmp_path / "some-experiment").mkdir()
    (tmp_path / "some-experiment" / "abc.json").write_text("{}")

    @register("test-cli-interrupt")
    def run(profile):
        raise KeyboardInterrupt

    try:
        assert main(["reproduce", "test-cli-interrupt", "--out", str(tmp_path / "out")]) == 130
    finally:
        EXPERIMENTS.pop("test-cli-interrupt")
    err = capsys.readouterr().err
    assert "1 finished trial(s) are cached" in err and "resume" in err and "Traceback" not in err


def test_list_describes_every_experiment(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("am-table3", "am-pvalues", "influence-fairness"):
        assert name in out and f"results/{name}.json" in out
    assert "Tables 4–9" in out and "on 2 cores" in out


def test_help_documents_arguments(capsys):
    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    out = capsys.readouterr().out
    assert "quick (default" in out and "or 'all'" in out and "``" not in out


def test_a_non_editable_install_writes_into_the_working_directory(tmp_path):
    """Built as a wheel into a plain folder, amlib finds no checkout and uses the cwd."""
    import shutil

    root = Path(__file__).resolve().parents[1]
    source = tmp_path / "source"          # a copy: the build must not write into the checkout
    shutil.copytree(root / "amlib", source / "amlib")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    site = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                            "--no-build-isolation", "--target", str(site), str(source)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    work = tmp_path / "work"
    work.mkdir()
    probe = ("import amlib, amlib.paths as p; print(amlib.__file__); print(p.results_dir()); "
             "print(p.figure_dir()); print(p.source_checkout())")
    out = subprocess.run([sys.executable, "-c", probe], cwd=work, capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin",
                              "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    module, results, figures, checkout = out.stdout.split("\n")[:4]
    assert module.startswith(str(site))
    assert results == str(work / "results") and figures == str(work / "figures")
    assert checkout == "None"
