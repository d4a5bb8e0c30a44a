"""Sweeps on a real cluster engine give the same results as the local run."""
import pytest

from amlib.experiments import EXPERIMENTS, register
from amlib.experiments.runner import reproduce
from amlib.experiments.trials import run_trials


def _cube(params):
    import os
    return {"y": params["x"] ** 3, "pid": os.getpid()}


@pytest.fixture
def cube_experiment():
    @register("test-cluster-cubes")
    def run(profile):
        out = run_trials(_cube, [{"x": i} for i in range(6)], experiment="test-cluster",
                         cache=False)
        return {"seed": 0, "config": {}, "results": {"y": [r["y"] for r in out],
                                                     "pids": sorted({r["pid"] for r in out})}}
    yield "test-cluster-cubes"
    EXPERIMENTS.pop("test-cluster-cubes")


def _read(path):
    import json
    return json.loads(path.read_text())["results"]


def test_dask_local_cluster_matches_local_run(cube_experiment, tmp_path):
    distributed = pytest.importorskip("distributed")
    local = _read(reproduce(cube_experiment, "quick", tmp_path / "local"))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        remote = _read(reproduce(cube_experiment, "quick", tmp_path / "dask", backend="dask",
                                 scheduler=cluster.scheduler_address))
    assert remote["y"] == local["y"] == [i ** 3 for i in range(6)]
    assert len(local["pids"]) == 1 and set(remote["pids"]).isdisjoint(local["pids"])


def test_ray_matches_local_run(cube_experiment, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    local = _read(reproduce(cube_experiment, "quick", tmp_path / "local"))
    # Ray's workers import the trial function by module: put this test folder on their path
    # (the runner's own ray.init then joins this instance and shuts it down at the end).
    from pathlib import Path
    ray.init(num_cpus=2, include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}})
    remote = _read(reproduce(cube_experiment, "quick", tmp_path / "ray", backend="ray"))
    assert remote["y"] == local["y"]
    assert set(remote["pids"]).isdisjoint(local["pids"])


def test_starting_r_leaves_worker_processes_working():
    """rpy2 rewrites LD_LIBRARY_PATH; the modeler restores it so spawned workers still start."""
    import os
    import subprocess
    import sys

    from amlib.am.modelers import r_available

    before = os.environ.get("LD_LIBRARY_PATH")
    r_available()
    assert os.environ.get("LD_LIBRARY_PATH") == before
    child = subprocess.run([sys.executable, "-c", "import ssl, json; print('ok')"],
                           capture_output=True, text=True)
    assert child.returncode == 0 and child.stdout.strip() == "ok", child.stderr[-500:]
