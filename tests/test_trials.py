"""The trial runner: ordered results, caching, resuming after an interruption."""
import json

import pytest

from amlib.experiments.trials import run_trials, trial_key

CALLS = []


def square(params):
    CALLS.append(params["x"])
    if params.get("fail"):
        raise RuntimeError("trial failed on purpose")
    return {"y": params["x"] ** 2}


def test_results_come_back_in_order(tmp_path):
    out = run_trials(square, [{"x": i} for i in range(5)], experiment="sq", cache=tmp_path, n_jobs=1)
    assert [r["y"] for r in out] == [0, 1, 4, 9, 16]


def test_cached_trials_are_not_rerun_and_a_failed_sweep_resumes(tmp_path):
    CALLS.clear()
    trials = [{"x": 1}, {"x": 2}, {"x": 3, "fail": True}]
    with pytest.raises(RuntimeError):
        run_trials(square, trials, experiment="resume", cache=tmp_path)
    assert len(list((tmp_path / "resume").glob("*.json"))) == 2
    CALLS.clear()
    trials[2] = {"x": 3}
    out = run_trials(square, trials, experiment="resume", cache=tmp_path)
    assert CALLS == [3] and [r["y"] for r in out] == [1, 4, 9]
    stored = json.loads((tmp_path / "resume" / f"{trial_key({'x': 3})}.json").read_text())
    assert stored == {"params": {"x": 3}, "result": {"y": 9}}


def test_parallel_matches_serial(tmp_path):
    trials = [{"x": i} for i in range(6)]
    assert run_trials(square, trials, experiment="p", cache=False, n_jobs=2) == \
        run_trials(square, trials, experiment="s", cache=False, n_jobs=1)


def test_parallel_failure_falls_back_to_serial_with_a_warning(tmp_path, monkeypatch):
    import amlib.experiments.trials as trials_module

    class BrokenParallel:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, jobs):
            raise OSError("cannot start worker processes")

    monkeypatch.setattr(trials_module, "Parallel", BrokenParallel)
    trials = [{"x": i} for i in range(4)]
    with pytest.warns(RuntimeWarning, match="4 remaining trial"):
        out = run_trials(square, trials, experiment="fallback", cache=tmp_path, n_jobs=2)
    assert [r["y"] for r in out] == [0, 1, 4, 9]


def test_a_failing_trial_still_raises_when_run_in_parallel(tmp_path):
    trials = [{"x": 1}, {"x": 2, "fail": True}]
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="on purpose"):
        run_trials(square, trials, experiment="pfail", cache=False, n_jobs=2)


def test_key_ignores_order():
    assert trial_key({"a": 1, "b": 2}) == trial_key({"b": 2, "a": 1})
    assert trial_key({"a": 1}) != trial_key({"a": 2})


def test_run_profile_runs_the_profiles_grid(tmp_path, monkeypatch):
    from amlib.experiments.trials import run_profile

    monkeypatch.setenv("AMLIB_TRIAL_CACHE", str(tmp_path))
    profiles = {"quick": {"xs": [1, 2], "n_jobs": 1}, "paper": {"xs": [1, 2, 3], "n_jobs": 1}}
    grid = lambda config: [{"x": x} for x in config["xs"]]  # noqa: E731
    config, trials, results = run_profile(square, grid, profiles, "paper", experiment="sq")
    assert config is profiles["paper"] and trials == [{"x": 1}, {"x": 2}, {"x": 3}]
    assert [r["y"] for r in results] == [1, 4, 9]
    assert len(list((tmp_path / "sq-paper").glob("*.json"))) == 3
    with pytest.raises(KeyError, match="no profile 'huge'"):
        run_profile(square, grid, profiles, "huge", experiment="sq")
