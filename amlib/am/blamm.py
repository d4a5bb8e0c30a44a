"""BLAMM — the bi-level trainer of an adversarial missingness mechanism (AM paper, Algorithm 2).

.. rubric:: Usage

>>> attack = BLAMM(frame, response="y", masked=["x1"], family="bernoulli", proxy="mean",
...                lam_upper=0.01, lr=0.01, epochs=200, seed=0).fit()
>>> attack.missing_rate()                     # expected share of masked entries hidden
>>> frames = attack.sample_masks(20, seed=1)  # DataFrames with NaNs for the modeler
>>> mcar = attack.sample_masks(20, seed=1, mechanism="mcar")   # the same-rate MCAR baseline

.. rubric:: What it optimises

Each epoch is one full-batch step of

    ℓ(φ) = g(θ̃(φ)) + λ_upper · Ω(φ),     θ̃(φ) = argmin_θ f̃(θ, φ) + (λ_lower/2)‖θ‖²   (eqs. 2, 12)

- the mechanism p(r|x; φ) (:mod:`amlib.am.missingness.mechanisms`): ``"neural"`` (one hidden layer,
  ``hidden`` units, inputs standardised; a Bernoulli response is left as 0/1), ``"per-sample"``,
  or any module mapping the conditioning matrix ``Z = [X, y]`` to (N, 2^|M|) probabilities; with
  ``access < 1`` it is wrapped in the partial-access mixture of eq. 24;
- the proxy f̃ (``"cca"`` eq. 5.1, ``"mean"`` eqs. 8–11, ``"regression"`` App. B);
- the lower level solved by weighted IRLS (Algorithm 1) and differentiated implicitly (eq. 23,
  :func:`amlib.am.implicit.glm_argmin`), with App. D.3's L2 fallback;
- the upper objective ``g``: ``"kl"`` — mean KL from the adversarial GLM θα to θ̃ (App. C.2), θα
  being the constrained MLE with the ``target`` coefficient fixed at zero (eq. 22; Gaussian KL
  uses θα's residual variance as dispersion); ``"ate"`` — ``|τ̂(θ̃) − τα|`` with the treatment
  column ``treatment`` (App. C.2); or a callable ``g(theta, module) -> scalar``;
- Ω = expected fraction of the ``d`` features hidden (Section 4).

Training uses Adam (``lr``) for ``epochs`` epochs under a Lightning ``Trainer`` on the CPU, is
seeded, quiet by default (progress bar only when interactive), and logs ``loss``, ``g``,
``omega``, ``missing_rate`` and the IRLS iteration count per epoch to a CSV logger when
``log_dir`` is given; :attr:`history` keeps the same numbers in memory.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

import pytorch_lightning as pl

from ..training import fit_full_batch, one_batch_loader

from ..validation import (InvalidDataError, SeparationError, check_count, check_number,
                          check_unique)
from .glm import (PerfectSeparationError, SingularDesignError, add_intercept, ate,
                  constrained_mle, get_family, kl_divergence)
from .implicit import glm_argmin
from .missingness.mechanisms import (NeuralMechanism, PartialAccess, PerSampleMechanism,
                                     Standardizer, LogisticMNAR, apply_patterns,
                                     expected_missing_fraction, masked_missing_rate,
                                     mcar_matched, observed_marginals, sample_patterns)
from .missingness.proxies import PROXIES, build_design

__all__ = ["BLAMM"]


def _mechanism_name(mechanism: str) -> str:
    # "learned" was the learned mechanism's name before "blamm"; code written then still runs
    return "blamm" if mechanism == "learned" else mechanism


class BLAMM(pl.LightningModule):
    """Learn an adversarial missingness mechanism by bi-level optimisation (Algorithm 2).

    Parameters
    ----------
    data : pandas.DataFrame
        The attacker's complete table (numeric; NaNs are an error).
    response : str
        Name of the response column ``y``.
    masked : str or list of str
        The masked feature set M (at least one feature must stay observed).
    family : str
        ``"gaussian"``, ``"bernoulli"`` (``"binomial"``) or ``"poisson"``.
    proxy : str
        ``"mean"``, ``"cca"`` or ``"regression"``.  Every later parameter is keyword-only.
    features : list of str, optional
        The model's features (default: every column but the response).
    mechanism : str or torch.nn.Module
        ``"neural"`` (default), ``"per-sample"`` or a module.
    objective : str or callable
        ``"kl"`` (default), ``"ate"`` or a callable ``g(theta, module)``.
    target : str, optional
        The feature whose coefficient θα fixes at zero (default ``masked[0]``).
    theta_alpha : array-like, optional
        Override θα (intercept first, then ``features``).
    treatment, tau_alpha : str, float
        The ATE task's treatment column and target ATE (default 0.1).
    access : float
        The share N0/N of rows the adversary controls (eq. 24), default 1.
    lam_upper, lam_lower : float
        λ on Ω (≥ 0) and the lower-level L2 (≥ 0), in BLAMM's units;
        :func:`amlib.am.attack.train_attack` converts the paper's Table 4 values.
    lr, epochs, seed, hidden : float, int, int, int
        Adam's step size, number of steps, seed, hidden width.
    fallback_l2, tol, max_iter : float, float, int
        The lower level's App. D.3 L2 fallback (``None``: none), IRLS tolerance and iterations.
    initial_missing_rate : float, optional
        Start the ``"neural"`` mechanism near this missing rate
        (:class:`~amlib.am.missingness.mechanisms.NeuralMechanism`); default ``None``: PyTorch's
        initialisation, about half hidden.
    network_dtype : torch.dtype
        Dtype of the neural mechanism's weights (default float32: several times faster on
        CPUs; the proxies, IRLS and the implicit solve always run in float64).
    num_threads : int, optional
        Torch threads while training (default 1: the problems are small, and extra threads only
        add synchronisation cost; ``None`` keeps torch's setting).
    log_dir, progress_bar : str, bool, optional
        CSV-logger folder (``None``: no logger); bar (``None``: only in a terminal).
    """

    def __init__(self, data: pd.DataFrame, response: str, masked, family: str = "gaussian",
                 proxy: str = "mean", *, features: list[str] | None = None,
                 mechanism: str | nn.Module = "neural", objective: str | Callable = "kl",
                 target: str | None = None, theta_alpha=None, treatment: str | None = None,
                 tau_alpha: float = 0.1, access: float = 1.0, lam_upper: float = 0.01,
                 lam_lower: float = 0.0, lr: float = 0.01, epochs: int = 200, seed: int = 0,
                 hidden: int = 100, fallback_l2: float | None = 1e-3, tol: float = 1e-10,
                 max_iter: int = 100, log_dir: str | None = None,
                 progress_bar: bool | None = None, num_threads: int | None = 1,
                 network_dtype: torch.dtype = torch.float32,
                 initial_missing_rate: float | None = None):
        super().__init__()
        if not isinstance(data, pd.DataFrame):
            raise TypeError("data must be a pandas DataFrame")
        if response not in data.columns:
            raise KeyError(f"response {response!r} is not a column of the data")
        masked = check_unique("masked", [masked] if isinstance(masked, str) else masked)
        features = (check_unique("features", features) if features is not None
                    else [c for c in data.columns if c != response])
        unknown = [c for c in masked if c not in features]
        if unknown:
            raise KeyError(f"masked features {unknown} are not among the model's features "
                           f"{features}")
        if response in masked:
            raise ValueError("the response cannot be masked: the proxies mask features only")
        if len(masked) >= len(features):
            raise ValueError("M covers every feature, so a pattern would hide every column; keep "
                             "at least one feature always observed")
        lam_upper = check_number("lam_upper", lam_upper, low=0.0, fix="pass e.g. lam_upper=0.01")
        lam_lower = check_number("lam_lower", lam_lower, low=0.0, fix="pass e.g. lam_lower=0")
        if proxy not in PROXIES:
            raise ValueError(f"unknown proxy {proxy!r}; use one of {sorted(PROXIES)}")
        epochs = check_count("epochs", epochs)
        lr = check_number("lr", lr, low=0.0, low_open=True, fix="pass e.g. lr=0.01")
        access = check_number("access", access, low=0.0, high=1.0, low_open=True,
                              fix="access is the share of rows the adversary controls (eq. 24): "
                                  "pass a value in (0, 1], e.g. access=1")
        hidden = check_count("hidden", hidden)
        max_iter = check_count("max_iter", max_iter)
        tol = check_number("tol", tol, low=0.0, low_open=True, fix="pass e.g. tol=1e-10")
        if fallback_l2 is not None:
            fallback_l2 = check_number("fallback_l2", fallback_l2, low=0.0, low_open=True,
                                       fix="pass e.g. fallback_l2=1e-3, or None for no fallback")
        if len(data) == 0:
            raise InvalidDataError("the attacker's data have no rows; pass the complete table "
                                   "the adversary controls")
        table = data[features + [response]]
        bad = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
        if bad:
            raise TypeError(f"columns {bad} are not numeric; encode them first")
        if table.isna().any().any():
            cols = table.columns[table.isna().any()].tolist()
            raise ValueError(f"the attacker's data must be complete, but columns {cols} have NaNs "
                             "(drop or impute those rows before the attack)")
        infinite = [c for c in table.columns if not np.isfinite(table[c].to_numpy(float)).all()]
        if infinite:
            raise InvalidDataError(f"columns {infinite} have infinite values; drop those rows or "
                                   "clip the values before the attack")

        self.frame = data.reset_index(drop=True).copy()
        self.response, self.masked, self.features = response, masked, features
        self.family = get_family(family)
        self.proxy = proxy
        self.masked_idx = [features.index(c) for c in masked]
        self.lam_upper, self.lam_lower = float(lam_upper), float(lam_lower)
        self.lr, self.epochs, self.seed = float(lr), int(epochs), int(seed)
        self.tol, self.max_iter, self.fallback_l2 = tol, max_iter, fallback_l2
        self.log_dir, self.progress_bar = log_dir, progress_bar
        self.num_threads = num_threads
        self.access = float(access)

        X = torch.tensor(table[features].to_numpy(float), dtype=torch.float64)
        y = torch.tensor(table[response].to_numpy(float), dtype=torch.float64)
        self.family.validate_response(y)
        self.register_buffer("X", X)
        self.register_buffer("y", y)
        self.register_buffer("Z", torch.cat([X, y[:, None]], dim=1))
        self.register_buffer("design_full", add_intercept(X))
        N, d = X.shape
        if int(torch.linalg.matrix_rank(self.design_full)) < d + 1:
            constant = [c for c in features if table[c].nunique() <= 1]
            raise SingularDesignError(
                "the complete-data design [1, X] is rank deficient, so the lower-level GLM has no "
                f"unique solution (constant columns: {constant or 'none'}; otherwise some "
                "columns are collinear); drop the redundant columns")

        if initial_missing_rate is not None and (isinstance(mechanism, nn.Module)
                                                 or mechanism != "neural"):
            raise ValueError("initial_missing_rate applies to mechanism='neural' only; initialise "
                             "a module of your own yourself")
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            if isinstance(mechanism, nn.Module):
                inner = mechanism
            elif mechanism == "neural":
                skip = (d,) if self.family.name == "bernoulli" else ()
                inner = NeuralMechanism(d + 1, len(masked), hidden,
                                        standardizer=Standardizer(self.Z, skip=skip),
                                        initial_missing_rate=initial_missing_rate)
            elif mechanism in ("per-sample", "per_sample"):
                inner = PerSampleMechanism(N, len(masked))
            else:
                raise ValueError(f"unknown mechanism {mechanism!r}; use 'neural', 'per-sample' "
                                 "or an nn.Module")
        if isinstance(inner, NeuralMechanism) and not isinstance(mechanism, nn.Module):
            inner = inner.to(network_dtype)   # probabilities still come out in float64
        elif not isinstance(mechanism, nn.Module):
            inner = inner.double()
        self.adversary = inner
        self.mechanism = PartialAccess(inner, self.access) if self.access < 1.0 else inner
        rng = np.random.default_rng(self.seed)
        n_access = int(round(self.access * N))
        accessible = np.zeros(N, dtype=bool)
        accessible[rng.permutation(N)[:n_access]] = True
        self.accessible = accessible

        self.objective = objective
        self.scale = 1.0
        self.register_buffer("theta_alpha", torch.zeros(d + 1, dtype=torch.float64))
        if objective == "kl":
            self.target = target or masked[0]
            if self.target not in features:
                raise KeyError(f"target {self.target!r} is not a feature")
            if theta_alpha is None:
                theta_a = self._theta_alpha(y, zero=[1 + features.index(self.target)])
            else:
                theta_a = torch.as_tensor(np.asarray(theta_alpha, float), dtype=torch.float64)
                if theta_a.shape != (d + 1,):
                    raise ValueError(f"theta_alpha needs {d + 1} entries (intercept + features)")
            self.theta_alpha = theta_a
            if self.family.name == "gaussian":
                resid = y - self.design_full @ theta_a
                self.scale = float(resid @ resid / max(N - d - 1, 1))
        elif objective == "ate":
            if treatment not in features:
                raise KeyError(f"the ATE objective needs treatment= one of the features, got "
                               f"{treatment!r}")
            self.target, self.treatment, self.tau_alpha = None, treatment, float(tau_alpha)
            t = 1 + features.index(treatment)
            d1, d0 = self.design_full.clone(), self.design_full.clone()
            d1[:, t], d0[:, t] = 1.0, 0.0
            self.register_buffer("design_treated", d1)
            self.register_buffer("design_control", d0)
        elif callable(objective):
            self.target = target
        else:
            raise ValueError(f"unknown objective {objective!r}; use 'kl', 'ate' or a callable")

        self._warm: torch.Tensor | None = None
        self._checked = False
        self.history: list[dict] = []
        self.theta_tilde: torch.Tensor | None = None

    def _theta_alpha(self, y: torch.Tensor, zero: list[int]) -> torch.Tensor:
        """θα of eq. 22; on perfectly separated data (no finite MLE) fitted with ``lam_lower``
        as L2 penalty, or a :class:`~amlib.validation.SeparationError` when that is 0."""
        try:
            return constrained_mle(self.design_full, y, self.family, zero=zero)
        except PerfectSeparationError as error:
            if self.lam_lower > 0:
                return constrained_mle(self.design_full, y, self.family, zero=zero,
                                       l2=self.lam_lower)
            raise SeparationError(
                "perfect separation: the attacker's 0/1 response is split exactly by a "
                f"hyperplane of the features other than {self.target!r}, so the adversarial "
                "GLM θα (eq. 22) has no finite maximum-likelihood estimate; pass lam_lower > 0 "
                "(e.g. lam_lower=0.1, which also penalises θα), or theta_alpha=... explicitly",
                error.columns) from error

    # ----- the bi-level objective -----------------------------------------------------------
    def upper_objective(self, theta: torch.Tensor) -> torch.Tensor:
        """g(θ̃): KL to θα, ``|τ̂ − τα|``, or the user's callable (App. C.2)."""
        if self.objective == "kl":
            return kl_divergence(self.design_full, self.theta_alpha, theta, self.family,
                                 self.scale)
        if self.objective == "ate":
            return (ate(theta, self.design_treated, self.design_control, self.family)
                    - self.tau_alpha).abs()
        return self.objective(theta, self)

    def compute_loss(self) -> tuple[torch.Tensor, dict]:
        """One evaluation of ℓ(φ) = g(θ̃(φ)) + λ·Ω(φ), differentiable in φ (eq. 12)."""
        probs = self.mechanism(self.Z)
        checked = self._checked
        wd = build_design(self.proxy, self.X, self.masked_idx, probs, check=not checked)
        info: dict = {}
        theta = glm_argmin(wd.design, wd.weights, self.y, self.family, l2=self.lam_lower,
                           tol=self.tol, max_iter=self.max_iter, theta0=self._warm,
                           fallback_l2=self.fallback_l2, info=info, check=not checked)
        self._checked = True  # the data are fixed: validate them on the first call only
        self._warm = theta.detach()
        g = self.upper_objective(theta)
        omega = expected_missing_fraction(probs, len(self.features))
        loss = g + self.lam_upper * omega
        parts = {"loss": float(loss.detach()), "g": float(g.detach()), "omega": float(omega.detach()),
                 "missing_rate": float(masked_missing_rate(probs.detach())),
                 "lower_iters": info.get("n_iter", 0), "lower_l2": info.get("l2", self.lam_lower)}
        self.theta_tilde = theta.detach()
        return loss, parts

    # ----- Lightning hooks ------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        loss, parts = self.compute_loss()
        parts["epoch"] = self.current_epoch
        self.history.append(parts)
        if self.log_dir is not None:  # Lightning's metric bookkeeping costs ms per epoch
            self.log_dict({key: float(parts[key]) for key in
                           ("loss", "g", "omega", "missing_rate", "lower_iters")},
                          on_step=False, on_epoch=True, batch_size=1)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.mechanism.parameters(), lr=self.lr)

    def train_dataloader(self):
        return one_batch_loader()

    def fit(self) -> "BLAMM":
        """Train for ``epochs`` full-batch Adam steps; returns ``self``."""
        logger = False
        if self.log_dir is not None:
            from pytorch_lightning.loggers import CSVLogger
            logger = CSVLogger(self.log_dir, name="blamm")
        threads = torch.get_num_threads()
        fit_full_batch(self, self.epochs, self.seed, progress_bar=self.progress_bar,
                       num_threads=self.num_threads, logger=logger)
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        try:
            with torch.no_grad():
                self.compute_loss()  # θ̃ and the summaries at the final φ
        finally:
            torch.set_num_threads(threads)
        return self

    # ----- after training -------------------------------------------------------------------
    def history_frame(self) -> pd.DataFrame:
        """Per-epoch loss, g, Ω, missing rate and IRLS iterations."""
        return pd.DataFrame(self.history)

    def pattern_probs(self, mechanism: str = "blamm") -> torch.Tensor:
        """``(N, 2^|M|)`` pattern probabilities: ``"blamm"`` (the learned adversarial mechanism
        p', used on the rows the adversary controls), ``"effective"`` (eq. 24's mixture over all
        rows) or ``"mcar"`` (the same-rate MCAR baseline)."""
        mechanism = _mechanism_name(mechanism)
        with torch.no_grad():
            if mechanism == "blamm":
                return self.adversary(self.Z)
            effective = self.mechanism(self.Z)
            if mechanism == "effective":
                return effective
            if mechanism == "mcar":
                return mcar_matched(effective)(self.Z)
        raise ValueError(f"unknown mechanism {mechanism!r}; use 'blamm', 'effective' or 'mcar'")

    def missing_rate(self, mechanism: str = "effective") -> float:
        """Expected share of masked entries hidden (the paper's Table 5 quantity)."""
        return float(masked_missing_rate(self.pattern_probs(mechanism)))

    def observed_probability(self, mechanism: str = "effective") -> np.ndarray:
        """``(N, |M|)``: ``P(R_j = 1 | x_i)`` for each masked feature."""
        return observed_marginals(self.pattern_probs(mechanism)).numpy()

    def mnar_baseline(self, seed: int = 0) -> LogisticMNAR:
        """App. D.3's logistic MNAR mechanism with the learned mechanism's missing rate."""
        return LogisticMNAR(self.Z, len(self.masked), self.missing_rate(), seed=seed)

    def sample_patterns(self, n: int, seed: int = 0, mechanism: str = "blamm") -> np.ndarray:
        """``(n, N)`` pattern indices.  ``"blamm"`` masks only the rows the adversary controls
        (all rows when access = 1) with the learned p'; ``"mcar"`` uses the matched MCAR
        baseline and ``"mnar"`` the logistic MNAR baseline, both over all rows."""
        mechanism = _mechanism_name(mechanism)
        if mechanism == "blamm":
            patterns = sample_patterns(self.pattern_probs("blamm"), n, seed)
            full = self.pattern_probs("blamm").shape[1] - 1
            patterns[:, ~self.accessible] = full
            return patterns
        if mechanism == "mcar":
            return sample_patterns(self.pattern_probs("mcar"), n, seed)
        if mechanism == "mnar":
            with torch.no_grad():
                return sample_patterns(self.mnar_baseline(seed)(self.Z), n, seed)
        raise ValueError(f"unknown mechanism {mechanism!r}; use 'blamm', 'mcar' or 'mnar'")

    def sample_masks(self, n: int, seed: int = 0, mechanism: str = "blamm") -> list[pd.DataFrame]:
        """``n`` copies of the data with the sampled entries of ``masked`` set to NaN."""
        table = self.frame[self.features + [self.response]]
        return [apply_patterns(table, self.masked, p)
                for p in self.sample_patterns(n, seed, mechanism)]

    def theta_frame(self) -> pd.DataFrame:
        """θ̃ at the final mechanism next to θα (intercept first)."""
        names = ["const"] + self.features
        return pd.DataFrame({"theta_tilde": self.theta_tilde.numpy(),
                             "theta_alpha": self.theta_alpha.numpy()}, index=names)
