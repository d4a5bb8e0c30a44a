"""The data-valuation attack protocol of the influence paper (Sec. 4.1, Tables 1–2, Figs. 2–4).

:func:`~amlib.influence.run_targeted_attack` optimises one θ′ (Eq. 4; several targets: Eq. 5).
This module is the bookkeeping around it that turns runs into the paper's success rates:

- :class:`ValuationProblem`: the honest model θ* (a stationary fit of the L2-regularised
  softmax regression), the attack half of the test set (whose summed loss defines value, Eq. 3),
  the held-out half (accuracy and transfer) and the honest ranking (rank 0 = most valuable).
- :func:`search_target`: the single-target protocol for one target over a grid of relative radii
  ε, Adam learning rates and starting points (θ* first, then θ* + N(0, I) projected into the ball).
  Every run stops early once the target's rank is < min(ks) and records, for every k in ``ks``,
  the first step at which the rank fell below k and the accuracy drop there — so one run gives
  the success at k = 1 and at k = 10 (the objective "higher_ranked" does not depend on k, so the
  trajectory to rank < 10 is exactly the one an attack stopped at rank < 10 would take).
- The radius grid is *nested*: θ′ with ‖θ′ − θ*‖ ≤ 0.05‖θ*‖ also lies in the 0.1- and 0.5-balls,
  so an attacker allowed radius ε may output any θ′ found with a smaller radius. The outcome at ε
  is therefore the best run among radii ≤ ε ("best over the grid"), and the search stops for a
  target as soon as a run reaches rank < min(ks) with an accuracy drop ≤ ``max_drop``: the larger
  radii and the remaining learning rates / starts are not run for it. The accuracy drop reported
  for a success is that of the most accurate successful run *found* (the original code keeps the
  most accurate of all its runs; ours can only be less accurate, i.e. conservative).
- :func:`outcome` / :func:`regime_table`: per (ε, k) the success and the accuracy drop of every
  target, then the paper's two regimes: "high-accuracy" = the highest success rate over ε whose
  mean accuracy drop over successes is ≤ 3 points; "best" = the highest success rate over ε
  irrespective of accuracy (its mean drop in brackets).
- :func:`baseline_target`: the loss-reweighing baseline over a log-spaced λ grid, with the same
  two regimes (λ in the role of ε).
- :func:`multi_target`: Eq. 5 for a target set, success at several k from one trajectory.

Conventions: value = G_testᵀ(H + δI)⁻¹g_i (:mod:`amlib.influence.scores`) with the damping δ of
the problem; accuracy drops are fractions (honest − attacked) on the held-out half.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .fitting import fit_logistic
from .models import LogisticModel
from .scores import influence_values, ranks

__all__ = ["ValuationProblem", "valuation_problem", "pick_targets", "attack_run",
           "search_target", "outcome", "grid_regimes", "regime_table", "baseline_target",
           "baseline_outcome",
           "multi_target", "heldout_rank", "MAX_DROP"]

#: the high-accuracy regime: at most 3 points of held-out accuracy lost (Sec. 4.1)
MAX_DROP = 0.03


@dataclass
class ValuationProblem:
    """Everything a valuation attack needs, fixed once per data set."""

    model: LogisticModel
    theta_star: torch.Tensor
    X: torch.Tensor
    y: torch.Tensor
    X_test: torch.Tensor       # the attack half: value is computed on it (Eq. 3)
    y_test: torch.Tensor
    X_eval: torch.Tensor       # the held-out half: accuracy and transfer
    y_eval: torch.Tensor
    damping: float
    solver_opts: dict
    honest_values: torch.Tensor
    honest_ranks: torch.Tensor
    honest_accuracy: float
    fit_seconds: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.X.shape[0]

    def values(self, theta: torch.Tensor, X_test=None, y_test=None) -> torch.Tensor:
        """Values of every training point at θ on the attack half (or on (X_test, y_test))."""
        X_test = self.X_test if X_test is None else X_test
        y_test = self.y_test if y_test is None else y_test
        return influence_values(self.model, theta, self.X, self.y, X_test, y_test,
                                damping=self.damping, check_stationary=False,
                                **self.solver_opts).values


def valuation_problem(X, y, X_test, y_test, X_eval, y_eval, *, l2: float = 1e-3,
                      damping: float = 0.25, dtype=torch.float32, tol: float = 1e-3,
                      precondition: bool | str = False, n_classes: int | None = None,
                      fit_tol: float | None = None) -> ValuationProblem:
    """Fit θ* = argmin (1/n)Σℓ_i + (l2/2)‖θ‖² (Newton, to stationarity) and rank the training set.

    ``damping`` δ: influence uses (H + δI)⁻¹. The default 0.25 is the system the original code's
    LiSSA actually solves (damp 0.01 × scale 25; see :mod:`amlib.influence.hvp`). ``tol``,
    ``precondition``: the conjugate-gradient solves of every ranking and gradient.
    """
    def as_t(a, integer=False):
        if integer:
            return torch.as_tensor(np.asarray(a), dtype=torch.long)
        return torch.as_tensor(np.asarray(a), dtype=dtype)
    X, X_test, X_eval = as_t(X), as_t(X_test), as_t(X_eval)
    y, y_test, y_eval = as_t(y, True), as_t(y_test, True), as_t(y_eval, True)
    if not (damping >= 0 and math.isfinite(damping)):
        raise ValueError(f"damping must be a finite number >= 0, got {damping}")
    C = int(max(int(y.max()), int(y_test.max()), int(y_eval.max())) + 1) if n_classes is None \
        else int(n_classes)
    start = time.perf_counter()
    fit = fit_logistic(X, y, n_classes=C, l2=l2, dtype=dtype, tol=fit_tol, warn=True)
    seconds = time.perf_counter() - start
    opts = {"tol": tol, "precondition": precondition}
    inf = influence_values(fit.model, fit.theta, X, y, X_test, y_test, damping=damping,
                           check_stationary=False, **opts)
    return ValuationProblem(fit.model, fit.theta, X, y, X_test, y_test, X_eval, y_eval,
                            float(damping), opts, inf.values, ranks(inf.values),
                            fit.model.accuracy(fit.theta, X_eval, y_eval), seconds,
                            {"l2": l2, "fit_grad_norm": fit.grad_norm, "fit_iterations": fit.n_iter,
                             "dtype": str(dtype).replace("torch.", ""),
                             "n_params": fit.model.n_params})


def pick_targets(problem: ValuationProblem, n_targets: int, k: int, seed: int = 0,
                 exclude=()) -> list[int]:
    """``n_targets`` training points outside the honest top-k, in a seeded random order."""
    pool = [i for i in torch.randperm(problem.n, generator=torch.Generator().manual_seed(seed))
            .tolist() if int(problem.honest_ranks[i]) >= k and i not in set(exclude)]
    if n_targets > len(pool):
        raise ValueError(f"only {len(pool)} training points lie outside the top-{k}; ask for "
                         f"at most that many targets (got {n_targets})")
    return pool[:n_targets]


def _patient_class():
    """TargetedInfluenceAttack with an optional stall stop (built on first use: Lightning)."""
    global _PATIENT
    if _PATIENT is None:
        from . import TargetedInfluenceAttack

        class PatientAttack(TargetedInfluenceAttack):
            """Stops once the target's best rank is ``patience`` steps old (None: never)."""

            patience = None

            def training_step(self, batch, batch_idx):
                out = super().training_step(batch, batch_idx)
                if self.patience and not self.done:
                    ranks_so_far = [r["rank"] for r in self.history]
                    if len(ranks_so_far) - 1 - int(np.argmin(ranks_so_far)) >= self.patience:
                        self.trainer.should_stop = True
                return out

        _PATIENT = PatientAttack
    return _PATIENT


_PATIENT = None


def attack_run(problem: ValuationProblem, target, *, eps: float, lr: float, start="honest",
               objective: str = "higher_ranked", ks=(1, 10), steps: int = 100,
               lr_drop_step: int | None = 50, patience: int | None = None,
               init_std: float = 1.0) -> tuple[dict, torch.Tensor]:
    """One run of the single-target attack (:class:`~amlib.influence.TargetedInfluenceAttack`);
    returns (record, final θ′).

    ``start``: "honest" (θ*) or an integer seed for θ* + N(0, init_std²I) projected into the ball
    (:func:`~amlib.influence.random_initialisation`, as the original code's restarts). The run
    stops once the rank is < min(ks), or — with ``patience`` — once the target's best rank has not
    improved for that many steps (a stall; the paper runs every failing run to ``steps``). The
    record holds the settings, the length, the final rank and accuracy drop and, under ``reached``,
    for every k the target reached, the first step with rank < k and the accuracy drop there.
    """
    from . import random_initialisation
    honest = start == "honest"
    radius = eps * float(problem.theta_star.norm())
    init = problem.theta_star if honest else random_initialisation(problem.theta_star, radius,
                                                                   int(start), init_std)
    module = _patient_class()(
        problem.model, problem.theta_star, problem.X, problem.y, problem.X_test, problem.y_test,
        target, k=min(ks), eps=eps, objective=objective, lr=lr, steps=steps,
        lr_drop_step=lr_drop_step, theta_init=init, damping=problem.damping,
        solver_opts=dict(problem.solver_opts), precondition=problem.solver_opts["precondition"],
        X_eval=problem.X_eval, y_eval=problem.y_eval, early_stop=True)
    module.patience = patience
    module.fit(seed=0 if honest else int(start))
    h = module.history_frame()
    theta = module.theta.detach().clone()
    rank = h["rank"].to_numpy()
    drop = h["accuracy_drop"].to_numpy()
    reached = {}
    for k in ks:
        hit = np.flatnonzero(rank < k)
        if hit.size:
            reached[str(k)] = {"step": int(hit[0]), "accuracy_drop": float(drop[hit[0]])}
    record = {"eps": float(eps), "lr": float(lr), "start": "honest" if honest else int(start),
              "objective": objective, "steps": int(len(h) - 1), "initial_rank": int(rank[0]),
              "final_rank": int(rank[-1]), "min_rank": int(rank.min()),
              "final_accuracy_drop": float(drop[-1]),
              "distance_ratio": float(h["distance_ratio"].iloc[-1]),
              "seconds": float(h["seconds"].sum()), "reached": reached}
    return record, theta


def outcome(runs: list[dict], eps: float, k: int, *, starts: str = "all",
            objective: str = "higher_ranked", max_drop: float = MAX_DROP) -> dict:
    """The target's outcome at radius ε and rank k from its runs with radius ≤ ε (nested grid).

    ``starts``: "all" or "honest" (only runs from θ*). Returns ``success`` (some run reached
    rank < k), ``accuracy_drop`` (the smallest drop among those, NaN if none) and
    ``high_accuracy`` (some run reached it with drop ≤ ``max_drop``).
    """
    drops = [r["reached"][str(k)]["accuracy_drop"] for r in runs
             if r["eps"] <= eps + 1e-12 and r["objective"] == objective
             and (starts == "all" or r["start"] == "honest") and str(k) in r["reached"]]
    best = min(drops) if drops else float("nan")
    return {"success": bool(drops), "accuracy_drop": best,
            "high_accuracy": bool(drops) and best <= max_drop + 1e-12}


def search_target(problem: ValuationProblem, target: int, *, eps_grid=(0.05, 0.1, 0.5),
                  lrs=(0.01, 0.1), n_random: int = 4, objective: str = "higher_ranked",
                  ks=(1, 10), steps: int = 100, lr_drop_step: int | None = 50,
                  max_drop: float = MAX_DROP, seed: int = 0, patience: int | None = None,
                  random_eps=None, keep_thetas: bool = False) -> dict:
    """The single-target protocol for one target (see the module docstring).

    Phase 1 runs from θ* for every ε (ascending) and learning rate; phase 2 from ``n_random``
    random starts per ε of ``random_eps`` (default: every ε), seed-major (all learning rates of
    start 1, then start 2, ...), so a search with fewer starts is a prefix of this one. A (phase, ε) is skipped once a run with radius ≤ ε reached rank
    < min(ks) within ``max_drop`` (phase 1 counts θ*-runs only, so the ablation "without random
    initialisations" is read off the same runs). Returns the runs and, with ``keep_thetas``, the
    final θ′ of every run that reached rank < min(ks) (for transfer and detection).
    """
    kmin = min(ks)
    runs, thetas = [], []

    def go(eps, lr, start):
        record, theta = attack_run(problem, target, eps=eps, lr=lr, start=start,
                                   objective=objective, ks=ks, steps=steps,
                                   lr_drop_step=lr_drop_step, patience=patience)
        runs.append(record)
        if keep_thetas and str(kmin) in record["reached"]:
            thetas.append((len(runs) - 1, theta))

    for eps in sorted(eps_grid):
        for lr in lrs:
            if outcome(runs, eps, kmin, starts="honest", objective=objective,
                       max_drop=max_drop)["high_accuracy"]:
                break
            go(eps, lr, "honest")
    for eps in sorted(eps_grid if random_eps is None else random_eps):
        for i in range(n_random):
            for lr in lrs:
                if outcome(runs, eps, kmin, objective=objective,
                           max_drop=max_drop)["high_accuracy"]:
                    break
                go(eps, lr, seed + 7919 * int(target) + i)
    return {"target": int(target), "initial_rank": int(problem.honest_ranks[target]),
            "runs": runs, "thetas": thetas}


def grid_regimes(success: np.ndarray, drops: np.ndarray, *, max_drop: float = MAX_DROP) -> dict:
    """The two regimes, target by target over the whole grid (the rule of our Table 1).

    ``success`` (settings × targets, bool) and ``drops`` (same shape, the smallest accuracy drop
    of a success, NaN otherwise) per setting (ε or λ). A target succeeds in "high-accuracy" when
    some setting succeeded with a drop ≤ ``max_drop``, in "best" when some setting succeeded; the
    rate is the share of such targets, the drop the mean over them of their smallest qualifying
    drop. (For the attack the radii are nested, so "some ε" is the largest ε.)
    """
    success = np.asarray(success, dtype=bool)
    drops = np.where(success, np.asarray(drops, dtype=float), np.inf)
    best = drops.min(axis=0)
    out = {}
    for regime, ok in (("high-accuracy", best <= max_drop + 1e-12),
                       ("best", np.isfinite(best))):
        out[regime] = {"success_rate": float(ok.mean()),
                       "accuracy_drop": float(best[ok].mean()) if ok.any() else float("nan")}
    return out


def regime_table(success: np.ndarray, drops: np.ndarray, labels, *,
                 max_drop: float = MAX_DROP) -> dict:
    """The two regimes from per-setting *averages* (our reading of the paper's rule).

    ``success`` (settings × targets, bool), ``drops`` (same shape, the accuracy drop of each
    success, NaN otherwise), ``labels`` one per setting (ε or λ). "high-accuracy": the setting
    with the highest success rate among those whose mean drop over successes is ≤ ``max_drop``
    (a setting without successes has rate 0 and qualifies); "best": the highest success rate
    overall. Ties go to the smaller mean drop. Returns both with rate, mean drop and label.
    """
    success = np.asarray(success, dtype=bool)
    drops = np.asarray(drops, dtype=float)
    rates = success.mean(axis=1)
    means = np.array([float(np.mean(d[s])) if s.any() else 0.0 for s, d in zip(success, drops)])
    out = {}
    for regime, allowed in (("high-accuracy", means <= max_drop + 1e-12),
                            ("best", np.ones_like(rates, dtype=bool))):
        idx = [i for i in range(len(rates)) if allowed[i]]
        if not idx:
            out[regime] = {"success_rate": 0.0, "accuracy_drop": float("nan"), "setting": None}
            continue
        i = min(idx, key=lambda j: (-rates[j], means[j]))
        out[regime] = {"success_rate": float(rates[i]),
                       "accuracy_drop": float(means[i]) if success[i].any() else float("nan"),
                       "setting": labels[i]}
    return out


def baseline_target(problem: ValuationProblem, target: int, *,
                    lambdas=(10.0, 100.0, 1e3, 1e4, 1e5), ks=(1, 10),
                    fit_tol: float | None = None, max_iter: int = 50) -> dict:
    """The loss-reweighing baseline for one target over a log-spaced λ grid.

    Wraps :func:`~amlib.influence.loss_reweighing_baseline` (exact weighted refit, warm-started
    along the grid; ranking with the problem's damping and solver). One row per λ with the
    target's rank and the held-out accuracy drop; success at every k in ``ks``.
    """
    from . import loss_reweighing_baseline
    frame = loss_reweighing_baseline(
        problem.model, problem.X, problem.y, problem.X_test, problem.y_test, target,
        theta_star=problem.theta_star, lambdas=lambdas, k=min(ks), damping=problem.damping,
        solver_opts={"tol": problem.solver_opts["tol"]},
        precondition=problem.solver_opts["precondition"], X_eval=problem.X_eval,
        y_eval=problem.y_eval, tol=fit_tol, max_iter=max_iter)
    rows = [{"lambda": float(r["lambda"]), "target_rank": int(r["target_rank"]),
             "accuracy_drop": float(r["accuracy_drop"]),
             "distance_ratio": float(r["distance_ratio"]),
             "fit_converged": bool(r["fit_converged"])} for _, r in frame.iterrows()]
    return {"target": int(target), "initial_rank": int(problem.honest_ranks[target]),
            "rows": rows}


def baseline_outcome(rows: list[dict], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per λ: (success, accuracy drop or NaN) of one target at rank k."""
    success = np.array([r["target_rank"] < k for r in rows])
    drops = np.array([r["accuracy_drop"] if s else np.nan for r, s in zip(rows, success)])
    return success, drops


def heldout_rank(problem: ValuationProblem, theta: torch.Tensor, target: int) -> int:
    """The target's rank when value is computed on the held-out half instead (transfer)."""
    return int(ranks(problem.values(theta, problem.X_eval, problem.y_eval))[target])


def multi_target(problem: ValuationProblem, targets, *, eps: float, lr: float, ks,
                 steps: int = 100, lr_drop_step: int | None = 50,
                 max_drop: float = MAX_DROP) -> dict:
    """The multi-target attack (Eq. 5) on ``targets``, success at every k from one trajectory.

    No early stop (the trajectory is recorded to the end). For every k: the best step's share of
    targets with rank < k, in the two regimes ("high-accuracy": among steps whose accuracy drop
    is ≤ ``max_drop``; "best": any step), the share of the top-k places the targets hold there,
    and the per-target ranks at θ* and at the best step.
    """
    from . import run_targeted_attack
    result = run_targeted_attack(
        problem.model, problem.theta_star, problem.X, problem.y, problem.X_test, problem.y_test,
        list(targets), k=max(ks), eps=eps, lr=lr, steps=steps, lr_drop_step=lr_drop_step,
        damping=problem.damping, solver_opts=dict(problem.solver_opts),
        precondition=problem.solver_opts["precondition"], X_eval=problem.X_eval,
        y_eval=problem.y_eval, early_stop=False)
    h = result.history
    R = np.array([list(r) for r in h["ranks"]])          # steps × targets
    drop = h["accuracy_drop"].to_numpy()
    out = {"eps": eps, "lr": lr, "n_targets": len(targets), "steps": int(len(h) - 1),
           "initial_ranks": R[0].tolist(), "seconds": float(h["seconds"].sum()), "by_k": {}}
    for k in ks:
        share = (R < k).mean(axis=1)
        spots = (R < k).sum(axis=1) / k
        entry = {}
        for regime, ok in (("high-accuracy", drop <= max_drop + 1e-12),
                           ("best", np.ones_like(drop, dtype=bool))):
            if not ok.any():
                entry[regime] = {"success_rate": 0.0, "top_k_share": 0.0,
                                 "accuracy_drop": float("nan"), "step": None}
                continue
            i = int(np.flatnonzero(ok)[np.argmax(share[ok])])
            entry[regime] = {"success_rate": float(share[i]), "top_k_share": float(spots[i]),
                             "accuracy_drop": float(drop[i]), "step": i,
                             "final_ranks": R[i].tolist()}
        out["by_k"][str(k)] = entry
    return out
