"""Theorem 1 of the influence paper: a training point whose rank no model can lift into the top-k.

The construction (App. A.1.3; its formulas were lost in extraction, so this is our
reconstruction of the one-hot idea, with the paper's duplication trick for top-k): binary
logistic regression without intercept on one-hot inputs e_j, labels y ∈ {0, 1}.

- training set: k copies of (e_1, y*) — the *dominators* —, then one point (e_j, y_j) for every
  j = 2..d; with ``variant="opposite_label"`` the target (e_1, 1 − y*) is added after the copies;
- test set: the single point (e_1, y*) (y* = ``y_test``, either label);
- target: ``variant="orthogonal"`` the point (e_2, y_2); ``"opposite_label"`` the point (e_1, 1 − y*).

Why it works, for every θ (and any l2 ≥ 0). A one-hot row only sees its own coordinate, so the
Hessian is diagonal, H = diag(h_j) with h_j = (n_j/n)σ(θ_j)σ(−θ_j) + l2 > 0 (n_j training points
on coordinate j), and G_test = (σ(θ_1) − y*)e_1. A training point (e_j, y) has gradient
(σ(θ_j) − y)e_j, hence value

    v(e_j, y) = [j = 1] · (σ(θ_1) − y*)(σ(θ_1) − y) / h_1.

The dominators (y = y*) get (σ(θ_1) − y*)²/h_1 > 0; the orthogonal target gets exactly 0; the
opposite-label target gets −σ(θ_1)(1 − σ(θ_1))/h_1 < 0 (both cases of y*). So every dominator
is strictly above the target and the target's rank is at least k, whatever θ is.

Floating point: for |θ_1| ≳ 37 the residual 1 − σ(θ_1) rounds to 0 in float64 and the dominators'
values with it; they then tie with the orthogonal target and still rank first by index (ties are
broken by index and the dominators come first). :func:`max_rank_search` records such draws.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .models import LogisticModel
from .scores import values_and_ranks
from .surrogate import check_targets

__all__ = ["one_hot_construction", "max_rank_search", "VARIANTS"]

VARIANTS = ("orthogonal", "opposite_label")


def one_hot_construction(d: int = 4, k: int = 1, *, variant: str = "orthogonal",
                         y_test: int = 1, labels=None, dtype=torch.float64):
    """The one-hot data set of Theorem 1: returns (X, y, X_test, y_test, target).

    Indices 0..k−1 are the dominators (copies of (e_1, y_test)); ``target`` is the index of the
    point that can never reach the top-k. ``labels``: the labels of the points (e_j, y_j),
    j = 2..d (default alternating 1, 0, 1, ...).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {VARIANTS}")
    if d < 2:
        raise ValueError("d must be >= 2 (the target needs a coordinate of its own or company)")
    if k < 1:
        raise ValueError("k must be >= 1")
    if y_test not in (0, 1):
        raise ValueError("y_test must be 0 or 1")
    labels = [(j + 1) % 2 for j in range(d - 1)] if labels is None else [int(v) for v in labels]
    if len(labels) != d - 1 or any(v not in (0, 1) for v in labels):
        raise ValueError(f"labels must be {d - 1} values in {{0, 1}} (one per e_2..e_d)")
    E = torch.eye(d, dtype=dtype)
    rows = [E[0]] * k
    ys = [y_test] * k
    if variant == "opposite_label":
        rows.append(E[0])
        ys.append(1 - y_test)
        target = k
    else:
        target = k            # (e_2, y_2) comes right after the copies
    rows += [E[j] for j in range(1, d)]
    ys += labels
    X = torch.stack(rows)
    y = torch.tensor(ys)
    return X, y, E[:1].clone(), torch.tensor([y_test]), target


def max_rank_search(X, y, X_test, y_test, target: int, *, k: int = 1, bias: bool = False,
                    l2: float = 1e-3, n_draws: int = 1000, scales=(0.1, 1.0, 3.0, 10.0),
                    seed: int = 0, method: str = "exact") -> pd.DataFrame:
    """Rank the target under random parameters θ ~ N(0, scale²·I) (no fitting, any θ).

    One row per draw: the target's rank and value, the k-th largest value among the other
    points (the bar the target must clear), the margin between the two (> 0: the target is
    below the top-k), which point is on top, and whether σ(θ) saturated to 0/1 in some
    coordinate. ``df.target_rank.min()`` is the best rank the target ever reached.
    """
    X = torch.as_tensor(X)
    model = LogisticModel(X.shape[1], 2, bias=bias, l2=l2)
    X, y = model.validate(torch.zeros(model.n_params, dtype=X.dtype), X, y)
    X_test, y_test = model.validate(torch.zeros(model.n_params, dtype=X.dtype), X_test, y_test,
                                    name="_test")
    n = X.shape[0]
    (target,) = check_targets(int(target), n, k)
    gen = torch.Generator().manual_seed(int(seed))
    others = torch.ones(n, dtype=torch.bool)
    others[target] = False
    rows = []
    for scale in scales:
        for draw in range(int(n_draws)):
            theta = float(scale) * torch.randn(model.n_params, generator=gen, dtype=X.dtype)
            result = values_and_ranks(model, theta, X, y, X_test, y_test, method=method)
            values, r = result.values, result.ranks()
            kth = float(torch.sort(values[others], descending=True).values[k - 1])
            p = torch.sigmoid(X @ model.split(theta)[0].T).flatten()
            rows.append({"scale": float(scale), "draw": draw, "target_rank": int(r[target]),
                         "target_value": float(values[target]), "kth_other_value": kth,
                         "margin": kth - float(values[target]),
                         "top_index": int((r == 0).nonzero()[0, 0]),
                         "saturated": bool(((p == 0) | (p == 1)).any())})
    return pd.DataFrame(rows)
