"""Targeted attacks on influence-based data valuation (influence paper, Sec. 4, Eqs. 4–5, Alg. 3).

The adversary trains the model, so it may output any θ' in the ball ‖θ' − θ*‖ ≤ ε‖θ*‖ (the
original code's relative radius) around the honest optimum θ*. It wants the target training
point(s) in the top-k of the ranking by value (rank < k, rank 0 = most valuable; see
:mod:`amlib.influence.scores`) while test accuracy stays close to the honest model's.

:class:`TargetedInfluenceAttack` is the optimisation loop as a Lightning module with manual
optimisation; every step

1. solves s_a = (H + δI)⁻¹G_test at the current θ (CG warm-started from the previous step and,
   by default, K-FAC-preconditioned where the condition number is estimated above the measured
   crossover, with a feature Gram matrix factorised once per data set; see
   :func:`~amlib.influence.preconditioners.choose_preconditioner`) and ranks all n points from
   one matrix product; logs the target's rank, the objective and the
   accuracy; stops early once every target has rank < k;
2. linearises the objective (:func:`~amlib.influence.surrogate.attack_coefficients`: "max_target",
   "top_k" or the paper's "higher_ranked"; several targets: coefficients summed, Eq. 5);
3. takes the backward-friendly gradient (Alg. 1, :func:`~amlib.influence.surrogate.surrogate_gradient`),
   an Adam step (learning rate ×0.1 at step ``lr_drop_step``), and projects back onto the ball.

:func:`run_targeted_attack` runs it from several initialisations — θ* itself and/or
θ* + N(0, I) projected into the ball — and keeps the best run (a successful run with the highest
accuracy, else the lowest rank), as the original code does per target.

:func:`loss_reweighing_baseline` is the paper's non-influence baseline: retrain with the target's
loss weighted by λ and rank with the honest influence formula. The paper oversampled the target
with a weighted sampler in minibatch Adam (direct reweighing was unstable there); we minimise
the exactly weighted full-batch objective (1/n)(Σ_{i≠t} ℓ_i + λ ℓ_t) + (l2/2)‖θ‖² with Newton,
which is the optimum that the sampler approximates.

The untargeted scaling attack θ → s·θ is :func:`~amlib.influence.models.scale_theta`.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import torch
from torch import nn

import pytorch_lightning as pl

from ..training import fit_full_batch, one_batch_loader

from .fitting import fit_logistic
from .models import LogisticModel, check_theta
from .preconditioners import FeatureGram
from .scores import influence_values, ranks, values_and_ranks
from .surrogate import (OBJECTIVES, attack_coefficients, check_targets, project_to_ball,
                        random_initialisation, surrogate_gradient)

__all__ = ["project_to_ball", "TargetedInfluenceAttack", "AttackResult", "run_targeted_attack",
           "loss_reweighing_baseline", "random_initialisation"]


def _cg_options(model: LogisticModel, X: torch.Tensor, method: str,
                precondition: bool | str | None, solver_opts: dict | None) -> dict:
    """The solver options of an attack: for CG, ``precondition`` (unless ``solver_opts`` sets
    one) and, for "kfac", the :class:`FeatureGram` of X (built once per data set,
    :meth:`FeatureGram.cached`, unless one is given). "auto" leaves the choice to every solve
    (K-FAC, with the same cached Gram, only above the condition-number crossover)."""
    opts = dict(solver_opts or {})
    if method != "cg":
        return opts
    opts.setdefault("precondition", precondition)
    if opts["precondition"] == "kfac" and opts.get("gram") is None:
        opts["gram"] = FeatureGram.cached(model, X)
    return opts


class TargetedInfluenceAttack(pl.LightningModule):
    """Projected Adam on the backward-friendly attack objective (Alg. 3), one step per epoch.

    Parameters
    ----------
    model, theta_star : the honest model and its parameters θ*.
    X, y, X_test, y_test : training data and the test set that defines the valuation (Eq. 3).
    targets : one index or a list (multi-target attack, Eq. 5).
    k : success means rank < k. eps : radius of the ball, relative to ‖θ*‖.
    objective : "higher_ranked" (the paper's), "top_k" or "max_target" (ablation, Table 2).
    lr, steps, lr_drop_step, lr_drop : Adam's learning rate, the number of steps, and the step
        at which the learning rate is multiplied by ``lr_drop``.
    theta_init : the starting point (default θ*); it is projected into the ball.
    method, damping, solver_opts : the inverse-HVP solver (see :func:`~amlib.influence.InverseHVP`);
        ``solver_opts={"rtol": ...}`` (with l2 + damping > 0) runs every solve to that relative
        error, in float32 where it allows (the same ranks and gradients, tested).
    precondition : CG's preconditioner: ``"auto"`` (default: K-FAC where the condition number
        is estimated at or above :data:`~amlib.influence.preconditioners.KFAC_MIN_CONDITION`,
        none below), ``"kfac"`` (its feature Gram matrix is eigendecomposed once per data set,
        or taken from ``solver_opts["gram"]``), ``"jacobi"`` or ``False`` (none). It changes the iterations per solve, not the solutions.
        ``solver_opts["precondition"]``, if given, takes precedence.
    X_eval, y_eval : the set whose accuracy is logged (default the test set).
    early_stop : stop as soon as every target has rank < k.

    After :meth:`fit`, :attr:`history` has one dict per evaluated θ (step, rank, objective,
    accuracy, ...); :attr:`theta` is the final parameter vector.
    """

    def __init__(self, model: LogisticModel, theta_star: torch.Tensor, X, y, X_test, y_test,
                 targets, *, k: int = 1, eps: float = 0.1, objective: str = "higher_ranked",
                 lr: float = 0.01, steps: int = 100, lr_drop_step: int | None = 50,
                 lr_drop: float = 0.1, theta_init: torch.Tensor | None = None,
                 method: str = "cg", damping: float = 0.0, solver_opts: dict | None = None,
                 precondition: bool | str | None = "auto",
                 X_eval=None, y_eval=None, early_stop: bool = True,
                 progress_bar: bool | None = None, num_threads: int | None = None):
        super().__init__()
        check_theta(model, theta_star)
        X, y = model.validate(theta_star, X, y)
        X_test, y_test = model.validate(theta_star, X_test, y_test, name="_test")
        if X_eval is None:
            X_eval, y_eval = X_test, y_test
        else:
            X_eval, y_eval = model.validate(theta_star, X_eval, y_eval, name="_eval")
        n = X.shape[0]
        self.single = not isinstance(targets, (list, tuple, np.ndarray, torch.Tensor)) or (
            getattr(targets, "ndim", 1) == 0)
        self.targets = check_targets(targets, n, k)
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; use one of {OBJECTIVES}")
        if not (eps >= 0 and math.isfinite(eps)):
            raise ValueError(f"eps must be a finite number >= 0, got {eps}")
        if lr <= 0 or steps < 0:
            raise ValueError("lr must be > 0 and steps >= 0")
        self.automatic_optimization = False
        self.model = model
        self.k, self.eps, self.objective = int(k), float(eps), objective
        self.lr, self.steps = float(lr), int(steps)
        self.lr_drop_step, self.lr_drop = lr_drop_step, float(lr_drop)
        self.method, self.damping = method, float(damping)
        self.solver_opts = _cg_options(model, X, method, precondition, solver_opts)
        self.early_stop = early_stop
        self.progress_bar, self.num_threads = progress_bar, num_threads
        for name, value in (("X", X), ("y", y), ("X_test", X_test), ("y_test", y_test),
                            ("X_eval", X_eval), ("y_eval", y_eval),
                            ("theta_star", theta_star.detach().clone())):
            self.register_buffer(name, value, persistent=False)
        self.radius = self.eps * float(theta_star.norm())
        start = theta_star.detach() if theta_init is None else theta_init.detach().to(theta_star)
        self.theta = nn.Parameter(project_to_ball(start.clone(), self.theta_star, self.radius))
        with torch.no_grad():
            self.honest_accuracy = float((model.predict(theta_star, X_eval) == y_eval)
                                         .double().mean())
        self.history: list[dict] = []
        self.done = False
        self._s_a = None
        self._s_b = None
        self._last = None

    # ----- one evaluation of the ranking at the current θ ---------------------------------
    def evaluate(self, theta: torch.Tensor | None = None) -> dict:
        """Rank every training point at θ (default the current one) and summarise the targets."""
        t0 = time.perf_counter()
        model = self.model
        theta = (self.theta if theta is None else theta).detach()
        result = values_and_ranks(model, theta, self.X, self.y, self.X_test, self.y_test,
                                  x0=self._s_a if self.method == "cg" else None,
                                  method=self.method, damping=self.damping, **self.solver_opts)
        values, info = result.values, result.ihvp_info
        with torch.no_grad():
            acc = float((model.predict(theta, self.X_eval) == self.y_eval).double().mean())
        r = result.ranks()
        target_ranks = [int(r[t]) for t in self.targets]
        c = attack_coefficients(values, self.targets if not self.single else self.targets[0],
                                self.k, self.objective)
        record = {
            "step": len(self.history),
            "rank": target_ranks[0] if self.single else min(target_ranks),
            "success_rate": float(np.mean([tr < self.k for tr in target_ranks])),
            "objective": float(c @ values),
            "accuracy": acc,
            "accuracy_drop": self.honest_accuracy - acc,
            "distance_ratio": float((theta - self.theta_star).norm())
            / max(float(self.theta_star.norm()), 1e-300),
            "lr": None,
            "solver_iterations": int(info.iterations),
            "solver_residual": float(info.relative_residual),
            "rank_iterations": int(info.iterations),
            "rank_residual": float(info.relative_residual),
            "seconds": 0.0,
        }
        if not self.single:
            record["mean_rank"] = float(np.mean(target_ranks))
            record["ranks"] = tuple(target_ranks)
        self._s_a = info.solution
        self._last = {"values": values, "c": c, "solver": result.solver, "s_a": info.solution,
                      "ranks": target_ranks, "t0": t0}
        return record

    @property
    def target_ranks(self) -> list[int]:
        """The targets' ranks at the last evaluated θ."""
        return list(self._last["ranks"])

    def forget_warm_start(self) -> None:
        """Start the next solve cold (after evaluating a θ that is not on the attack's path)."""
        self._s_a = None

    # ----- one step of Alg. 3 -------------------------------------------------------------
    def attack_step(self, optimizer, scheduler=None) -> dict:
        """Rank at the current θ, then (unless every target is already in the top-k and
        ``early_stop``) the backward-friendly gradient, an optimizer step, the scheduler's step
        and the projection onto the ball. Appends and returns the step's record, with the
        solves' iterations and residuals and the seconds of each phase (ranking, gradient,
        update). Lightning calls it once per epoch (:meth:`training_step`); the benchmark calls
        it directly with the pair from :meth:`make_optimizer`."""
        record = self.evaluate()
        self.history.append(record)
        last = self._last
        if self.early_stop and record["success_rate"] == 1.0:
            self.done = True
            record["seconds"] = time.perf_counter() - last["t0"]
            return record
        t1 = time.perf_counter()
        out = surrogate_gradient(self.model, self.theta.detach(), self.X, self.y, self.X_test,
                                 self.y_test, last["c"], s_a=last["s_a"],
                                 x0=self._s_b if self.method == "cg" else None,
                                 solver=last["solver"])
        self._s_b = out.s_b
        t2 = time.perf_counter()
        record["lr"] = float(optimizer.param_groups[0]["lr"])   # the rate this step uses
        optimizer.zero_grad()
        self.theta.grad = out.grad.to(self.theta.dtype)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        with torch.no_grad():
            self.theta.copy_(project_to_ball(self.theta, self.theta_star, self.radius))
        t3 = time.perf_counter()
        record["gradient_iterations"] = int(out.ihvp_info.iterations)
        record["gradient_residual"] = float(out.ihvp_info.relative_residual)
        record["solver_iterations"] += record["gradient_iterations"]
        record["solver_residual"] = max(record["solver_residual"], record["gradient_residual"])
        record.update(rank_seconds=t1 - last["t0"], gradient_seconds=t2 - t1,
                      update_seconds=t3 - t2, seconds=t3 - last["t0"])
        return record

    def make_optimizer(self):
        """(Adam on θ, the StepLR that multiplies its rate by ``lr_drop`` at ``lr_drop_step``,
        or None when there is no drop)."""
        opt = torch.optim.Adam([self.theta], lr=self.lr)
        if self.lr_drop_step is None or self.lr_drop_step <= 0:
            return opt, None
        return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=int(self.lr_drop_step),
                                                    gamma=self.lr_drop)

    # ----- Lightning hooks -------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        self.attack_step(self.optimizers(), self.lr_schedulers())
        if self.done:
            self.trainer.should_stop = True
        return None

    def configure_optimizers(self):
        opt, sched = self.make_optimizer()
        if sched is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def train_dataloader(self):
        return one_batch_loader()

    def fit(self, seed: int = 0) -> "TargetedInfluenceAttack":
        """Run up to ``steps`` projected Adam steps, then evaluate the final θ."""
        accelerator = "gpu" if self.X.device.type == "cuda" else "cpu"
        fit_full_batch(self, self.steps, seed, progress_bar=self.progress_bar,
                       num_threads=self.num_threads, accelerator=accelerator)
        if not self.done:   # the θ after the last step has not been ranked yet
            threads = torch.get_num_threads()
            if self.num_threads:
                torch.set_num_threads(self.num_threads)
            try:
                record = self.evaluate()
            finally:
                torch.set_num_threads(threads)
            record["seconds"] = time.perf_counter() - self._last["t0"]
            self.history.append(record)
            self.done = record["success_rate"] == 1.0
        return self

    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.history)


class AttackResult:
    """The best run of a targeted attack.

    ``theta`` the manipulated parameters; ``success`` every target has rank < k;
    ``success_rate`` the share of targets with rank < k; ``final_rank`` the target's rank (a list
    for several targets); ``history`` the chosen run's per-step log (DataFrame); ``accuracy``,
    ``honest_accuracy`` and ``accuracy_drop`` (honest − attacked, a fraction) on the evaluation
    set; ``init_index`` the chosen initialisation (0 = θ* when ``honest_init``); ``runs`` one row
    per initialisation; ``initial_rank`` the target rank(s) under θ*.
    """

    def __init__(self, module: TargetedInfluenceAttack, init_index: int, runs: pd.DataFrame,
                 initial_ranks: list[int]):
        last = module.history[-1]
        self.theta = module.theta.detach().clone()
        self.targets = module.targets
        self.k = module.k
        self.final_ranks = module.target_ranks
        self.final_rank = self.final_ranks[0] if module.single else self.final_ranks
        self.success_rate = last["success_rate"]
        self.success = self.success_rate == 1.0
        self.accuracy = last["accuracy"]
        self.honest_accuracy = module.honest_accuracy
        self.accuracy_drop = module.honest_accuracy - last["accuracy"]
        self.history = module.history_frame()
        self.init_index = init_index
        self.runs = runs
        self.initial_rank = initial_ranks[0] if module.single else initial_ranks
        self.steps = int(len(module.history) - 1)
        self.distance_ratio = last["distance_ratio"]

    def __repr__(self):
        return (f"AttackResult(success={self.success}, final_rank={self.final_rank}, "
                f"initial_rank={self.initial_rank}, accuracy_drop={self.accuracy_drop:.4f}, "
                f"steps={self.steps}, init_index={self.init_index})")


def run_targeted_attack(model: LogisticModel, theta_star: torch.Tensor, X, y, X_test, y_test,
                        targets, *, k: int = 1, eps: float = 0.1,
                        objective: str = "higher_ranked", lr: float = 0.01, steps: int = 100,
                        lr_drop_step: int | None = 50, n_inits: int = 1, honest_init: bool = True,
                        init_std: float = 1.0, seed: int = 0, method: str = "cg",
                        damping: float = 0.0, solver_opts: dict | None = None,
                        precondition: bool | str | None = "auto", X_eval=None,
                        y_eval=None, early_stop: bool = True, progress: bool = False,
                        num_threads: int | None = None) -> AttackResult:
    """The targeted attack (Eq. 4; several targets: Eq. 5) from ``n_inits`` starting points.

    Initialisation i uses θ* when ``honest_init`` and i = 0, else θ* + N(0, init_std²·I)
    projected into the ball (seed ``seed + i``), as the original code's random restarts.
    The best run is kept: the highest success rate, then (if any target succeeded) the highest
    accuracy, else the lowest mean rank. See :class:`TargetedInfluenceAttack` for the rest (the
    K-FAC feature Gram matrix is factorised once for all initialisations).
    """
    if n_inits < 1:
        raise ValueError("n_inits must be >= 1")
    # one K-FAC feature Gram for every initialisation
    solver_opts = _cg_options(model, model.validate(theta_star, X), method, precondition,
                              solver_opts)
    common = dict(k=k, eps=eps, objective=objective, lr=lr, steps=steps,
                  lr_drop_step=lr_drop_step, method=method, damping=damping,
                  solver_opts=solver_opts, precondition=precondition, X_eval=X_eval,
                  y_eval=y_eval, early_stop=early_stop, progress_bar=progress,
                  num_threads=num_threads)
    radius = eps * float(theta_star.norm())
    best, best_key, best_i = None, None, -1
    rows = []
    initial = None
    for i in range(n_inits):
        init = theta_star.detach() if (honest_init and i == 0) else \
            random_initialisation(theta_star.detach(), radius, seed + i, init_std)
        module = TargetedInfluenceAttack(model, theta_star, X, y, X_test, y_test, targets,
                                         theta_init=init, **common)
        if initial is None:
            module.evaluate(theta_star.detach())
            initial = module.target_ranks
            module.forget_warm_start()
        module.fit(seed=seed + i)
        last = module.history[-1]
        mean_rank = float(np.mean(module.target_ranks))
        rows.append({"init": i, "start": "honest" if (honest_init and i == 0) else "random",
                     "success_rate": last["success_rate"], "rank": last["rank"],
                     "mean_rank": mean_rank, "accuracy": last["accuracy"],
                     "accuracy_drop": last["accuracy_drop"], "steps": len(module.history) - 1})
        key = (last["success_rate"], last["accuracy"] if last["success_rate"] > 0 else -mean_rank)
        if best_key is None or key > best_key:
            best, best_key, best_i = module, key, i
    return AttackResult(best, best_i, pd.DataFrame(rows), initial)


def loss_reweighing_baseline(model: LogisticModel, X, y, X_test, y_test, target: int, *,
                             theta_star: torch.Tensor | None = None,
                             lambdas=(1, 10, 100, 1_000, 10_000, 100_000), k: int = 1,
                             method: str = "cg", damping: float = 0.0,
                             solver_opts: dict | None = None,
                             precondition: bool | str | None = "auto", X_eval=None, y_eval=None,
                             tol: float | None = None, max_iter: int = 100) -> pd.DataFrame:
    """The loss-reweighing baseline (Sec. 4.1): up-weight the target's loss by λ and retrain.

    For each λ (a log grid), minimise (1/n)(Σ_{i≠t} ℓ_i + λ ℓ_t) + (l2/2)‖θ‖² exactly (full-batch
    Newton, warm-started from the previous λ; the paper used a weighted sampler instead), then rank
    with the honest influence formula at the new θ. Returns one row per λ: the target's rank and
    value, success (rank < k), accuracy and its drop on the evaluation set (default the test set),
    the distance ‖θ_λ − θ*‖/‖θ*‖ and the weighted fit's gradient norm. ``precondition``: CG's
    preconditioner for the rankings, as in :class:`TargetedInfluenceAttack`.
    """
    X, y = model.validate(None, X, y)
    X_test, y_test = model.validate(None, X_test, y_test, name="_test")
    (target,) = check_targets(int(target), X.shape[0], k)
    X_eval, y_eval = (X_test, y_test) if X_eval is None else model.validate(None, X_eval, y_eval,
                                                                              name="_eval")
    solver_opts = _cg_options(model, X, method, precondition, solver_opts)
    lambdas = [float(v) for v in lambdas]
    if any(not (v > 0 and math.isfinite(v)) for v in lambdas):
        raise ValueError("every λ must be a finite number > 0")
    fit_opts = dict(n_classes=model.n_classes, bias=model.bias, l2=model.l2, tol=tol,
                    max_iter=max_iter, dtype=X.dtype, warn=False)
    if theta_star is None:
        theta_star = fit_logistic(X, y, **fit_opts).theta
    honest_acc = model.accuracy(theta_star, X_eval, y_eval)
    theta = theta_star.detach().to(X.dtype)
    rows = []
    for lam in lambdas:
        w = torch.ones(X.shape[0], dtype=X.dtype, device=X.device)
        w[target] = lam
        fit = fit_logistic(X, y, sample_weight=w, theta0=theta, **fit_opts)
        theta = fit.theta
        inf = influence_values(model, theta, X, y, X_test, y_test, method=method,
                               damping=damping, check_stationary=False, **solver_opts)
        rank = int(ranks(inf.values)[target])
        acc = model.accuracy(theta, X_eval, y_eval)
        rows.append({"lambda": lam, "target_rank": rank,
                     "target_value": float(inf.values[target]), "success": rank < k,
                     "accuracy": acc, "accuracy_drop": honest_acc - acc,
                     "distance_ratio": float((theta - theta_star).norm())
                     / max(float(theta_star.norm()), 1e-300),
                     "fit_grad_norm": fit.grad_norm, "fit_converged": fit.converged})
    return pd.DataFrame(rows)
