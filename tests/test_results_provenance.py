"""Committed results have clean provenance, and regenerate within a stated tolerance.

Every file in ``results/`` must record the commit it was computed at, without ``-dirty``, and
that commit must be an ancestor of the checkout's HEAD (results computed on a branch that was
never merged, or on uncommitted code, cannot be reproduced from the repository).

Re-running ``am-table3`` is bit-identical on the same machine (same OpenBLAS kernel and thread
count). A different OpenBLAS kernel — selected by the CPU, or by ``OPENBLAS_CORETYPE`` as some
machines set — sums in another order and moves the last digits: measured 1.7e-11 relative
(Haswell vs SkylakeX kernels, 215 of 880 numbers differ). The stated tolerance is 1e-9.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = sorted((ROOT / "results").glob("*.json"))
TOLERANCE = 1e-9
# Not yet regenerated from a clean tree: the influence benchmark (about 11 minutes on an idle
# 2-core machine, and its timings need one).  Marked strict, so a clean regeneration makes this
# test fail until the entry is removed.
#: results allowed (as strict xfail) to record a dirty tree until they are rerun; none today
NOT_YET_CLEAN: dict[str, str] = {}


def _git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def _in_git_checkout() -> bool:
    return _git("rev-parse", "HEAD").returncode == 0


@pytest.mark.parametrize("path", [
    pytest.param(p, marks=pytest.mark.xfail(reason=NOT_YET_CLEAN[p.name], strict=True))
    if p.name in NOT_YET_CLEAN else p for p in RESULTS], ids=[p.name for p in RESULTS])
def test_committed_results_record_a_clean_ancestor_commit(path):
    if not _in_git_checkout():
        pytest.skip("not a git checkout")
    record = json.loads(path.read_text())
    provenance = record.get("provenance") or record.get("meta") or {}
    commit = provenance.get("git_commit")
    assert commit, f"{path.name} records no git commit"
    assert not commit.endswith("-dirty"), \
        f"{path.name} was computed from a dirty tree ({commit}): regenerate it from a clean commit"
    if _git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        pytest.skip(f"{commit} is not in this clone (a shallow clone?)")
    ancestor = _git("merge-base", "--is-ancestor", commit, "HEAD")
    assert ancestor.returncode == 0, f"{path.name}: {commit} is not an ancestor of HEAD"


def _numbers(value, prefix=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{prefix}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _numbers(item, f"{prefix}[{index}]")
    elif isinstance(value, float):
        yield prefix, value


def test_table3_regenerates_within_tolerance_under_another_blas_kernel(tmp_path, mirror):
    committed = ROOT / "results" / "am-table3.json"
    if not committed.is_file():
        pytest.skip("results/am-table3.json is not committed")
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell", AMLIB_DATA_MIRROR=str(mirror),
               AMLIB_TRIAL_CACHE=str(tmp_path / "trials"))   # recompute: no trial from the cache
    run = subprocess.run([sys.executable, "-m", "amlib.cli", "reproduce", "am-table3",
                          "--profile", "paper", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    fresh = dict(_numbers(json.loads((tmp_path / "am-table3.json").read_text())["results"]))
    old = dict(_numbers(json.loads(committed.read_text())["results"]))
    assert fresh.keys() == old.keys()
    worst = max(abs(fresh[k] - old[k]) / max(abs(old[k]), 1e-300) for k in old)
    assert worst <= TOLERANCE, f"am-table3 moved by {worst:.2e} relative (tolerance {TOLERANCE})"
