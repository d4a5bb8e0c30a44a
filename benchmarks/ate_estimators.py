"""Time the ATE estimators of amlib.am.causal on Twins-sized data (chapter 7's victims).

Data: ``amlib.data.tabular.twins(seed)`` (one twin per pair at random, coded unknowns cleaned),
covariates with 3-10 distinct values one-hot encoded, all covariates standardised, and a random
half of the rows (5,700) kept as the training set of each member; member k uses seed k.  Each
estimator is run once on all members through ``estimate_ate_many`` (T-Net and TARNet: one batched
model); the script prints CPU seconds (this process) and wall seconds, and tau_hat per member.
``--nan`` also times the two MIA estimators with 10% of ``gestat`` and ``wtgain`` set missing.

    AMLIB_DATA_MIRROR=../shared/data .venv/bin/python benchmarks/ate_estimators.py --members 5
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
import torch

from amlib.am.causal import ESTIMATORS, estimate_ate_many
from amlib.data.tabular import twins


def members(k: int):
    out = []
    for seed in range(k):
        data = twins(seed=seed)
        frame = data.frame
        cov = frame.drop(columns=["y0", "y1", "w", "y"])
        few = [c for c in cov.columns if 3 <= cov[c].nunique() <= 10]
        cov = pd.get_dummies(cov, columns=few, dtype=float)
        X = cov.to_numpy(float)
        X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
        rows = np.random.default_rng(seed).permutation(len(X))[: len(X) // 2]
        out.append((X[rows], frame["w"].to_numpy()[rows], frame["y"].to_numpy()[rows],
                    list(cov.columns)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--estimators", default=",".join(ESTIMATORS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--nan", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sets = members(args.members)
    names = sets[0][3]
    print(f"{args.members} members, n = {len(sets[0][1])} rows, d = {len(names)} covariates, "
          f"{args.threads} torch thread(s)")
    runs = [(name, [s[:3] for s in sets], "") for name in args.estimators.split(",")]
    if args.nan:
        masked = []
        for k, (X, w, y, _) in enumerate(sets):
            X = X.copy()
            rng = np.random.default_rng(100 + k)
            for col in ("gestat", "wtgain"):
                X[rng.random(len(X)) < 0.1, names.index(col)] = np.nan
            masked.append((X, w, y))
        runs += [(name, masked, " (10% NaN)") for name in ("cf-mia", "dr-mia")]
    rows = []
    for name, data, note in runs:
        opts = {"num_threads": args.threads} if name in ("tnet", "tarnet") else {}
        cpu, wall = time.process_time(), time.perf_counter()
        taus = estimate_ate_many(name, data, list(range(len(data))), **opts)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        rows.append({"estimator": name + note, "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
                     "ate_percent": [round(100 * t, 2) for t in taus]})
        print(f"{name + note:18s} cpu {cpu:7.1f} s  wall {wall:7.1f} s  tau_hat (%) "
              f"{np.round(100 * np.array(taus), 2)}", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"members": args.members, "threads": args.threads, "rows": rows}, fh,
                      indent=1)


if __name__ == "__main__":
    main()
