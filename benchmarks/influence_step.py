"""Time and peak memory of one targeted-influence attack step at the influence paper's shapes.

Usage::

    python benchmarks/influence_step.py [--shapes caltech101 pet cifar10] [--steps 5]
        [--threads 2] [--tol 1e-2] [--variants library plain] [--solver-opts JSON]
        [--skip-lissa] [--skip-naive] [--naive-guard-gb 16] [--workdir DIR]
        [--d 2048] [--original-d 1280] [--original-steps 1] [--skip-decomposition] [--quick]
        [--out results/influence-benchmark.json]

What one attack step is (the backward-friendly attack of the influence paper, Alg. 1 and
App. A.1.1, with the "min higher-rank influence" objective of Eq. 4):

1. rank every training point: s_a = (H + δI)⁻¹ G_test by conjugate gradients, then the value
   G_testᵀ (H + δI)⁻¹ g_i of all n points from one matrix product (no per-sample gradient matrix);
2. the linearisation coefficients c (target −1, +1/|A| on the points ranked above it);
3. the second solve s_b = (H + δI)⁻¹ b, b = Σ_i c_i g_i, and the gradient of the surrogate
   S(θ) = a(θ)ᵀ s_b + b(θ)ᵀ s_a − s_aᵀ H(θ) s_b (value units; s_a, s_b frozen) by one
   backward pass;
4. an Adam update and the projection onto the ball ‖θ − θ*‖ ≤ ε‖θ*‖.

The honest ranking that picks the target (the median-ranked training point) is set-up, timed
separately and not counted as a step.

The problems are synthetic stand-ins with the paper's shapes: 2048-d standardised features
(a power-law covariance spectrum like deep features, class signal in the leading directions),
a linear softmax model with bias trained by the paper's SGD recipe, damping δ = 0.01 in the
Hessian. Per shape, every measurement runs in a fresh Python process, and its peak resident set
(``ru_maxrss`` of that child from ``os.wait4``; ``VmHWM`` as a cross-check) is reported:

- ``floor``: the interpreter, torch, amlib.influence with its attack module (and so Lightning)
  and the data set — no attack at all;
- ``ours``: ``--steps`` steps of ``TargetedInfluenceAttack`` itself (its ``attack_step``; the
  first cold, later ones warm-started from the previous solutions), each timed, with the solvers' true relative residuals ‖(H + δI)x − v‖/‖v‖ —
  once as ``TargetedInfluenceAttack`` runs by default (variant ``library``: CG preconditioned by
  the library's K-FAC preconditioner, ``InverseHVP(precondition="kfac", gram=...)``, with the
  feature Gram matrix factorised once per data set and its time reported as ``gram_seconds``)
  and once with ``precondition=False`` (variant ``plain``: unpreconditioned CG, what the library
  did before; it has the library's cheap feature check too);
- ``lissa``: one LiSSA solve of H⁻¹ G_test with the original code's settings (scale 25,
  damp 0.01, 10⁶ samples in batches of 1024 = 977 batch HVPs); residuals against H + 0.01 I and
  against its own fixed point H + 0.25 I (damp·scale, see ``amlib.influence.hvp``), and the
  distance to a tight CG solution. ``--skip-lissa`` leaves it out;
- ``naive``: the differentiable reference — backpropagation through an unrolled (plain) CG —
  first with two small iteration counts to extrapolate its memory per iteration, then with the
  number of plain-CG iterations that reaches our tolerance, unless the extrapolated peak exceeds
  ``--naive-guard-gb`` (or 80 % of the memory available), in which case it is skipped with a note.

Besides resident memory (which the allocator blurs at the 100 MB level), the bytes that autograd
keeps for the backward pass are counted exactly for both the surrogate and the unrolled solver
(``graph_bytes``). The reported step time is the first step's ("cold": no warm start); later steps
are warm-started from the previous solutions, and on these easy synthetic problems the target
reaches rank 0 within a step or two, after which the solves get easier still, so the "warm"
median is optimistic.

The original code's numbers (per step, same 2-core CPU, ``ORIGINAL`` below) come from the
project's issue 5; they are inputs for the comparison, not measured here. They were measured on
1280-d features, so the original's models have 1281·C parameters (129,381 at Caltech-101), ours
at the paper's 2048-d shapes 2049·C (206,949); every row carries both counts.

Decomposition (issue 13; ``influence_decomposition.py``, at the original's shape ``--original-d``):
(a) the original algorithm — 3 LiSSA solves and 2 rankings per step — run in our code, against
the original code's time (implementation); (b) our K-FAC CG step at the loosest tolerance whose
attack-gradient error matches LiSSA's on its own fixed point, against (a) (algorithm, at equal
accuracy); (c) the memory of both as peak resident set above the floor of the same process, and
in all. ``--quick`` runs everything on one tiny shape (a smoke test; no original numbers).

Prints a table; ``--out`` writes JSON with a provenance block. Run it on an otherwise idle
machine: the timings are wall-clock.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from influence_decomposition import (LADDER, LISSA, ORIGINAL_STEP, REF_RTOL,  # noqa: E402
                                     above_floor,
                                     floor_mark, role_accuracy, role_original,
                                     summarise_decomposition, vm_hwm_bytes)
from influence_report import MEMORY_TARGET, SPEED_TARGET, print_table, summarise  # noqa: E402

_vm_hwm_bytes = vm_hwm_bytes

D_FEATURES = 2048
# training points n, attack ("test") points m, classes C (influence paper, App. A.1.2); ``signal``
# sets the class separation of the synthetic features so that the honest model's test accuracy is
# near ResNet50 linear-probe accuracies (about 0.9), not trivially 1.0.
SHAPES = {
    "caltech101": {"n": 6941, "m": 868, "classes": 101, "signal": 0.5},
    "pet": {"n": 3680, "m": 1835, "classes": 37, "signal": 0.4},
    "cifar10": {"n": 50000, "m": 5000, "classes": 10, "signal": 0.2},
}
# The authors' code (LiSSA, 1e6 samples = 977 HVP batches per solve, 3 solves and 2 rankings per
# step; its memory peak is a list of one full gradient per training point), timed per attack step
# on this 2-core CPU — issue 5 of this project. Ranges are over the steps that were timed.
# They were measured on this project's 1280-d EfficientNet-Lite0 features, so their models have
# 1280·C + C parameters (129,381 at Caltech-101), not the 2048-d shapes' 2048·C + C (206,949).
ORIGINAL_D = 1280
ORIGINAL = {
    "caltech101": {"seconds_min": 91.0, "seconds_max": 99.0, "peak_gb": 5.84},
    "pet": {"seconds_min": 59.0, "seconds_max": 59.0, "peak_gb": 1.51},
    "cifar10": {"seconds_min": 71.0, "seconds_max": 114.0, "peak_gb": 4.78},
}
for _name, _orig in ORIGINAL.items():
    _orig.update(d=ORIGINAL_D, n_params=(ORIGINAL_D + 1) * SHAPES[_name]["classes"])
# --quick: one tiny shape to smoke-test the machinery (no original numbers to compare with)
QUICK_SHAPES = {"tiny": {"n": 2000, "m": 100, "classes": 5, "signal": 0.5}}
QUICK = {"d": 64, "original_d": 48, "steps": 2, "train_epochs": 5, "naive_probe": [2, 4],
         "original_steps": 1}
DAMPING = 0.01           # the original code's damping, in the Hessian
EPS, K_TOP, LR = 0.1, 1, 0.01
GB = 1e9


# ----------------------------------------------------------------------------------------------
# synthetic problems
# ----------------------------------------------------------------------------------------------
def synthetic_features(n: int, m: int, classes: int, *, seed: int, d: int = D_FEATURES,
                       spectrum: float = 1.0, signal: float = 0.5, signal_dims: int = 256,
                       chunk: int = 4096):
    """Standardised float32 features shaped like ResNet50 embeddings, train and test.

    A latent z ~ N(μ_y, I) in R^d, with class means μ_c ~ N(0, signal²) on the first
    ``signal_dims`` coordinates (zero elsewhere), is mapped to features z·diag(k^(−spectrum/2))·Q
    (Q a random rotation), so the feature covariance has a power-law spectrum and the class
    information lies in its leading directions. Columns are standardised with the training mean
    and standard deviation, as the paper standardises the ResNet features.
    """
    gen = np.random.default_rng(seed)
    scales = np.arange(1, d + 1, dtype=np.float64) ** (-spectrum / 2)
    Q, _ = np.linalg.qr(gen.standard_normal((d, d)))
    B = (scales[:, None] * Q).astype(np.float32)
    means = np.zeros((classes, d), dtype=np.float32)
    signal_dims = min(signal_dims, d)
    means[:, :signal_dims] = signal * gen.standard_normal((classes, signal_dims))

    def draw(rows):
        y = gen.integers(0, classes, size=rows)
        X = np.empty((rows, d), dtype=np.float32)
        for lo in range(0, rows, chunk):
            hi = min(rows, lo + chunk)
            z = gen.standard_normal((hi - lo, d), dtype=np.float32) + means[y[lo:hi]]
            X[lo:hi] = z @ B
        return X, y

    X, y = draw(n)
    Xt, yt = draw(m)
    mu = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    sd = X.std(axis=0, dtype=np.float64).astype(np.float32)
    for A in (X, Xt):
        for lo in range(0, len(A), chunk):
            A[lo:lo + chunk] -= mu
            A[lo:lo + chunk] /= sd
    return X, y, Xt, yt


def problem_path(workdir: Path, shape: str, seed: int, epochs: int, d: int) -> Path:
    return workdir / f"{shape}-d{d}-seed{seed}-sgd{epochs}"


def shape_spec(name: str) -> dict:
    return SHAPES[name] if name in SHAPES else QUICK_SHAPES[name]


# ----------------------------------------------------------------------------------------------
# child processes (one per measurement; --role selects which)
# ----------------------------------------------------------------------------------------------
def _load(folder: Path):
    import torch

    X = torch.from_numpy(np.load(folder / "X.npy"))
    y = torch.from_numpy(np.load(folder / "y.npy"))
    Xt = torch.from_numpy(np.load(folder / "Xt.npy"))
    yt = torch.from_numpy(np.load(folder / "yt.npy"))
    theta = torch.from_numpy(np.load(folder / "theta.npy"))
    meta = json.loads((folder / "meta.json").read_text())
    return X, y, Xt, yt, theta, meta


def role_prepare(args) -> dict:
    """Generate the features and train the honest model (paper's SGD recipe); cache to disk."""
    import torch

    from amlib.influence import fit_logistic_sgd, stationarity

    torch.set_num_threads(args.threads)
    shape = shape_spec(args.shape)
    folder = Path(args.problem)
    start = time.perf_counter()
    X, y, Xt, yt = synthetic_features(shape["n"], shape["m"], shape["classes"], seed=args.seed,
                                      signal=shape["signal"], d=args.d)
    gen_s = time.perf_counter() - start
    Xtr, ytr = torch.from_numpy(X), torch.from_numpy(y)
    fit = fit_logistic_sgd(Xtr, ytr, n_classes=shape["classes"], lr=1e-3, epochs=args.train_epochs,
                           batch_size=64, seed=42)
    model, theta = fit.model, fit.theta
    with torch.no_grad():
        probs = model.probs(theta, Xtr)
    meta = {"shape": args.shape, **shape, "d": args.d, "n_params": model.n_params,
            "seed": args.seed, "train_epochs": args.train_epochs,
            "train_accuracy": model.accuracy(theta, Xtr, ytr),
            "test_accuracy": model.accuracy(theta, torch.from_numpy(Xt), torch.from_numpy(yt)),
            "mean_max_probability": float(probs.max(dim=1).values.mean()),
            "grad_norm": stationarity(model, theta, Xtr, ytr)[0],
            "generate_seconds": gen_s, "train_seconds": fit.seconds}
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in (("X", X), ("y", y), ("Xt", Xt), ("yt", yt), ("theta", theta.numpy())):
        np.save(folder / f"{name}.npy", arr)
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def role_floor(args) -> dict:
    """Interpreter + torch + amlib.influence + the data: what every configuration pays anyway."""
    import torch

    import amlib.influence.attacks  # noqa: F401  (the attack module and Lightning: the floor)

    torch.set_num_threads(args.threads)
    X, y, Xt, yt, theta, meta = _load(Path(args.problem))
    return {"data_bytes": sum(t.numel() * t.element_size() for t in (X, y, Xt, yt, theta))}


def _setup(args):
    """Model and data of the problem, after the floor's imports (every measuring role calls it
    before its ``floor_mark``, so the in-process floors are alike: Python, torch, amlib.influence
    with the attack module and Lightning, the data)."""
    import torch

    import amlib.influence.attacks  # noqa: F401  (as role_floor: the floor includes Lightning)
    from amlib.influence import LogisticModel

    torch.set_num_threads(args.threads)
    X, y, Xt, yt, theta, meta = _load(Path(args.problem))
    model = LogisticModel(meta["d"], meta["classes"], bias=True)
    return model, X, y, Xt, yt, theta, meta


def role_ours(args) -> dict:
    """``--steps`` steps of :class:`amlib.influence.TargetedInfluenceAttack`, each timed.

    The attack's own step (:meth:`~amlib.influence.TargetedInfluenceAttack.attack_step`, without
    the Lightning loop around it): one solver per θ, s_a for the ranking, the coefficients, s_b
    and the surrogate's gradient with the same solver, Adam, projection; warm starts from the
    previous step's s_a and s_b. Early stopping is off so that every step does the full work.
    """
    import torch

    from amlib.influence import FeatureGram, TargetedInfluenceAttack, values_and_ranks
    from amlib.influence.memory import SavedTensorBytes

    model, X, y, Xt, yt, theta_star, meta = _setup(args)
    mark = floor_mark()   # (c): imports and data done; the peak is measured from here
    solver_opts = {"tol": args.tol, **json.loads(args.solver_opts)}
    solver_opts.setdefault("precondition", "kfac" if args.variant == "library" else False)
    reported_opts = dict(solver_opts)
    start = time.perf_counter()
    gram_s = 0.0
    if solver_opts["precondition"] == "kfac":   # as the attack does: one Gram per data set
        gram = FeatureGram.from_features(model, X)
        solver_opts["gram"], gram_s = gram, gram.seconds
    honest = values_and_ranks(model, theta_star, X, y, Xt, yt, method="cg", damping=DAMPING,
                              **solver_opts)
    rank0 = honest.ranks()
    target = int((rank0 == len(rank0) // 2).nonzero()[0, 0])   # the median-ranked point
    if args.target is not None:   # given: the decomposition's reference target
        target = int(args.target)
    attack = TargetedInfluenceAttack(model, theta_star, X, y, Xt, yt, target, k=K_TOP, eps=EPS,
                                     lr=LR, steps=args.steps, lr_drop_step=None,
                                     method="cg", damping=DAMPING, solver_opts=solver_opts,
                                     early_stop=False)
    optimizer, scheduler = attack.make_optimizer()
    setup_s = time.perf_counter() - start
    steps = []
    for step in range(args.steps):
        with SavedTensorBytes(X, Xt) as saved:
            record = attack.attack_step(optimizer, scheduler)
        steps.append({"step": step, "seconds": record["seconds"],
                      "rank_seconds": record["rank_seconds"],
                      "surrogate_seconds": record["gradient_seconds"],
                      "update_seconds": record["update_seconds"],
                      "target_rank": record["rank"], "objective": record["objective"],
                      "graph_bytes": saved.nbytes, "accuracy": record["accuracy"],
                      "cg_iters_a": record["rank_iterations"],
                      "cg_iters_b": record["gradient_iterations"],
                      "residual_a": record["rank_residual"],
                      "residual_b": record["gradient_residual"]})
    return {"setup_seconds": setup_s, "gram_seconds": gram_s, "variant": args.variant,
            "target": target, "steps": steps,
            "honest_cg_iters": int(honest.ihvp_info.iterations), "solver_opts": reported_opts,
            **above_floor(mark)}


def role_lissa(args) -> dict:
    """One LiSSA solve with the original settings vs CG on the same right-hand side."""
    import torch

    from amlib.influence import HessianOperator, InverseHVP, query_gradient

    model, X, y, Xt, yt, theta, meta = _setup(args)
    v = query_gradient(model, theta, Xt, yt)
    lissa = InverseHVP(model, theta, X, method="lissa", damping=0.0, seed=0, **LISSA)
    res = lissa.solve(v)
    x_lissa = res.solution
    op = HessianOperator(model, theta, X, damping=DAMPING)

    def rel(x, extra=0.0):
        r = v - op.matvec(x) - extra * x
        return float(r.norm() / v.norm())

    solver_opts = {"tol": args.tol, **json.loads(args.solver_opts)}
    ours = InverseHVP(model, theta, X, method="cg", damping=DAMPING, **solver_opts).solve(v)
    tight_opts = {**solver_opts, "tol": 1e-5, "max_iter": 2000}
    tight = InverseHVP(model, theta, X, method="cg", damping=DAMPING, **tight_opts).solve(v)
    tight25 = InverseHVP(model, theta, X, method="cg", damping=0.25, **tight_opts).solve(v)
    plain = InverseHVP(model, theta, X, method="cg", damping=DAMPING, tol=args.tol,
                       precondition=False).solve(v)
    ref, ref25 = tight.solution, tight25.solution
    return {
        "lissa_seconds": res.seconds, "lissa_steps": res.iterations,
        "lissa_hvp_passes": res.hvp_passes,
        "lissa_residual_damping_0.01": rel(x_lissa),
        "lissa_residual_own_damping_0.25": rel(x_lissa, 0.24),
        "lissa_error_vs_solution_0.01": float((x_lissa - ref).norm() / ref.norm()),
        "lissa_error_vs_solution_0.25": float((x_lissa - ref25).norm() / ref25.norm()),
        "cg_seconds": ours.seconds, "cg_iters": ours.iterations,
        "cg_residual_damping_0.01": rel(ours.solution),
        "cg_error_vs_solution_0.01": float((ours.solution - ref).norm() / ref.norm()),
        "plain_cg_iters": plain.iterations, "plain_cg_seconds": plain.seconds,
        "tight_cg_iters": tight.iterations, "tight_residual": tight.relative_residual,
        "tight_residual_0.25": tight25.relative_residual,
    }


def role_naive(args) -> dict:
    """Value and gradient of the attack objective by backprop through ``--cg-iters`` plain CG."""
    import torch

    from amlib.influence import attack_coefficients, influence_values, naive_objective
    from amlib.influence.memory import SavedTensorBytes

    model, X, y, Xt, yt, theta, meta = _setup(args)
    inf = influence_values(model, theta, X, y, Xt, yt, method="cg", damping=DAMPING,
                           tol=args.tol, check_stationary=False)
    c = attack_coefficients(inf.values, args.target, K_TOP, "higher_ranked")
    th = theta.clone().requires_grad_(True)
    setup_peak = _vm_hwm_bytes()   # the ranking above; the peak is then reset to measure the naive part
    rss_before = floor_mark()["floor_rss_bytes"]
    start = time.perf_counter()
    with SavedTensorBytes(X, Xt) as saved:
        value = naive_objective(model, th, X, y, Xt, yt, c, cg_iters=args.cg_iters,
                                damping=DAMPING, tol=args.tol)
    value.backward()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cg_iters": args.cg_iters, "value": float(value.detach()),
            "graph_bytes": saved.nbytes,
            "setup_peak_bytes": setup_peak, "rss_before_bytes": rss_before,
            "phase_peak_bytes": _vm_hwm_bytes(),
            "grad_norm": float(th.grad.norm())}


ROLES = {"prepare": role_prepare, "floor": role_floor, "ours": role_ours, "lissa": role_lissa,
         "naive": role_naive,
         "original": lambda args: role_original(args, _setup, k=K_TOP, eps=EPS, lr=LR),
         "accuracy": lambda args: role_accuracy(args, _setup, k=K_TOP, damping=DAMPING)}


def child_main(args) -> None:
    load_before = os.getloadavg()
    result = ROLES[args.role](args)
    result["vm_hwm_bytes"] = _vm_hwm_bytes()
    result["loadavg_1min_before_after"] = [load_before[0], os.getloadavg()[0]]
    Path(args.result).write_text(json.dumps(result, indent=2))


# ----------------------------------------------------------------------------------------------
# parent: one fresh process per measurement
# ----------------------------------------------------------------------------------------------
def run_child(role: str, args, problem: Path, **extra) -> dict:
    """Run ``role`` in a fresh interpreter; its result plus peak RSS (wait4) and wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--role", role, "--problem", str(problem),
               "--result", str(result_path), "--threads", str(args.threads),
               "--tol", repr(args.tol), "--steps", str(args.steps), "--seed", str(args.seed),
               "--train-epochs", str(args.train_epochs), "--solver-opts", args.solver_opts]
        for key, value in extra.items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark child {role!r} for {problem.name} failed with exit "
                               f"code {proc.returncode} (see its traceback above)")
        result = json.loads(result_path.read_text())
    result["peak_rss_bytes"] = usage.ru_maxrss * 1024   # Linux reports kilobytes
    result["process_seconds"] = wall
    return result


def mem_available_bytes() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def ensure_problem(name: str, args, d: int) -> Path:
    """The cached problem of shape ``name`` with ``d``-dimensional features (made if missing)."""
    problem = problem_path(Path(args.workdir), name, args.seed, args.train_epochs, d)
    meta_path = problem / "meta.json"
    spec = shape_spec(name)
    if meta_path.exists() and any(json.loads(meta_path.read_text()).get(key) != spec[key]
                                  for key in ("n", "m", "classes", "signal")):
        meta_path.unlink()   # cached under another definition of the shape: make it again
    if not meta_path.exists():
        print(f"[{name}] d={d}: generating features and training the honest model ...", flush=True)
        run_child("prepare", args, problem, shape=name, d=d)
    return problem


def measure_decomposition(name: str, args) -> dict:
    """(a) the original algorithm in our code, (b) ours at the equal-accuracy tolerance, (c) their
    memory above the in-process floor — at the original code's shape (``--original-d``)."""
    problem = ensure_problem(name, args, args.original_d)
    meta = json.loads((problem / "meta.json").read_text())
    dec = {"d": meta["d"], "n_params": meta["n_params"],
           "honest_test_accuracy": meta["test_accuracy"]}
    acc = dec["accuracy"] = run_child("accuracy", args, problem)
    print(f"[{name}] p={meta['n_params']:,}: attack-gradient error LiSSA "
          f"{acc['lissa']['gradient_error_own_system']:.3g} (own system H+0.25I) / "
          f"{acc['lissa']['gradient_error_0.01']:.3g} (H+0.01I); K-FAC CG "
          f"{[(p['tol'], round(p['gradient_error'], 4)) for p in acc['ladder']]}; matched tol "
          f"{acc['matched_tol']}", flush=True)
    orig = dec["original_algorithm"] = run_child("original", args, problem, target=acc["target"],
                                                 original_steps=args.original_steps)
    print(f"[{name}] original algorithm in our code (3 LiSSA solves, 2 rankings): "
          f"{[round(s['seconds'], 2) for s in orig['steps']]} s, "
          f"+{orig['peak_above_floor_bytes'] / GB:.2f} GB above its floor "
          f"{orig['floor_rss_bytes'] / GB:.2f} GB", flush=True)
    if acc["matched_tol"] is not None:
        m = dec["ours_matched"] = run_child("ours", args, problem, variant="library",
                                            tol=acc["matched_tol"], steps=1,
                                            target=acc["target"])
        print(f"[{name}] ours at tol {acc['matched_tol']:g}: {m['steps'][0]['seconds']:.2f} s, "
              f"+{m['peak_above_floor_bytes'] / GB:.2f} GB above its floor", flush=True)
    else:
        dec["ours_matched"] = None
        print(f"[{name}] no tolerance of {LADDER} matches LiSSA's accuracy", flush=True)
    return dec


def measure_shape(name: str, args) -> dict:
    problem = ensure_problem(name, args, args.d)
    meta = json.loads((problem / "meta.json").read_text())
    row = {"shape": name, **{k: meta[k] for k in ("n", "m", "classes", "d", "n_params",
                                                  "train_accuracy", "test_accuracy",
                                                  "mean_max_probability", "train_epochs")},
           "original": ORIGINAL.get(name)}
    print(f"[{name}] n={meta['n']} m={meta['m']} C={meta['classes']} p={meta['n_params']:,} "
          f"honest acc train {meta['train_accuracy']:.3f} test {meta['test_accuracy']:.3f}",
          flush=True)
    row["floor"] = run_child("floor", args, problem)
    for variant in args.variants:
        key = "ours" if variant == "library" else f"ours_{variant}"
        ours = row[key] = run_child("ours", args, problem, variant=variant)
        steps = ours["steps"]
        ours["cold_step_seconds"] = steps[0]["seconds"]
        ours["warm_step_seconds"] = (statistics.median(s["seconds"] for s in steps[1:])
                                     if len(steps) > 1 else None)
        print(f"[{name}] ours ({variant}): steps {[round(s['seconds'], 2) for s in steps]} s, "
              f"CG iterations {[(s['cg_iters_a'], s['cg_iters_b']) for s in steps]}, peak "
              f"{ours['peak_rss_bytes'] / GB:.2f} GB (floor {row['floor']['peak_rss_bytes'] / GB:.2f})",
              flush=True)
    if not args.skip_lissa:
        row["lissa"] = run_child("lissa", args, problem)
        print(f"[{name}] LiSSA (original settings): {row['lissa']['lissa_seconds']:.1f} s, "
              f"residual {row['lissa']['lissa_residual_damping_0.01']:.3g} (δ=0.01) / "
              f"{row['lissa']['lissa_residual_own_damping_0.25']:.3g} (δ=0.25); CG "
              f"{row['lissa']['cg_residual_damping_0.01']:.3g}", flush=True)
    if not args.skip_naive:
        row["naive"] = measure_naive(name, args, problem, row)
    if not args.skip_decomposition:
        row["decomposition"] = measure_decomposition(name, args)
    return row


def measure_naive(name, args, problem, row) -> dict:
    target = row.get("ours", row.get("ours_plain"))["target"]
    if "lissa" in row:
        full_iters = int(row["lissa"]["plain_cg_iters"])
        iters_note = "plain-CG iterations that reach the same tolerance"
    else:
        full_iters = int(args.naive_iters)
        iters_note = "--naive-iters (run without LiSSA, so plain-CG iterations are unknown)"
    def naive(k):
        r = run_child("naive", args, problem, cg_iters=k, target=target)
        # the peak of the whole process, and what the unrolled solve adds above the RSS before it
        r["total_peak_bytes"] = max(r["setup_peak_bytes"], r["phase_peak_bytes"])
        r["unrolled_bytes"] = r["phase_peak_bytes"] - r["rss_before_bytes"]
        return r

    probes = {}
    for k in args.naive_probe:
        probes[k] = naive(k)
        print(f"[{name}] naive probe, {k} unrolled CG iterations: {probes[k]['seconds']:.2f} s, "
              f"graph {probes[k]['graph_bytes'] / GB:.3f} GB, "
              f"+{probes[k]['unrolled_bytes'] / GB:.2f} GB for the unrolled solve, process peak "
              f"{probes[k]['total_peak_bytes'] / GB:.2f} GB", flush=True)
    k1, k2 = sorted(probes)[:2]
    per_iter = max(0.0, (probes[k2]["unrolled_bytes"] - probes[k1]["unrolled_bytes"]) / (k2 - k1),
                   (probes[k2]["graph_bytes"] - probes[k1]["graph_bytes"]) / (k2 - k1))
    sec_per_iter = (probes[k2]["seconds"] - probes[k1]["seconds"]) / (k2 - k1)
    predicted = max(probes[k2]["setup_peak_bytes"],
                    probes[k2]["phase_peak_bytes"] + per_iter * (full_iters - k2))
    guard = min(args.naive_guard_gb * GB, 0.8 * mem_available_bytes())
    out = {"probes": probes, "bytes_per_iteration": per_iter,
           "seconds_per_iteration": sec_per_iter, "full_iters": full_iters,
           "full_iters_means": iters_note, "predicted_peak_bytes": predicted,
           "predicted_seconds": probes[k2]["seconds"] + sec_per_iter * (full_iters - k2),
           "guard_bytes": guard}
    if predicted > guard:
        out["skipped"] = (f"not run: {full_iters} unrolled iterations would need about "
                          f"{predicted / GB:.1f} GB, above the guard of {guard / GB:.1f} GB")
        print(f"[{name}] naive: {out['skipped']}", flush=True)
    else:
        out["full"] = naive(full_iters)
        print(f"[{name}] naive, {full_iters} iterations: {out['full']['seconds']:.1f} s, graph "
              f"{out['full']['graph_bytes'] / GB:.3f} GB, +{out['full']['unrolled_bytes'] / GB:.2f} GB, "
              f"process peak "
              f"{out['full']['total_peak_bytes'] / GB:.2f} GB", flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=None, choices=list(SHAPES),
                        help="default: all three paper shapes (with --quick: the tiny one)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: one tiny shape (n=2000, 5 classes), 64-d features "
                             "(48-d for the decomposition), 2 steps, 5 training epochs; no "
                             "original numbers to compare with")
    parser.add_argument("--d", type=int, default=D_FEATURES,
                        help="feature dimension of the main measurements (paper: 2048)")
    parser.add_argument("--original-d", type=int, default=ORIGINAL_D,
                        help="feature dimension of the decomposition (a)-(c): the original "
                             "code's measured shape (1280)")
    parser.add_argument("--original-steps", type=int, default=1,
                        help="steps of the original algorithm timed in our code (each 3 LiSSA "
                             "solves)")
    parser.add_argument("--skip-decomposition", action="store_true",
                        help="skip (a) original algorithm in our code, (b) equal accuracy")
    parser.add_argument("--steps", type=int, default=5, help="attack steps timed per shape")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2 = this CPU)")
    parser.add_argument("--tol", type=float, default=1e-2,
                        help="CG tolerance on the relative residual of both solves")
    parser.add_argument("--solver-opts", default="{}",
                        help="extra InverseHVP options for our CG as JSON, e.g. "
                             "'{\"precondition\": true}'")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic features")
    parser.add_argument("--train-epochs", type=int, default=30,
                        help="SGD epochs of the honest model (paper: 100; lr 1e-3, batch 64)")
    parser.add_argument("--skip-lissa", action="store_true",
                        help="skip the (slow) LiSSA solve with the original settings")
    parser.add_argument("--variants", nargs="+", default=["library", "plain"],
                        choices=["library", "plain"],
                        help="library: the attack's default (K-FAC-preconditioned CG, one "
                             "feature Gram per data set); plain: unpreconditioned CG")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--naive-guard-gb", type=float, default=16.0)
    parser.add_argument("--naive-probe", type=int, nargs=2, default=[10, 40],
                        help="two unrolled-iteration counts run first to extrapolate the memory")
    parser.add_argument("--naive-iters", type=int, default=100,
                        help="unrolled CG iterations of the naive run when LiSSA is skipped")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                          "amlib-influence-benchmark"),
                        help="cache of the generated problems")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    # internal: a child process
    parser.add_argument("--role", choices=list(ROLES), help=argparse.SUPPRESS)
    parser.add_argument("--problem", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--cg-iters", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--target", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="library", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        return child_main(args)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
        args.shapes = args.shapes or list(QUICK_SHAPES)
    args.shapes = args.shapes or list(SHAPES)
    if args.steps < 1 or args.tol <= 0:
        parser.error("--steps must be >= 1 and --tol > 0")
    import torch

    from amlib.provenance import provenance

    start = time.perf_counter()
    rows = []
    for name in args.shapes:
        row = measure_shape(name, args)
        for variant in args.variants:
            key = "" if variant == "library" else f"_{variant}"
            row["summary" + key] = summarise(row, "ours" + key)
        if "decomposition" in row:
            row["summary_decomposition"] = summarise_decomposition(
                row["decomposition"], row["original"], args.tol)
        rows.append(row)
    print()
    print_table(rows)
    config = {k: getattr(args, k) for k in ("shapes", "variants", "steps", "threads", "tol", "seed",
                                            "train_epochs", "skip_lissa", "skip_naive",
                                            "naive_guard_gb", "naive_probe", "quick", "d",
                                            "original_d", "original_steps",
                                            "skip_decomposition")}
    config.update(damping=DAMPING, eps=EPS, k=K_TOP, lr=LR, objective="higher_ranked",
                  speed_target=SPEED_TARGET, memory_target=MEMORY_TARGET, lissa=LISSA,
                  original_step=ORIGINAL_STEP, accuracy_ladder=list(LADDER),
                  reference_rtol=REF_RTOL)
    report = {"provenance": provenance("influence-benchmark", "benchmark", args.seed, config,
                                       wall_seconds=time.perf_counter() - start,
                                       cpu=_cpu_name(), cpu_count=os.cpu_count(),
                                       torch_threads=args.threads,
                                       torch_version=torch.__version__),
              "original_source": "issue 5: the authors' code on the same 2-core CPU, per step",
              "rows": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
