"""Tables 1–2, the data of Figs. 2–4 and the detection ROC of the data-valuation experiment
(influence paper, Sec. 4.1), summarised from the cached trials of
:mod:`amlib.experiments.influence_valuation`.

A target counts as a success at a radius when any run reached the top-k within the accuracy
budget (:func:`amlib.influence.valuation.outcome`); a regime picks, per target, the best radius
under its accuracy rule (:func:`amlib.influence.valuation.grid_regimes`), and the per-setting
average rule of :func:`amlib.influence.valuation.regime_table` is reported beside it.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["summarise"]


def _nan(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _regimes(success, drops, labels, max_drop, **keys) -> list[dict]:
    """Table rows: the per-target rule (:func:`grid_regimes`) and, beside it, the per-setting
    average rule (:func:`regime_table`, ``setting_rule_*``)."""
    from ..influence.valuation import grid_regimes, regime_table
    grid = grid_regimes(success, drops, max_drop=max_drop)
    table = regime_table(success, drops, labels, max_drop=max_drop)
    return [{**keys, "regime": regime, "success_rate": grid[regime]["success_rate"],
             "accuracy_drop": _nan(grid[regime]["accuracy_drop"]),
             "n_targets": int(np.asarray(success).shape[1]),
             "setting_rule_success_rate": row["success_rate"],
             "setting_rule_accuracy_drop": _nan(row["accuracy_drop"]),
             "setting_rule_setting": row["setting"]} for regime, row in table.items()]


def _attack_grid(trials, eps_grid, k, starts="all", objective="higher_ranked", max_drop=0.03,
                 keep=None):
    from ..influence.valuation import outcome
    succ, drops = [], []
    for eps in eps_grid:
        outs = [outcome([r for r in t["runs"] if keep is None or keep(r)], eps, k, starts=starts,
                        objective=objective, max_drop=max_drop)
                for t in trials]
        succ.append([o["success"] for o in outs])
        drops.append([o["accuracy_drop"] for o in outs])
    return np.array(succ, dtype=bool), np.array(drops, dtype=float)


def summarise(config: dict, trials: list[dict], results: list[dict]) -> dict:
    """Tables 1–2, the data of Figs. 2–4 and the detection ROC from the trials' results."""
    from ..influence.detection import detection_roc
    from ..influence.valuation import baseline_outcome, outcome
    eps_grid, ks, max_drop = config["eps"], config["ks"], config["max_drop"]
    table1, table2, fig2, transfer, fig4, fig3, detection, datasets = [], [], [], [], [], [], [], []
    for dataset in config["datasets"]:
        mine = [r for p, r in zip(trials, results) if p["dataset"] == dataset]
        tg = [r for r in mine if r["kind"] == "target"]
        if not tg:
            continue
        runs = [run for t in tg for run in t["runs"]]
        main = [run for run in runs if run["objective"] == "higher_ranked"]
        datasets.append({"dataset": dataset, "honest_accuracy": tg[0]["honest_accuracy"],
                         "n_train": tg[0]["n_train"], "n_targets": len(tg),
                         **{k: tg[0]["problem"].get(k) for k in (
                             "n_attack", "n_heldout", "n_classes", "n_params", "l2",
                             "fit_grad_norm", "float32_check", "stand_in")},
                         "runs": len(main), "steps": int(sum(r["steps"] + 1 for r in main)),
                         "step_seconds": float(np.sum([r["seconds"] for r in main])
                                               / max(sum(r["steps"] + 1 for r in main), 1)),
                         "trial_seconds": float(sum(t["seconds"] for t in tg))})
        for k in ks:
            s, d = _attack_grid(tg, eps_grid, k, max_drop=max_drop)
            table1 += _regimes(s, d, eps_grid, max_drop, dataset=dataset, method="attack", k=k)
            for j, eps in enumerate(eps_grid):
                sh, dh = _attack_grid(tg, [eps], k, starts="honest", max_drop=max_drop)
                fig2.append({"dataset": dataset, "k": k, "eps": eps,
                             "success_rate": float(s[j].mean()),
                             "accuracy_drop": _nan(float(np.nanmean(d[j])) if s[j].any()
                                                   else float("nan")),
                             "success_rate_honest_start": float(sh[0].mean()),
                             "n_train": tg[0]["n_train"]})
            base = [r["baseline"] for r in mine if r["kind"] == "baseline"]
            if base:
                per = [baseline_outcome(rows, k) for rows in base]
                bs = np.array([p[0] for p in per]).T
                bd = np.array([p[1] for p in per]).T
                table1 += _regimes(bs, bd, [r["lambda"] for r in base[0]], max_drop,
                                   dataset=dataset, method="baseline", k=k)
        kmin = min(ks)
        abl = [r for r in mine if r["kind"] == "ablation"]
        for row, objective, starts, group in (("max target influence", "max_target", "honest", abl),
                                              ("min top-k influence", "top_k", "honest", abl),
                                              ("min higher-rank influence", "higher_ranked",
                                               "honest", tg),
                                              ("+ random initialisations", "higher_ranked", "all",
                                               tg)):
            if group and any(r["objective"] == objective for t in group for r in t["runs"]):
                s, d = _attack_grid(group, eps_grid, kmin, starts=starts, objective=objective,
                                    max_drop=max_drop)
                table2 += _regimes(s, d, eps_grid, max_drop, dataset=dataset, row=row, k=kmin)
        # transfer: the most accurate successful run of each target, ranked on the held-out half
        held = []
        for t in tg:
            ok = {x["run"]: x["heldout_rank"] for x in t.get("transfer", [])}
            cands = [(t["runs"][i]["reached"][str(kmin)]["accuracy_drop"], ok[i]) for i in ok]
            held.append(min(cands)[1] if cands else None)
        for k in (1, 3, 10, 30, 100):
            transfer.append({"dataset": dataset, "k": k, "n_targets": len(tg),
                             "attack_success_rate": float(np.mean([h is not None for h in held])),
                             "heldout_success_rate": float(np.mean([h is not None and h < k
                                                                    for h in held]))})
        for t in tg:
            fig4.append({"dataset": dataset, "target": t["target"],
                         "initial_rank": t["initial_rank"], "n_train": t["n_train"],
                         **{f"success_k{k}": outcome(t["runs"], max(eps_grid), k)["success"]
                            for k in ks}})
        for r in mine:
            if r["kind"] == "multi":
                for k, entry in r["by_k"].items():
                    for regime, e in entry.items():
                        fig3.append({"dataset": dataset, "n_targets": r["n_targets"],
                                     "lr": r["lr"], "eps": r["eps"], "k": int(k),
                                     "regime": regime, "success_rate": e["success_rate"],
                                     "top_k_share": e["top_k_share"],
                                     "accuracy_drop": _nan(e["accuracy_drop"])})
                best = r["by_k"][str(max(int(k) for k in r["by_k"]))]["high-accuracy"]
                if best.get("final_ranks"):
                    fig4 += [{"dataset": dataset, "multi_target": r["n_targets"],
                              "initial_rank": a, "final_rank": b}
                             for a, b in zip(r["initial_ranks"], best["final_ranks"])]
        honest = [r for r in mine if r["kind"] == "honest"]
        if honest:
            det = config["detection"]
            for kind in dict.fromkeys(("gradient", det["kind"])):
                h = [s[kind] for s in honest[0]["statistics"]]
                for eps in eps_grid + ["all"]:
                    a = [s[kind] for t in tg for s in t.get("statistics", [])
                         if eps == "all" or s["eps"] == eps]
                    if not a:
                        continue
                    roc = detection_roc(h, a)
                    detection.append({"dataset": dataset, "statistic": kind, "eps": eps,
                                      "tpr_at_5pct_fpr": roc["tpr_at_5pct"], "auc": roc["auc"],
                                      "threshold": roc["threshold_at_5pct"],
                                      "n_honest": roc["n_honest"], "n_attacked": roc["n_attacked"],
                                      "fpr": roc["fpr"].tolist(), "tpr": roc["tpr"].tolist(),
                                      "honest": h, "attacked": a})
    check = []
    if config.get("check"):
        chk = config["check"]
        tg = [r for p, r in zip(trials, results) if p["kind"] == "target"
              and p["dataset"] == chk["dataset"]]
        if tg:
            first = {}
            for t in tg:   # the first random start of each target (the search is seed-major)
                seeds = [r["start"] for r in t["runs"] if r["start"] != "honest"]
                first[t["target"]] = seeds[0] if seeds else None

            def reduced(run, t):
                return run["lr"] in chk["lrs"] and (
                    run["start"] == "honest" or (chk["n_random"] >= 1
                                                 and run["start"] == first[t["target"]]))
            for k in ks:
                full = _regimes(*_attack_grid(tg, eps_grid, k, max_drop=max_drop), eps_grid,
                                max_drop, dataset=chk["dataset"], protocol="full", k=k)
                red = []
                s_, d_ = [], []
                for eps in eps_grid:
                    outs = [outcome([r for r in t["runs"] if reduced(r, t)], eps, k,
                                    max_drop=max_drop) for t in tg]
                    s_.append([o["success"] for o in outs])
                    d_.append([o["accuracy_drop"] for o in outs])
                red = _regimes(np.array(s_, bool), np.array(d_, float), eps_grid, max_drop,
                               dataset=chk["dataset"], protocol="reduced", k=k)
                check += full + red
    size_rows = []
    if config.get("size"):
        sz = config["size"]
        for n_train in sz["n_train"] + [None]:
            if n_train is None:
                group = [r for p, r in zip(trials, results) if p["kind"] == "target"
                         and p["dataset"] == sz["dataset"] and p["index"] < sz["n_targets"]]
            else:
                group = [r for p, r in zip(trials, results) if p["kind"] == "size"
                         and p["n_train"] == n_train]
            if not group:
                continue
            for k in ks:
                for eps in sz["eps"]:
                    s, _ = _attack_grid(group, [eps], k, starts="honest", max_drop=max_drop)
                    size_rows.append({"dataset": sz["dataset"], "n_train": group[0]["n_train"],
                                      "k": k, "eps": eps, "success_rate": float(s.mean()),
                                      "n_targets": len(group)})
    return {"datasets": datasets, "table1": table1, "table2": table2, "fig2_radius": fig2,
            "fig2_training_size": size_rows, "fig2_transfer": transfer, "fig3": fig3,
            "fig4": fig4, "detection": detection, "reduction_check": check}
