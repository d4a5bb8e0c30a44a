"""Time one BLAMM epoch (lower-level IRLS solve + implicit hypergradient + Adam step).

Usage: ``python benchmarks/blamm_epoch.py [--steps 20] [--threads 1] [--trainer-epochs 30]``

Scales (the issue's targets, neural mechanism with 100 hidden units, |M| = 1):
- ca-housing training split: N = 16,512, d = 8, masked ``MedInc`` (Gaussian GLM);
- german-credit training split: N = 900, d = 48, masked ``installment_rate`` (Bernoulli GLM).

For each proxy (mean, cca, regression) it reports the median over ``--steps`` timed steps of the
bare step (``compute_loss`` + ``backward`` + ``Adam.step``) after three warm-up steps, and the
mean wall time per epoch of a full Lightning ``fit`` of ``--trainer-epochs`` epochs (after a
warm-up fit, so Lightning's one-off start-up is not counted).  Needs the
data (``AMLIB_DATA_MIRROR`` or the cache).  Prints a table and writes JSON with ``--out``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from amlib.am.blamm import BLAMM
from amlib.data import load

SCALES = [("ca-housing", "MedInc", "gaussian"),
          ("german-credit", "installment_rate", "bernoulli")]


def time_steps(module: BLAMM, steps: int) -> list[float]:
    opt = torch.optim.Adam(module.mechanism.parameters(), lr=module.lr)
    times = []
    for k in range(steps + 3):
        start = time.perf_counter()
        loss, _ = module.compute_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if k >= 3:
            times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--trainer-epochs", type=int, default=30)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for dataset, target, family in SCALES:
        data = load(dataset, seed=0)
        frame = data.part("train")
        # one short fit first: Lightning's one-off start-up (entry-point scan) is not an epoch cost
        BLAMM(frame, data.target, [target], family, "cca", epochs=2,
              num_threads=args.threads).fit()
        for proxy in ("mean", "cca", "regression"):
            module = BLAMM(frame, data.target, [target], family, proxy, lr=0.01, seed=0,
                           epochs=args.trainer_epochs, num_threads=args.threads)
            steps = time_steps(module, args.steps)
            fresh = BLAMM(frame, data.target, [target], family, proxy, lr=0.01, seed=0,
                          epochs=args.trainer_epochs, num_threads=args.threads)
            start = time.perf_counter()
            fresh.fit()
            per_epoch = (time.perf_counter() - start) / args.trainer_epochs
            rows.append({"dataset": dataset, "N": len(frame), "d": len(data.features),
                         "proxy": proxy, "median_step_ms": 1e3 * statistics.median(steps),
                         "trainer_epoch_ms": 1e3 * per_epoch,
                         "irls_iters_last": fresh.history[-1]["lower_iters"],
                         "threads": args.threads})
            r = rows[-1]
            print(f"{dataset:14s} N={r['N']:6d} d={r['d']:3d} {proxy:10s} "
                  f"median step {r['median_step_ms']:7.2f} ms   Lightning epoch "
                  f"{r['trainer_epoch_ms']:7.2f} ms", flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(rows, handle, indent=2)
    return rows


if __name__ == "__main__":
    main()
