"""The influence benchmark's decomposition of the speed-up over the original code (issue 13).

``influence_step.py`` compares our attack step with the authors' code, whose times (issue 5 of
this project) were measured on the project's 1280-d features. Two things differ between the
two: the implementation and the algorithm. This module measures them apart, at the original
code's shape (``--original-d``, 1280-d features by default: 129,381 parameters at Caltech-101),
each measurement in a fresh process started by ``influence_step.py``:

(a) ``role_original`` — the **original algorithm run in our code**: per step two rankings, each
    with its own LiSSA solve of s_a = H⁻¹G_test (scale 25, damp 0.01, 10⁶ samples in batches of
    1024 = 977 batch HVPs; fixed point H + 0.25 I), then a third LiSSA solve of s_b, the
    surrogate's gradient (influence paper, Alg. 1, the "min higher-rank influence" objective of
    Eq. 4), Adam and the projection. Its time against the original code's time is the
    *implementation* factor.
(b) ``role_accuracy`` — **equal accuracy of the attack gradient**. At the honest θ* and the
    coefficients c of the median-ranked target (from a reference ranking), the attack gradient
    ∇_θ cᵀv(θ) (the surrogate's gradient, Alg. 1) is computed in float64 with reference CG
    solves to the relative residual ``REF_RTOL`` (an error below κ·1e-8, κ ≤ (λ_max + δ)/δ), on
    H + 0.01 I and on
    LiSSA's own fixed point H + 0.25 I. LiSSA's gradient error is measured against its own
    fixed point (the comparison most favourable to LiSSA) and against H + 0.01 I. Our default
    algorithm (K-FAC-preconditioned CG on H + 0.01 I) is run at each tolerance of ``LADDER``; the
    **matched tolerance** is the loosest whose gradient error is at most LiSSA's own-system error.
    ``influence_step.py`` then times our step at that tolerance (``role_ours``): original
    algorithm / ours-at-matched-tolerance is the *algorithm* factor at equal accuracy.
(c) memory above the process floor, measured in the same process: every role records its
    resident set after the imports and the data load (``floor_mark``: Python, torch, amlib with
    the attack module and Lightning, the data) and resets the peak there (Linux ``clear_refs``),
    so that ``peak_above_floor_bytes`` is what the measured work adds; the total is the child's
    ``ru_maxrss``.
"""
from __future__ import annotations

import time

#: the original code's LiSSA (influence notes: scale 25, damp 0.01, 10⁶ samples, batch 1024)
LISSA = {"lissa_scale": 25.0, "lissa_damping": 0.01, "lissa_samples": 1_000_000,
         "lissa_batch": 1024}
#: solves and rankings per step of the original code (issue 13)
ORIGINAL_STEP = {"solves": 3, "rankings": 2}
#: CG tolerances (relative residual) tried for the equal-accuracy match, loosest first
LADDER = (0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4)
#: relative residual of the reference solves (K-FAC CG in float64)
REF_RTOL = 1e-8


# ----------------------------------------------------------------------------------------------
# (c) peak resident memory above the floor of the same process
# ----------------------------------------------------------------------------------------------
def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return -1


def vm_hwm_bytes() -> int:
    """Peak resident set of this process so far (``VmHWM``), bytes."""
    return _status_bytes("VmHWM")


def reset_peak() -> int:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); return that RSS (−1: no reset)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return -1
    return _status_bytes("VmRSS")


def floor_mark() -> dict:
    """Mark the process floor (imports and data done, no work yet) and reset the peak there.

    Where the peak cannot be reset, the floor is the peak so far, so that the work's increase is
    never overstated."""
    rss = reset_peak()
    if rss < 0:
        return {"floor_rss_bytes": vm_hwm_bytes(), "peak_reset": False}
    return {"floor_rss_bytes": rss, "peak_reset": True}


def above_floor(mark: dict) -> dict:
    """The floor and the peak the work since ``floor_mark`` reached above it."""
    peak = vm_hwm_bytes()
    return {**mark, "work_peak_bytes": peak,
            "peak_above_floor_bytes": max(0, peak - mark["floor_rss_bytes"])}


def relative_error(g, ref) -> float:
    g = g.to(ref.dtype)
    return float((g - ref).norm() / ref.norm())


# ----------------------------------------------------------------------------------------------
# (a) the original algorithm in our code
# ----------------------------------------------------------------------------------------------
def role_original(args, setup, *, k: int, eps: float, lr: float) -> dict:
    """``--original-steps`` steps of the original algorithm (3 LiSSA solves, 2 rankings) at θ*.

    ``--target`` is the target (the reference ranking's median point, from ``role_accuracy``)."""
    import torch

    from amlib.influence import (InverseHVP, attack_coefficients, project_to_ball,
                                 surrogate_gradient, values_and_ranks)

    model, X, y, Xt, yt, theta_star, meta = setup(args)
    mark = floor_mark()
    theta = torch.nn.Parameter(theta_star.clone())
    radius = eps * float(theta_star.norm())
    optimizer = torch.optim.Adam([theta], lr=lr)
    steps = []
    for step in range(args.original_steps):
        t0 = time.perf_counter()
        th = theta.detach()
        rankings = []
        for r in range(ORIGINAL_STEP["rankings"]):   # each ranking solves s_a afresh
            solver = InverseHVP(model, th, X, method="lissa", damping=0.0,
                                seed=ORIGINAL_STEP["solves"] * step + r, **LISSA)
            rankings.append(values_and_ranks(model, th, X, y, Xt, yt, solver=solver))
        t1 = time.perf_counter()
        last = rankings[-1]
        c = attack_coefficients(last.values, args.target, k, "higher_ranked")
        solver_b = InverseHVP(model, th, X, method="lissa", damping=0.0,
                              seed=ORIGINAL_STEP["solves"] * step + 2, **LISSA)
        out = surrogate_gradient(model, th, X, y, Xt, yt, c, s_a=last.ihvp_info.solution,
                                 solver=solver_b)
        t2 = time.perf_counter()
        optimizer.zero_grad()
        theta.grad = out.grad.to(theta.dtype)
        optimizer.step()
        with torch.no_grad():
            theta.copy_(project_to_ball(theta, theta_star, radius))
        t3 = time.perf_counter()
        steps.append({"step": step, "seconds": t3 - t0, "rank_seconds": t1 - t0,
                      "surrogate_seconds": t2 - t1, "update_seconds": t3 - t2,
                      "target_rank": int(last.ranks()[args.target]),
                      "lissa_hvp_batches": int(last.ihvp_info.iterations),
                      "residual_a_own_system": float(last.ihvp_info.relative_residual),
                      "residual_b_own_system": float(out.ihvp_info.relative_residual)})
    return {"target": int(args.target), "steps": steps, "lissa": dict(LISSA), **ORIGINAL_STEP,
            "effective_damping": float(solver_b.effective_damping), **above_floor(mark)}


# ----------------------------------------------------------------------------------------------
# (b) the attack gradient's accuracy: LiSSA vs CG tolerances
# ----------------------------------------------------------------------------------------------
def role_accuracy(args, setup, *, k: int, damping: float) -> dict:
    """Attack-gradient errors of LiSSA and of K-FAC CG at each tolerance of ``LADDER``.

    The gradient is ∇_θ cᵀv(θ) at θ* for the median-ranked target's coefficients c (fixed for
    every solver, so that only the solves differ), computed by
    :func:`amlib.influence.surrogate_gradient`; errors are relative 2-norm distances to the
    reference gradient of the same system. Each CG point is a full cold step's work (a ranking
    with s_a, the coefficients, s_b and the gradient), timed."""
    from amlib.influence import (FeatureGram, InverseHVP, attack_coefficients,
                                 surrogate_gradient, values_and_ranks)

    model, X, y, Xt, yt, theta, meta = setup(args)
    mark = floor_mark()
    start = time.perf_counter()
    gram = FeatureGram.from_features(model, X)
    kfac = {"precondition": "kfac", "gram": gram}
    # the references, in float64 (the ranking that picks the target, c, and both gradients)
    X64, Xt64, th64 = X.double(), Xt.double(), theta.double()
    tight = {"tol": REF_RTOL, "max_iter": 10_000, "precondition": "kfac",
             "gram": FeatureGram.from_features(model, X64)}
    ref_solver = InverseHVP(model, th64, X64, method="cg", damping=damping, **tight)
    honest = values_and_ranks(model, th64, X64, y, Xt64, yt, solver=ref_solver)
    rank0 = honest.ranks()
    target = int((rank0 == len(rank0) // 2).nonzero()[0, 0])   # the median-ranked point
    c64 = attack_coefficients(honest.values, target, k, "higher_ranked")
    c = c64.to(X.dtype)
    ref = surrogate_gradient(model, th64, X64, y, Xt64, yt, c64, s_a=honest.ihvp_info.solution,
                             solver=ref_solver)
    lissa_damping = LISSA["lissa_damping"] * LISSA["lissa_scale"]
    ref25_solver = InverseHVP(model, th64, X64, method="cg", damping=lissa_damping, **tight)
    ref25 = surrogate_gradient(model, th64, X64, y, Xt64, yt, c64, solver=ref25_solver)
    refs = {"0.01": ref.grad, "0.25": ref25.grad}
    ref_info = {"tol": REF_RTOL, "dtype": "float64",
                "iterations_0.01": [int(honest.ihvp_info.iterations), int(ref.ihvp_info.iterations)],
                "residual_0.01": max(float(honest.ihvp_info.relative_residual),
                                     float(ref.ihvp_info.relative_residual)),
                "iterations_0.25": int(ref25.ihvp_info.iterations),
                "residual_0.25": float(ref25.ihvp_info.relative_residual),
                "seconds": time.perf_counter() - start}
    del X64, Xt64, ref_solver, ref25_solver, tight
    t0 = time.perf_counter()
    lissa_solver = InverseHVP(model, theta, X, method="lissa", damping=0.0, seed=0, **LISSA)
    lis = surrogate_gradient(model, theta, X, y, Xt, yt, c, solver=lissa_solver)
    lissa = {"seconds_two_rhs": time.perf_counter() - t0,
             "effective_damping": float(lissa_solver.effective_damping),
             "gradient_error_own_system": relative_error(lis.grad, refs["0.25"]),
             "gradient_error_0.01": relative_error(lis.grad, refs["0.01"]),
             "residual_own_system": float(lis.ihvp_info.relative_residual)}
    ladder = []
    for tol in LADDER:
        t0 = time.perf_counter()
        solver = InverseHVP(model, theta, X, method="cg", damping=damping, tol=tol, **kfac)
        rk = values_and_ranks(model, theta, X, y, Xt, yt, solver=solver)
        attack_coefficients(rk.values, target, k, "higher_ranked")   # a step's work, timed
        out = surrogate_gradient(model, theta, X, y, Xt, yt, c, s_a=rk.ihvp_info.solution,
                                 solver=solver)
        ladder.append({"tol": tol, "step_seconds": time.perf_counter() - t0,
                       "cg_iters_a": int(rk.ihvp_info.iterations),
                       "cg_iters_b": int(out.ihvp_info.iterations),
                       "gradient_error": relative_error(out.grad, refs["0.01"]),
                       "target_rank": int(rk.ranks()[target])})
    own = lissa["gradient_error_own_system"]
    matched = [p for p in ladder if p["gradient_error"] <= own]
    return {"target": target, "target_rank_reference": int(rank0[target]), "reference": ref_info,
            "lissa": lissa, "ladder": ladder,
            "matched_tol": max(p["tol"] for p in matched) if matched else None,
            "criterion": "loosest CG tolerance whose attack-gradient error on H + 0.01 I is at "
                         "most LiSSA's attack-gradient error on its own fixed point H + 0.25 I",
            **above_floor(mark)}


def summarise_decomposition(dec: dict, original: dict | None, tol: float) -> dict:
    """(a) implementation, (b) algorithm at equal accuracy, (c) memory above the floor."""
    orig_alg = dec["original_algorithm"]
    alg_s = orig_alg["steps"][0]["seconds"]
    acc = dec["accuracy"]
    default = next((p for p in acc["ladder"] if abs(p["tol"] - tol) <= 1e-12 * tol), None)
    matched = dec.get("ours_matched")
    s = {"d": dec["d"], "n_params": dec["n_params"],
         "original_algorithm_seconds": alg_s,
         "matched_tol": acc["matched_tol"],
         "lissa_gradient_error_own_system": acc["lissa"]["gradient_error_own_system"],
         "lissa_gradient_error_0.01": acc["lissa"]["gradient_error_0.01"],
         "ours_default_ladder_seconds": default["step_seconds"] if default else None,
         "ours_default_gradient_error": default["gradient_error"] if default else None,
         "original_algorithm_above_floor_gb": orig_alg["peak_above_floor_bytes"] / 1e9,
         "original_algorithm_total_gb": orig_alg["peak_rss_bytes"] / 1e9,
         "floor_in_process_gb": orig_alg["floor_rss_bytes"] / 1e9}
    if default:
        s["algorithm_factor_default"] = alg_s / default["step_seconds"]
    if matched is not None:
        ms = matched["steps"][0]["seconds"]
        s.update(ours_matched_seconds=ms, algorithm_factor_matched=alg_s / ms,
                 ours_matched_above_floor_gb=matched["peak_above_floor_bytes"] / 1e9,
                 ours_matched_total_gb=matched["peak_rss_bytes"] / 1e9,
                 ours_matched_worst_residual=max(max(st["residual_a"], st["residual_b"])
                                                 for st in matched["steps"]))
    if original is not None:
        s["implementation_factor"] = original["seconds_min"] / alg_s
        if matched is not None:
            s["total_factor_matched"] = original["seconds_min"] / s["ours_matched_seconds"]
    return s
