"""Missingness mechanisms p(R | X) restricted to a masked feature set M (AM paper, App. C.4).

.. rubric:: Patterns

Only the masked features ``M`` (``m = |M|`` columns) can go missing, so a row's pattern is a
binary vector ``r_M`` in ``{0,1}^m`` (1 = observed), indexed by the binary-to-decimal map γ with
the first masked feature as the most significant bit: γ((1,0,1)) = 5.  Index ``2^m − 1`` is the
fully observed pattern, index 0 hides every masked feature.  :func:`pattern_matrix` lists them.

.. rubric:: Mechanisms (``torch.nn.Module``; ``forward(Z) -> (N, 2^m)`` probabilities, rows sum to one)

- :class:`NeuralMechanism` — softmax over the logits of a one-hidden-layer network (100 units by
  default) fed the standardised features and response (App. C.4 "Neural Networks", App. D.1).
- :class:`PerSampleMechanism` — one logit vector φ⁽ⁱ⁾ per row, initialised at zero (App. C.4).
- :class:`PartialAccess` — the mixture of eq. 24: ``(1−a)·I(r=1) + a·p'(r|x)``.
- :class:`MCARMechanism` — the same probabilities for every row; :func:`mcar_matched` builds the
  paper's baseline ``p_R(r) = N⁻¹ Σ_i p(r|x_i)`` from a learned mechanism's output.
- :class:`LogisticMNAR` — App. D.3's baseline: each masked feature is hidden independently with
  probability ``sigmoid(c_j + β_jᵀ z)``, ``c_j`` chosen by bisection to hit a missingness rate
  (:func:`offset_for_rate`, which also calibrates any logistic mechanism of your own).

.. rubric:: Summaries and sampling

- :func:`observed_marginals` — ``P(R_j = 1 | x_i)`` per row and masked feature (eq. 11's inner sum).
- :func:`expected_missing_fraction` — Ω of Section 4: expected share of the ``d`` features hidden.
- :func:`masked_missing_rate` — expected share of the masked entries hidden (the paper's Table 5).
- :func:`sample_patterns` / :func:`apply_patterns` — draw pattern indices and turn them into a
  DataFrame with NaNs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

__all__ = ["pattern_matrix", "pattern_index", "NeuralMechanism", "PerSampleMechanism",
           "PartialAccess", "MCARMechanism", "LogisticMNAR", "offset_for_rate", "mcar_matched",
           "observed_marginals", "expected_missing_fraction", "masked_missing_rate",
           "sample_patterns", "apply_patterns", "Standardizer"]

MAX_MASKED = 10


def pattern_matrix(m: int, dtype=torch.float64) -> torch.Tensor:
    """(2^m, m) matrix whose row ``k`` is the pattern r_M with γ(r_M) = k (1 = observed)."""
    if m < 1:
        raise ValueError("the masked set M must hold at least one feature")
    if m > MAX_MASKED:
        raise ValueError(f"|M| = {m} gives 2^{m} patterns; the proxies enumerate every pattern, "
                         f"so keep |M| <= {MAX_MASKED} (the paper masks one or two features)")
    k = torch.arange(2 ** m).unsqueeze(1)
    bits = 2 ** torch.arange(m - 1, -1, -1).unsqueeze(0)
    return ((k // bits) % 2).to(dtype)


def pattern_index(r) -> int:
    """γ(r_M): the index of a binary pattern (first entry most significant)."""
    value = 0
    for bit in r:
        if bit not in (0, 1, True, False):
            raise ValueError(f"a pattern holds 0/1 entries, got {list(r)}")
        value = 2 * value + int(bit)
    return value


class Standardizer(nn.Module):
    """Centre and scale input columns (constant columns keep scale 1); ``skip`` columns untouched."""

    def __init__(self, Z: torch.Tensor, skip: tuple[int, ...] = ()):
        super().__init__()
        mean = Z.mean(0)
        std = Z.std(0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        for j in skip:
            mean[j], std[j] = 0.0, 1.0
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, Z: torch.Tensor) -> torch.Tensor:
        return (Z - self.mean) / self.std


class NeuralMechanism(nn.Module):
    """p(r|x) = softmax(z(x; φ))_γ(r) with z a one-hidden-layer network (App. C.4).

    ``n_inputs`` is the width of the conditioning vector (features and response); ``hidden`` the
    hidden width (100 in the paper); ``standardizer`` is applied to the inputs first.

    The layers start from PyTorch's default initialisation, which hides about half of each
    masked feature.  ``initial_missing_rate = q`` instead sets the output layer's bias so that
    the network starts near "fully observed": the fully observed pattern's logit is
    ``log((1 − q)(2^m − 1)/q)`` above the others (0), so that, up to the weights' small random
    contribution, the fully observed pattern starts with probability ``1 − q`` and the others
    share ``q``; with one masked feature (the paper's experiments) ``q`` is the share hidden.
    """

    def __init__(self, n_inputs: int, n_masked: int, hidden: int = 100,
                 standardizer: nn.Module | None = None, activation: str = "relu",
                 initial_missing_rate: float | None = None):
        super().__init__()
        self.n_masked = n_masked
        self.n_patterns = 2 ** n_masked
        pattern_matrix(n_masked)  # validates |M|
        acts = {"relu": lambda: nn.ReLU(inplace=True), "tanh": nn.Tanh,
                "elu": lambda: nn.ELU(inplace=True)}
        if activation not in acts:
            raise ValueError(f"unknown activation {activation!r}; use one of {sorted(acts)}")
        self.standardizer = standardizer if standardizer is not None else nn.Identity()
        self.net = nn.Sequential(nn.Linear(n_inputs, hidden), acts[activation](),
                                 nn.Linear(hidden, self.n_patterns))
        if initial_missing_rate is not None:
            q = float(initial_missing_rate)
            if not 0.0 < q < 1.0:
                raise ValueError(f"initial_missing_rate must lie in (0, 1), got {q}; pass e.g. "
                                 "0.05, or None for PyTorch's default initialisation")
            with torch.no_grad():
                self.net[2].bias.zero_()
                self.net[2].bias[-1] = float(np.log((1.0 - q) * (self.n_patterns - 1) / q))

    def logits(self, Z: torch.Tensor) -> torch.Tensor:
        """Logits in the network's own dtype (float32 is ample and much faster on CPUs)."""
        dtype = self.net[0].weight.dtype
        return self.net(self.standardizer(Z.to(dtype)))

    def forward(self, Z: torch.Tensor) -> torch.Tensor:
        """Pattern probabilities in float64, whatever the network's dtype."""
        return torch.softmax(self.logits(Z).to(torch.float64), dim=-1)


class PerSampleMechanism(nn.Module):
    """p(r|x_i) = softmax(φ⁽ⁱ⁾)_γ(r), one zero-initialised logit vector per row (App. C.4)."""

    def __init__(self, n_rows: int, n_masked: int, dtype=torch.float64):
        super().__init__()
        pattern_matrix(n_masked)
        self.n_masked = n_masked
        self.n_patterns = 2 ** n_masked
        self.phi = nn.Parameter(torch.zeros(n_rows, self.n_patterns, dtype=dtype))

    def forward(self, Z: torch.Tensor) -> torch.Tensor:
        if Z.shape[0] != self.phi.shape[0]:
            raise ValueError(f"a per-sample mechanism was built for {self.phi.shape[0]} rows but "
                             f"got {Z.shape[0]}; it cannot generalise to other rows")
        return torch.softmax(self.phi, dim=-1)


class PartialAccess(nn.Module):
    """Eq. 24: rows the adversary cannot reach stay complete, so
    ``p(r|x) = (1 − access)·I(r = 1) + access·p'(r|x)`` with ``access = N0/N`` in [0, 1]."""

    def __init__(self, mechanism: nn.Module, access: float):
        super().__init__()
        if not 0.0 <= access <= 1.0:
            raise ValueError(f"access = N0/N must lie in [0, 1], got {access}")
        self.mechanism = mechanism
        self.access = float(access)
        self.n_masked = mechanism.n_masked
        self.n_patterns = mechanism.n_patterns

    def forward(self, Z: torch.Tensor) -> torch.Tensor:
        inner = self.mechanism(Z)
        identity = torch.zeros_like(inner)
        identity[:, -1] = 1.0
        return (1.0 - self.access) * identity + self.access * inner


class MCARMechanism(nn.Module):
    """Missing completely at random: the same pattern probabilities ``probs`` (2^m,) for every row."""

    def __init__(self, probs):
        super().__init__()
        probs = torch.as_tensor(probs, dtype=torch.float64).flatten()
        n_patterns = probs.numel()
        m = int(round(np.log2(n_patterns)))
        if 2 ** m != n_patterns or torch.any(probs < 0) or abs(float(probs.sum()) - 1) > 1e-8:
            raise ValueError("MCAR probabilities must be 2^m non-negative numbers summing to one")
        self.n_masked, self.n_patterns = m, n_patterns
        self.register_buffer("probs", probs)

    def forward(self, Z: torch.Tensor) -> torch.Tensor:
        return self.probs.to(Z.dtype).expand(Z.shape[0], -1)


def mcar_matched(probs: torch.Tensor) -> MCARMechanism:
    """The paper's MCAR baseline (Section 5.1): ``p_R(r) = N⁻¹ Σ_i p(r|x_i; φ)``."""
    return MCARMechanism(probs.detach().mean(0))


class LogisticMNAR(nn.Module):
    """App. D.3's MNAR baseline: masked feature ``j`` is hidden with probability
    ``sigmoid(c_j + β_jᵀ z)``, independently across ``j``, where ``z`` is the standardised
    conditioning vector.  ``β_j`` ~ N(0, 1/n_inputs) (seeded); ``c_j`` is set by bisection so that
    the average missing probability over the given ``Z`` equals ``rate`` for every masked feature.
    """

    def __init__(self, Z: torch.Tensor, n_masked: int, rate: float, seed: int = 0,
                 standardizer: nn.Module | None = None):
        super().__init__()
        if not 0.0 < rate < 1.0:
            raise ValueError(f"the MNAR missingness rate must lie in (0, 1), got {rate}")
        self.n_masked, self.n_patterns = n_masked, 2 ** n_masked
        self.standardizer = standardizer if standardizer is not None else Standardizer(Z)
        gen = torch.Generator().manual_seed(seed)
        beta = torch.randn(Z.shape[1], n_masked, generator=gen, dtype=torch.float64)
        beta = beta / np.sqrt(Z.shape[1])
        self.register_buffer("beta", beta)
        with torch.no_grad():
            scores = self.standardizer(Z.to(torch.float64)) @ beta
            bias = torch.tensor([offset_for_rate(scores[:, j], rate) for j in range(n_masked)],
                                dtype=torch.float64)
        self.register_buffer("bias", bias)
        self.register_buffer("patterns", pattern_matrix(n_masked))

    def forward(self, Z: torch.Tensor) -> torch.Tensor:
        hide = torch.sigmoid(self.bias + self.standardizer(Z.to(torch.float64)) @ self.beta)
        observe = 1.0 - hide                                   # (N, m)
        R = self.patterns                                      # (P, m)
        return torch.prod(R * observe[:, None, :] + (1 - R) * hide[:, None, :], dim=-1)


def offset_for_rate(scores, rate: float, *, bound: float = 50.0, steps: int = 100) -> float:
    """The offset ``c`` with ``mean_i sigmoid(c + scores_i) = rate``, found by bisection on
    ``[-bound, bound]`` (the mean is increasing in ``c``).

    It turns any score into a logistic mechanism that hides a chosen share of the rows on
    average: ``p_hide = sigmoid(offset_for_rate(s, 0.3) + s)`` has mean 0.3.
    """
    if not 0.0 < rate < 1.0:
        raise ValueError(f"the missingness rate must lie in (0, 1), got {rate}")
    scores = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
    lo, hi = -bound, bound
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if float(torch.sigmoid(mid + scores).mean()) < rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def observed_marginals(probs: torch.Tensor) -> torch.Tensor:
    """(N, m): ``P(R_j = 1 | x_i) = Σ_{r: r_j = 1} p(r|x_i)`` for each masked feature ``j``."""
    m = int(round(np.log2(probs.shape[-1])))
    return probs @ pattern_matrix(m, probs.dtype).to(probs.device)


def expected_missing_fraction(probs: torch.Tensor, n_features: int) -> torch.Tensor:
    """Ω(φ) of Section 4: ``N⁻¹ Σ_i E[#{j : R_j = 0} / d | x_i]`` with ``d = n_features``."""
    return (1.0 - observed_marginals(probs)).sum(-1).mean() / n_features


def masked_missing_rate(probs: torch.Tensor) -> torch.Tensor:
    """Expected share of masked entries that are hidden: ``mean_{i,j∈M} P(R_j = 0 | x_i)``."""
    return (1.0 - observed_marginals(probs)).mean()


def sample_patterns(probs, n_masks: int = 1, seed: int = 0) -> np.ndarray:
    """(n_masks, N) pattern indices drawn row by row from ``probs`` (N, 2^m) (seeded)."""
    probs = np.asarray(probs.detach().cpu() if torch.is_tensor(probs) else probs, dtype=float)
    if probs.ndim != 2 or not np.allclose(probs.sum(1), 1.0, atol=1e-8) or (probs < 0).any():
        raise ValueError("probs must be an (N, 2^m) array of rows that sum to one")
    cumulative = np.cumsum(probs, axis=1)
    cumulative[:, -1] = 1.0
    rng = np.random.default_rng(seed)
    u = rng.random((n_masks, probs.shape[0]))
    return (u[:, :, None] > cumulative[None, :, :]).sum(-1)


def apply_patterns(frame: pd.DataFrame, masked: list[str], patterns) -> pd.DataFrame:
    """A copy of ``frame`` with ``masked`` column ``j`` set to NaN where bit ``j`` of the row's
    pattern index is 0 (the adversary's X̄ of Section 2)."""
    patterns = np.asarray(patterns)
    if patterns.shape != (len(frame),):
        raise ValueError(f"need one pattern index per row ({len(frame)}), got {patterns.shape}")
    missing = [c for c in masked if c not in frame.columns]
    if missing:
        raise KeyError(f"masked columns {missing} are not in the frame")
    bits = pattern_matrix(len(masked)).numpy().astype(bool)[patterns]  # (N, m) observed?
    out = frame.copy()
    for j, column in enumerate(masked):
        out[column] = out[column].astype(float).where(bits[:, j])
    return out
