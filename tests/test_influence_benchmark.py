"""The influence benchmark's machinery at a tiny size (``benchmarks/influence_step.py --quick``).

Every child process of the real benchmark runs (problem, floor, our step in both variants,
LiSSA, the unrolled solver, and the decomposition: the original algorithm in our code, the
attack-gradient accuracy ladder, our step at the matched tolerance). Only deterministic facts are
asserted — shapes, parameter counts, solver accuracies, the matching rule, bookkeeping — never a
time.
"""
import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("influence_step",
                                                  ROOT / "benchmarks" / "influence_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load_benchmark()


@pytest.fixture(scope="module")
def quick(bench, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("influence-benchmark")
    out = tmp / "bench.json"
    bench.main(["--quick", "--threads", "1", "--workdir", str(tmp / "problems"),
                "--out", str(out)])
    return json.loads(out.read_text())


def test_parameter_counts_label_both_sides(bench):
    # the original code ran on 1280-d features; the paper's shapes are 2048-d
    assert bench.ORIGINAL["caltech101"]["n_params"] == 129_381 == 1281 * 101
    assert bench.ORIGINAL["pet"]["n_params"] == 1281 * 37
    assert bench.ORIGINAL["cifar10"]["n_params"] == 1281 * 10
    assert all(bench.ORIGINAL[s]["d"] == 1280 for s in bench.SHAPES)
    assert (bench.D_FEATURES + 1) * bench.SHAPES["caltech101"]["classes"] == 206_949


def test_quick_rows_and_memory_fields(quick):
    config = quick["provenance"]["config"]
    assert config["quick"] and config["d"] == 64 and config["original_d"] == 48
    (row,) = quick["rows"]
    assert row["shape"] == "tiny" and row["original"] is None
    assert row["n_params"] == 65 * 5
    for key in ("summary", "summary_plain"):
        s = row[key]
        assert s["original_n_params"] is None and "speedup_cold" not in s
        assert s["worst_residual"] <= 1.01 * config["tol"]
        assert s["own_floor_gb"] > 0 and s["attack_gb_above_own_floor"] >= 0
        # the in-process floor is below the process's whole peak
        assert s["own_floor_gb"] <= s["peak_gb"]
    assert len(row["ours"]["steps"]) == config["steps"]


def test_decomposition_original_algorithm(quick):
    dec = quick["rows"][0]["decomposition"]
    assert dec["d"] == 48 and dec["n_params"] == 49 * 5
    orig = dec["original_algorithm"]
    assert orig["solves"] == 3 and orig["rankings"] == 2
    assert math.isclose(orig["effective_damping"], 0.25)   # damp 0.01 × scale 25
    step = orig["steps"][0]
    assert step["lissa_hvp_batches"] == math.ceil(1_000_000 / 1024) == 977
    assert orig["target"] == dec["accuracy"]["target"]
    assert orig["floor_rss_bytes"] > 0 and orig["peak_above_floor_bytes"] >= 0


def test_decomposition_equal_accuracy(quick):
    acc = quick["rows"][0]["decomposition"]["accuracy"]
    ref = acc["reference"]
    assert ref["residual_0.01"] <= ref["tol"] and ref["residual_0.25"] <= ref["tol"]
    lissa = acc["lissa"]
    # LiSSA solves H + 0.25 I: close to its own fixed point, far from H + 0.01 I
    assert lissa["gradient_error_own_system"] < 0.1 < lissa["gradient_error_0.01"]
    ladder = acc["ladder"]
    assert [p["tol"] for p in ladder] == sorted((p["tol"] for p in ladder), reverse=True)
    assert ladder[-1]["gradient_error"] < ladder[0]["gradient_error"]
    own = lissa["gradient_error_own_system"]
    matched = acc["matched_tol"]
    assert matched is not None   # at this size a ladder tolerance reaches LiSSA's accuracy
    # the rule: the loosest tolerance whose gradient error is at most LiSSA's
    assert next(p for p in ladder if p["tol"] == matched)["gradient_error"] <= own
    assert all(p["gradient_error"] > own for p in ladder if p["tol"] > matched)


def test_decomposition_summary_is_consistent(quick):
    row = quick["rows"][0]
    s, dec = row["summary_decomposition"], row["decomposition"]
    ours = dec["ours_matched"]
    assert ours["solver_opts"]["tol"] == s["matched_tol"]
    assert ours["target"] == dec["accuracy"]["target"] and len(ours["steps"]) == 1
    assert math.isclose(s["algorithm_factor_matched"],
                        s["original_algorithm_seconds"] / s["ours_matched_seconds"])
    assert s["ours_matched_worst_residual"] <= 1.01 * s["matched_tol"]
    assert "implementation_factor" not in s   # no original numbers at the tiny shape
    assert s["n_params"] == dec["n_params"]
