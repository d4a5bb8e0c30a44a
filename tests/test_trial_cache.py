"""The trial cache is keyed on parameters, profile and code, and survives damaged files."""
import json
import os

import pytest

import amlib.experiments.trials as trials_module
from amlib.experiments.trials import IN_SWEEP_ENV, run_trials, sweep_settings, trial_key

CALLS = []


def _square(params):
    CALLS.append(params["x"])
    return {"y": params["x"] ** 2, "in_sweep": os.environ.get(IN_SWEEP_ENV)}


def test_key_depends_on_profile_and_code(monkeypatch):
    base = trial_key({"x": 1}, "quick")
    assert trial_key({"x": 1}, "paper") != base
    monkeypatch.setattr(trials_module, "code_fingerprint", lambda: "changed-code")
    assert trial_key({"x": 1}, "quick") != base


def test_a_code_change_recomputes_instead_of_returning_stale_trials(tmp_path, monkeypatch):
    CALLS.clear()
    run_trials(_square, [{"x": 2}], experiment="stale", cache=tmp_path)
    run_trials(_square, [{"x": 2}], experiment="stale", cache=tmp_path)
    assert CALLS == [2]                       # the second run reused the trial
    monkeypatch.setattr(trials_module, "code_fingerprint", lambda: "new-code")
    run_trials(_square, [{"x": 2}], experiment="stale", cache=tmp_path)
    assert CALLS == [2, 2]                    # new code, new key: recomputed


def test_reused_trials_are_counted(tmp_path, monkeypatch):
    monkeypatch.setitem(sweep_settings, "reused", 0)
    monkeypatch.setitem(sweep_settings, "computed", 0)
    run_trials(_square, [{"x": 1}, {"x": 2}], experiment="count", cache=tmp_path)
    run_trials(_square, [{"x": 1}, {"x": 2}, {"x": 3}], experiment="count", cache=tmp_path)
    assert sweep_settings["reused"] == 2 and sweep_settings["computed"] == 3


@pytest.mark.parametrize("content", ["", '{"params": {"x": 4}, "res'])
def test_a_truncated_cache_file_is_discarded_with_a_warning(tmp_path, content):
    CALLS.clear()
    folder = tmp_path / "broken"
    folder.mkdir()
    path = folder / f"{trial_key({'x': 4}, sweep_settings['profile'])}.json"
    path.write_text(content)
    with pytest.warns(RuntimeWarning, match="discarding the unreadable cached trial"):
        out = run_trials(_square, [{"x": 4}], experiment="broken", cache=tmp_path)
    assert out[0]["y"] == 16 and CALLS == [4]
    assert json.loads(path.read_text())["result"]["y"] == 16     # rewritten whole


def test_trials_know_they_run_inside_a_sweep(tmp_path):
    out = run_trials(_square, [{"x": 1}], experiment="flag", cache=False)
    assert out[0]["in_sweep"] == "1" and os.environ.get(IN_SWEEP_ENV) is None


def test_no_lightning_bar_inside_a_sweep(monkeypatch):
    """fit_full_batch's default bar is off inside a trial even in a terminal."""
    import sys

    import amlib.training as training

    seen = {}

    class FakeTrainer:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def fit(self, module):
            pass

    monkeypatch.setattr(training.pl, "Trainer", FakeTrainer)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    training.fit_full_batch(object(), 1, 0)
    assert seen["enable_progress_bar"] is True
    monkeypatch.setenv(IN_SWEEP_ENV, "1")
    training.fit_full_batch(object(), 1, 0)
    assert seen["enable_progress_bar"] is False
