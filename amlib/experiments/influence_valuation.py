"""Influence paper, Sec. 4.1: targeted attacks on data valuation (Tables 1–2, Figs. 2–4) and a
stationarity test that catches them (beyond the paper).

Features: EfficientNet-Lite0 on the offline image subsets (:func:`amlib.data.features.image_features`;
the paper: ResNet50 on the full data sets); ``synthetic`` Gaussian classes of the same width for
tests. Protocol of one target: :func:`amlib.influence.valuation.search_target` (nested radius
grid, stop at the first success within 3 points; see its docstring). Trials, each cached:

- ``target``: one target of one data set — the attack (θ* then random starts), the ablation's
  other objectives (θ* only), the loss-reweighing baseline, the held-out rank of every successful
  θ′ (transfer) and the stationarity statistics of those θ′ (detection);
- ``multi``: one multi-target run (Eq. 5) of a target-set size;
- ``size``: one target on a random subset of the training set (training-set size, Fig. 2);
- ``honest``: the stationarity statistics of honest fits of one data set (detection ROC).
"""
from __future__ import annotations

import math
import time

import numpy as np

from . import register
from .trials import run_trials

__all__ = ["PROFILES", "DATASETS", "synthetic_features", "load_problem", "trial_grid",
           "run_trial", "summarise", "run"]

DATASETS = ("pets", "caltech101", "cifar10")
_COMMON = {"l2": 1e-3, "damping": 0.25, "dtype": "float32", "tol": 1e-3, "precondition": False,
           "eps": [0.05, 0.1, 0.5], "lrs": [0.1, 0.01], "steps": 100, "lr_drop_step": 50,
           "ks": [1, 10], "max_drop": 0.03, "target_seed": 0, "patience": None}
PROFILES = {
    "paper": {**_COMMON, "datasets": list(DATASETS), "n_targets": 50, "n_random": 4,
              "ablation": ["max_target", "top_k"], "n_ablation": 50,
              "lambdas": [1.0, 10.0, 100.0, 1e3, 1e4, 1e5], "n_baseline": 50,
              "multi": {"sizes": [5, 10, 25, 50, 100], "ks": [1, 5, 10, 25, 50], "eps": 0.5,
                        "lrs": [0.1]},
              "size": {"dataset": "cifar10", "n_train": [250, 1000, 2500], "n_targets": 20,
                       "eps": [0.05, 0.1], "n_random": 0},
              "detection": {"n_honest": 20, "kind": "newton", "tol": 1e-6,
                            "optimisers": ["lbfgs", "newton", "adam"],
                            "datasets": ["pets", "cifar10"]},
              "n_jobs": 2},
    "quick": {**_COMMON, "datasets": ["pets"], "n_targets": 6, "n_random": 1,
              "eps": [0.05, 0.5], "lrs": [0.1], "steps": 40, "lr_drop_step": 20,
              "ablation": ["max_target"], "n_ablation": 6, "lambdas": [10.0, 1e3, 1e5],
              "n_baseline": 6,
              "multi": {"sizes": [10, 25], "ks": [1, 5, 10, 25], "eps": 0.5, "lrs": [0.1]},
              "size": None,
              "detection": {"n_honest": 19, "kind": "newton", "tol": 1e-6,
                            "optimisers": ["lbfgs", "newton"], "datasets": ["pets"]},
              "n_jobs": 1},
}

_PROBLEMS: dict = {}


def synthetic_features(n_train: int = 120, n_test: int = 80, n_classes: int = 5, dim: int = 1280,
                       separation: float = 0.5, seed: int = 0):
    """Gaussian classes with the features' width: a stand-in with the FeatureSet interface.

    Class c's rows are N(μ_c, I) with μ_c ~ N(0, separation²·I); the test part is halved into
    ``attack`` and ``heldout`` (train, attack, heldout index arrays in ``split``).
    """
    from types import SimpleNamespace
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=separation, size=(n_classes, dim))
    n = n_train + n_test
    y = np.concatenate([np.arange(n_classes), rng.integers(0, n_classes, n - n_classes)])
    X = (rng.normal(size=(n, dim)) + centres[y]).astype(np.float32)
    train = np.arange(n_train)
    mean, std = X[train].mean(0), X[train].std(0)
    X = ((X - mean) / std).astype(np.float32)
    half = n_train + n_test // 2
    split = {"train": train, "attack": np.arange(n_train, half), "heldout": np.arange(half, n)}
    return SimpleNamespace(name="synthetic", X=X, y=y.astype(np.int64), split=split,
                           class_names=[f"class {c}" for c in range(n_classes)],
                           stand_in=f"synthetic Gaussian classes ({dim}-d)")


def _features(dataset: str):
    if dataset.startswith("synthetic"):
        # "synthetic" or "synthetic-<n_train>-<n_test>-<classes>"
        parts = [int(p) for p in dataset.split("-")[1:]]
        return synthetic_features(*parts)
    from ..data.features import image_features
    return image_features(dataset, progress=False)


def load_problem(dataset: str, config: dict, n_train: int | None = None, subset_seed: int = 0):
    """The :class:`~amlib.influence.valuation.ValuationProblem` of a data set (cached per process).

    ``n_train``: a random subset of that many training rows (seed ``subset_seed``).
    """
    import torch

    from ..influence.valuation import valuation_problem
    key = (dataset, n_train, subset_seed) + tuple(
        config[k] for k in ("l2", "damping", "dtype", "tol", "precondition"))
    if key not in _PROBLEMS:
        torch.set_num_threads(1)
        fs = _features(dataset)
        train = np.asarray(fs.split["train"])
        if n_train is not None:
            if n_train > len(train):
                raise ValueError(f"{dataset} has {len(train)} training rows, not {n_train}")
            train = np.sort(np.random.default_rng(subset_seed).permutation(train)[:n_train])
        parts = [(fs.X[idx], fs.y[idx]) for idx in (train, fs.split["attack"], fs.split["heldout"])]
        problem = valuation_problem(*parts[0], *parts[1], *parts[2], l2=config["l2"],
                                    damping=config["damping"], dtype=getattr(torch, config["dtype"]),
                                    tol=config["tol"], precondition=config["precondition"],
                                    n_classes=len(fs.class_names))
        problem.info.update(stand_in=fs.stand_in, n_train=len(train),
                            n_attack=len(fs.split["attack"]), n_heldout=len(fs.split["heldout"]),
                            n_classes=len(fs.class_names))
        _PROBLEMS.clear()   # one data set per process at a time keeps memory flat
        _PROBLEMS[key] = problem
    return _PROBLEMS[key]


def _protocol(config: dict) -> dict:
    return {k: config[k] for k in ("l2", "damping", "dtype", "tol", "precondition", "eps", "lrs",
                                   "steps", "lr_drop_step", "ks", "max_drop", "target_seed",
                                   "patience")}


def dataset_config(config: dict, dataset: str) -> dict:
    """The profile's settings for one data set (``overrides[dataset]`` on top of the rest)."""
    return {**config, **config.get("overrides", {}).get(dataset, {})}


def trial_grid(config: dict) -> list[dict]:
    """Every trial of a profile (data sets interleaved so parallel workers share one data set)."""
    trials = []
    for dataset in config["datasets"]:
        base = config
        config = dataset_config(base, dataset)
        proto = _protocol(config)
        for i in range(config["n_targets"]):
            trials.append({"kind": "target", "dataset": dataset, "index": i, **proto,
                           "n_random": config["n_random"],
                           "ablation": config["ablation"] if i < config["n_ablation"] else [],
                           "lambdas": config["lambdas"] if i < config["n_baseline"] else [],
                           "detection": config["detection"]
                           if dataset in config["detection"]["datasets"] else None})
        multi = config["multi"]
        for size in multi["sizes"]:
            for lr in multi["lrs"]:
                trials.append({"kind": "multi", "dataset": dataset, "size": size, "lr": lr,
                               "multi_eps": multi["eps"], "multi_ks": multi["ks"], **proto})
        if dataset in config["detection"]["datasets"]:
            trials.append({"kind": "honest", "dataset": dataset, **proto,
                           "detection": config["detection"]})
        config = base
    proto = _protocol(config)
    size = config.get("size")
    if size:
        for n_train in size["n_train"]:
            for i in range(size["n_targets"]):
                trials.append({"kind": "size", "dataset": size["dataset"], "n_train": n_train,
                               "index": i, **proto, "eps": size["eps"],
                               "n_random": size["n_random"]})
    return trials


def _statistics(problem, thetas, detection: dict) -> list[dict]:
    from ..influence.detection import stationarity_statistic
    out = []
    for theta in thetas:
        out.append({kind: stationarity_statistic(problem.X, problem.y, theta, problem.info["l2"],
                                                 n_classes=problem.model.n_classes, kind=kind,
                                                 tol=detection["tol"])
                    for kind in ("gradient", detection["kind"])})
    return out


def run_trial(params: dict) -> dict:
    """One trial (see the module docstring); JSON-serialisable."""
    from ..influence.valuation import (baseline_target, heldout_rank, multi_target, pick_targets,
                                       search_target)
    start = time.perf_counter()
    kind = params["kind"]
    problem = load_problem(params["dataset"], params, params.get("n_train"))
    common = dict(eps_grid=params["eps"], lrs=params["lrs"], ks=params["ks"],
                  steps=params["steps"], lr_drop_step=params["lr_drop_step"],
                  max_drop=params["max_drop"], patience=params["patience"])
    out = {"kind": kind, "dataset": params["dataset"],
           "honest_accuracy": problem.honest_accuracy, "n_train": problem.n}
    if kind in ("target", "size"):
        target = pick_targets(problem, params["index"] + 1, max(params["ks"]),
                              seed=params["target_seed"])[-1]
        found = search_target(problem, target, n_random=params["n_random"], keep_thetas=True,
                              seed=params["target_seed"], **common)
        out.update(target=target, initial_rank=found["initial_rank"], runs=found["runs"])
        thetas = [theta for _, theta in found["thetas"]]
        out["transfer"] = [{"run": i, "heldout_rank": heldout_rank(problem, theta, target)}
                           for (i, _), theta in zip(found["thetas"], thetas)]
        if kind == "target":
            for objective in params["ablation"]:
                extra = search_target(problem, target, n_random=0, objective=objective,
                                      **{**common, "ks": [min(params["ks"])]})
                out["runs"] += extra["runs"]
            if params["lambdas"]:
                out["baseline"] = baseline_target(problem, target, lambdas=params["lambdas"],
                                                  ks=params["ks"])["rows"]
            if params["detection"]:
                out["statistics"] = [dict(s, run=i, eps=found["runs"][i]["eps"])
                                     for (i, _), s in zip(found["thetas"], _statistics(
                                         problem, thetas, params["detection"]))]
    elif kind == "multi":
        targets = pick_targets(problem, params["size"], max(params["multi_ks"]),
                               seed=params["target_seed"] + 1)
        out.update(multi_target(problem, targets, eps=params["multi_eps"], lr=params["lr"],
                                ks=params["multi_ks"], steps=params["steps"],
                                lr_drop_step=params["lr_drop_step"], max_drop=params["max_drop"]))
        out["honest_values_rank"] = [int(problem.honest_ranks[t]) for t in targets]
    elif kind == "honest":
        from ..influence.detection import honest_models
        det = params["detection"]
        fits = honest_models(problem.X.double(), problem.y, problem.info["l2"], det["n_honest"],
                             seed=1, n_classes=problem.model.n_classes,
                             optimisers=tuple(det["optimisers"]))
        stats = _statistics(problem, [f.theta for f in fits], det)
        out["statistics"] = [dict(s, optimiser=f.optimiser, tol=f.tol, converged=f.converged)
                             for s, f in zip(stats, fits)]
    else:
        raise ValueError(f"unknown trial kind {kind!r}")
    out["seconds"] = time.perf_counter() - start
    return out


# ----- summaries --------------------------------------------------------------------------------
def _nan(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _regimes(success, drops, labels, max_drop, **keys) -> list[dict]:
    from ..influence.valuation import regime_table
    table = regime_table(success, drops, labels, max_drop=max_drop)
    return [{**keys, "regime": regime, "success_rate": row["success_rate"],
             "accuracy_drop": _nan(row["accuracy_drop"]), "setting": row["setting"],
             "n_targets": int(np.asarray(success).shape[1])} for regime, row in table.items()]


def _attack_grid(trials, eps_grid, k, starts="all", objective="higher_ranked", max_drop=0.03):
    from ..influence.valuation import outcome
    succ, drops = [], []
    for eps in eps_grid:
        outs = [outcome(t["runs"], eps, k, starts=starts, objective=objective, max_drop=max_drop)
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
            base = [t["baseline"] for t in tg if t.get("baseline")]
            if base:
                per = [baseline_outcome(rows, k) for rows in base]
                bs = np.array([p[0] for p in per]).T
                bd = np.array([p[1] for p in per]).T
                table1 += _regimes(bs, bd, [r["lambda"] for r in base[0]], max_drop,
                                   dataset=dataset, method="baseline", k=k)
        kmin = min(ks)
        abl = [t for t in tg if any(r["objective"] != "higher_ranked" for r in t["runs"])]
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
            for kind in ("gradient", det["kind"]):
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
            "fig4": fig4, "detection": detection}


@register("influence-valuation")
def run(profile: str) -> dict:
    config = PROFILES[profile]
    trials = trial_grid(config)
    results = run_trials(run_trial, trials, experiment=f"influence-valuation-{profile}",
                         n_jobs=config["n_jobs"], progress=True)
    return {"seed": config["target_seed"], "config": config,
            "results": {**summarise(config, trials, results),
                        "stand_in": "EfficientNet-Lite0 features on image subsets",
                        "trials": [{k: v for k, v in r.items() if k not in ("runs",)}
                                   | {"runs": r.get("runs", [])} for r in results
                                   if r["kind"] in ("target", "size")]}}
