"""Where the K-FAC preconditioner pays: CG iterations and seconds against the condition number.

Usage::

    python benchmarks/kfac_crossover.py [--shape caltech101|small] [--threads 2]
        [--dtype float64] [--tol 1e-8] [--out results/kfac-crossover.json]

On the problem of ``benchmarks/influence_peers.py`` (the same builder and fitted θ, prepared in
the same work folder), the system (H + shift·I) s = G_test is solved by CG to ``--tol``, plain
and K-FAC-preconditioned, for shifts that set the condition number from about 10 to 10⁴. Per
shift: the estimate κ̄ of ``precondition="auto"`` (:func:`amlib.influence.condition_estimate`),
the iterations and seconds of both, and what "auto" chooses. The feature Gram is built once
(``FeatureGram.cached``; its seconds reported apart) as every later call finds it cached.

K-FAC pays where its iterations, each dearer by the preconditioner's two D × D products,
cost less than plain CG's: ``cost_ratio`` = (K-FAC seconds) / (plain seconds) < 1. The
iteration counts do not depend on the machine; the seconds need an idle one.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from influence_peers import L2, SHAPES, run_child  # noqa: E402
from influence_step import _cpu_name  # noqa: E402

#: condition numbers aimed at (the shift is set from the estimate at L2)
TARGET_KAPPAS = [10, 30, 100, 300, 1000, 3000, 10000]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="caltech101", choices=list(SHAPES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--tol", type=float, default=1e-8)
    parser.add_argument("--kappas", type=float, nargs="+", default=TARGET_KAPPAS)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                          "amlib-influence-peers"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from amlib.influence import (KFAC_MIN_CONDITION, FeatureGram, HessianOperator, InverseHVP,
                                 LogisticModel, choose_preconditioner, condition_estimate,
                                 query_gradient)
    from amlib.provenance import provenance

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    problem = Path(args.workdir) / f"{args.shape}-seed{args.seed}-l2{L2:g}"
    if not (problem / "reference.npy").exists():
        args.torch_influence, args.repeats = None, 1
        run_child("prepare", args, problem)
    meta = json.loads((problem / "meta.json").read_text())
    dtype = getattr(torch, args.dtype)
    X = torch.from_numpy(np.load(problem / "X.npy")).to(dtype)
    y = torch.from_numpy(np.load(problem / "y.npy"))
    Xt = torch.from_numpy(np.load(problem / "Xt.npy")).to(dtype)
    yt = torch.from_numpy(np.load(problem / "yt.npy"))
    theta = torch.from_numpy(np.load(problem / "theta.npy")).to(dtype)
    base = LogisticModel(meta["d"], meta["classes"], bias=True, l2=L2)
    G = query_gradient(base, theta, Xt, yt)
    # λ̄ of the estimate does not depend on the shift: κ̄ = 1 + λ̄/shift
    lam = (condition_estimate(HessianOperator(base, theta, X)) - 1) * L2
    gram = FeatureGram.cached(base, X)
    rows = []
    for kappa in args.kappas:
        shift = lam / (kappa - 1)
        model = LogisticModel(meta["d"], meta["classes"], bias=True, l2=shift)
        row = {"target_kappa": kappa, "shift": shift}
        for name, pre in (("plain", False), ("kfac", "kfac")):
            solver = InverseHVP(model, theta, X, tol=args.tol, max_iter=5000, precondition=pre,
                                gram=gram)
            res = solver.solve(G)
            row[name] = {"iterations": res.iterations, "seconds": res.seconds,
                         "residual": res.relative_residual}
        op = HessianOperator(model, theta, X)
        row["chosen"], row["condition_estimate"] = choose_preconditioner(op)
        row["cost_ratio"] = row["kfac"]["seconds"] / row["plain"]["seconds"]
        row["iteration_ratio"] = row["kfac"]["iterations"] / row["plain"]["iterations"]
        rows.append(row)
        print(f"κ̄ {row['condition_estimate']:9.1f}  plain {row['plain']['iterations']:4d} it "
              f"{row['plain']['seconds']:7.2f} s   kfac {row['kfac']['iterations']:4d} it "
              f"{row['kfac']['seconds']:7.2f} s   ratio {row['cost_ratio']:.2f}   auto: "
              f"{row['chosen']}", flush=True)
    report = {"provenance": provenance(
        "kfac-crossover", args.shape, args.seed,
        {"shape": args.shape, "dtype": args.dtype, "tol": args.tol, "threads": args.threads,
         "kappas": args.kappas, "kfac_min_condition": KFAC_MIN_CONDITION},
        wall_seconds=time.perf_counter() - start, cpu=_cpu_name(), cpu_count=os.cpu_count(),
        torch_version=torch.__version__),
        "gram_seconds": gram.seconds, "rows": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
