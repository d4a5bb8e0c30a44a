"""Summaries and the printed tables of ``influence_step.py`` (speed-ups, memory, decomposition)."""
from __future__ import annotations

SPEED_TARGET, MEMORY_TARGET = 20.0, 10.0
GB = 1e9


def summarise(row: dict, key: str = "ours") -> dict:
    """Speed-up and memory ratios against the original code, and whether the targets hold.

    Memory: ``peak_gb`` is the child's whole peak; ``floor_gb`` the separate floor process's;
    ``attack_gb_above_own_floor`` what the steps add above the same process's floor (its RSS
    after imports and data, where the peak was reset). The ratios against the original are
    ``None`` where there is no original number (``--quick``)."""
    orig, ours = row["original"], row[key]
    cold, warm = ours["cold_step_seconds"], ours["warm_step_seconds"]
    peak = ours["peak_rss_bytes"] / GB
    floor = row["floor"]["peak_rss_bytes"] / GB
    s = {"step_seconds_cold": cold, "step_seconds_warm": warm,
         "peak_gb": peak, "floor_gb": floor, "attack_gb_above_floor": peak - floor,
         "own_floor_gb": ours["floor_rss_bytes"] / GB,
         "attack_gb_above_own_floor": ours["peak_above_floor_bytes"] / GB,
         "n_params": row["n_params"],
         "original_n_params": orig["n_params"] if orig else None}
    if orig is not None:
        s.update(speedup_cold=orig["seconds_min"] / cold,
                 speedup_warm=orig["seconds_min"] / (warm or cold),
                 memory_ratio=orig["peak_gb"] / peak,
                 memory_target_gb=orig["peak_gb"] / MEMORY_TARGET,
                 floor_exceeds_memory_target=floor > orig["peak_gb"] / MEMORY_TARGET)
        s["speed_target_met"] = s["speedup_cold"] >= SPEED_TARGET
        s["memory_target_met"] = s["memory_ratio"] >= MEMORY_TARGET
    worst = max(max(st["residual_a"], st["residual_b"]) for st in ours["steps"])
    s["worst_residual"] = worst
    if "lissa" in row:
        # the stricter of the two comparisons: LiSSA against its own fixed point H + 0.25 I
        s["accuracy_target_met"] = worst <= row["lissa"]["lissa_residual_own_damping_0.25"]
    return s


def _f(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def print_table(rows: list[dict]) -> None:
    head = (f"{'shape':11s} {'p ours':>8s} {'p orig':>8s} | {'orig s':>9s} {'ours cold':>9s} "
            f"{'warm':>6s} {'x':>6s} | {'orig GB':>7s} {'ours GB':>7s} {'floor':>6s} {'+own':>5s} "
            f"{'x':>5s} | {'res ours':>8s} {'LiSSA .25':>9s} {'LiSSA .01':>9s} | naive")
    print(head)
    print("-" * len(head))
    for row in rows:
        for key in [k for k in row if k.startswith("summary") and k != "summary_decomposition"]:
            s = row[key]
            label = row["shape"] + ("" if key == "summary" else "*")
            o = row["original"] or {}
            res_l = row["lissa"]["lissa_residual_own_damping_0.25"] if "lissa" in row else None
            res_l1 = row["lissa"]["lissa_residual_damping_0.01"] if "lissa" in row else None
            naive = row.get("naive")
            if naive is None:
                naive_s = "not run"
            elif "full" in naive:
                naive_s = (f"{naive['full']['seconds']:.1f} s, "
                           f"{naive['full']['total_peak_bytes'] / GB:.2f} GB ({naive['full_iters']} it)")
            else:
                naive_s = (f"skipped (~{naive['predicted_peak_bytes'] / GB:.0f} GB, "
                           f"{naive['full_iters']} it)")
            orig_s = (f"{o['seconds_min']:4.0f}-{o['seconds_max']:<4.0f}" if o else "-")
            print(f"{label:11s} {row['n_params']:8,d} {_f(o.get('n_params'), '8,d'):>8s} | "
                  f"{orig_s:>9s} {s['step_seconds_cold']:9.2f} "
                  f"{_f(s['step_seconds_warm'], '6.2f'):>6s} {_f(s.get('speedup_cold'), '6.1f'):>6s} | "
                  f"{_f(o.get('peak_gb'), '7.2f'):>7s} {s['peak_gb']:7.2f} {s['floor_gb']:6.2f} "
                  f"{s['attack_gb_above_own_floor']:5.2f} {_f(s.get('memory_ratio'), '5.1f'):>5s} | "
                  f"{s['worst_residual']:8.1e} {_f(res_l, '9.2e'):>9s} {_f(res_l1, '9.2e'):>9s} | "
                  f"{naive_s}")
    print("* = --variants plain (the library with unpreconditioned CG); unmarked rows: the "
          "library's default, K-FAC-preconditioned CG; p orig = the original code's parameters; "
          "+own = GB above the same process's floor")
    decs = [(row["shape"], row["summary_decomposition"], row["original"] or {}) for row in rows
            if "summary_decomposition" in row]
    if not decs:
        return
    print()
    head = (f"{'shape':11s} {'p':>8s} | {'orig s':>6s} {'(a) s':>6s} {'impl x':>6s} | "
            f"{'err LiSSA':>9s} {'tol*':>6s} {'(b) s':>6s} {'alg x':>6s} {'x@1e-2':>6s} | "
            f"{'(a) +GB':>7s} {'(b) +GB':>7s} {'floor':>6s}")
    print(head)
    print("-" * len(head))
    for shape, d, original in decs:
        print(f"{shape:11s} {d['n_params']:8,d} | "
              f"{_f(original.get('seconds_min'), '6.0f'):>6s} "
              f"{d['original_algorithm_seconds']:6.2f} {_f(d.get('implementation_factor'), '6.2f'):>6s} | "
              f"{d['lissa_gradient_error_own_system']:9.2e} {_f(d['matched_tol'], '6.0e'):>6s} "
              f"{_f(d.get('ours_matched_seconds'), '6.2f'):>6s} "
              f"{_f(d.get('algorithm_factor_matched'), '6.1f'):>6s} "
              f"{_f(d.get('algorithm_factor_default'), '6.1f'):>6s} | "
              f"{d['original_algorithm_above_floor_gb']:7.2f} "
              f"{_f(d.get('ours_matched_above_floor_gb'), '7.2f'):>7s} {d['floor_in_process_gb']:6.2f}")
    print("(a) the original algorithm (3 LiSSA solves, 2 rankings) in our code; impl x = original "
          "code / (a); (b) our K-FAC CG step at tol*, the loosest tolerance whose attack-gradient "
          "error is at most LiSSA's on its own system; alg x = (a) / (b); x@1e-2 = (a) / ours at "
          "the default tolerance (same process as the accuracy ladder); +GB: peak above the "
          "process's own floor (imports + data)")
