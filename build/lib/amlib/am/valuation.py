"""Data valuation for the defence of the AM paper's Appendix D.1 (Figure 4).

A modeler who suspects poisoning can score every training row against a clean validation set and
drop the rows that score lowest before fitting.  Two scores are implemented here, from their
original papers:

- :func:`knn_shapley` — the exact Shapley value of each training row for a K-nearest-neighbour
  model (Jia et al. 2019, "Efficient task-specific data valuation for nearest neighbor
  algorithms").  For classification the utility of a subset S at a test point is
  ``(1/K) Σ_{k ≤ min(K,|S|)} 1[y_{α_k(S)} = y_test]`` and the values follow the paper's
  Theorem 1 recursion.  For regression the utility is
  ``−((1/K) Σ_{k ≤ min(K,|S|)} y_{α_k(S)} − y_test)²``; its values follow from an O(N) recursion
  over adjacent neighbours which :func:`_knn_shapley_regression` derives in its docstring.
  Both cost O(N log N) per test point (one sort) and are averaged over the validation set.
- :func:`lava_values` — LAVA (Just et al. 2023): the optimal-transport distance between the
  training and validation sets with the label-aware cost of OTDD (squared feature distance plus
  the squared 2-Wasserstein distance between the two labels' class-conditional feature
  distributions); a row's value is minus the *calibrated gradient* of that distance with
  respect to the row's probability mass, ``f_i − Σ_{j≠i} f_j / (N−1)`` with ``f`` the dual
  potential of the training marginal.  The transport problem is solved exactly with POT's
  network simplex (OpenDataVal uses Sinkhorn with ε = 0.1 instead).

:func:`brute_force_shapley` enumerates all subsets and is what the tests compare against.
Features are standardised with the training rows' mean and standard deviation before any
distance is taken (``standardize=True``), so that no column dominates by its units.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable

import numpy as np

__all__ = ["knn_shapley", "lava_values", "brute_force_shapley", "knn_utility",
           "calibrated_gradient"]


def _as_arrays(X_train, y_train, X_valid, y_valid):
    X_train, X_valid = np.asarray(X_train, float), np.asarray(X_valid, float)
    y_train, y_valid = np.asarray(y_train, float).ravel(), np.asarray(y_valid, float).ravel()
    if X_train.ndim != 2 or X_valid.ndim != 2 or X_train.shape[1] != X_valid.shape[1]:
        raise ValueError(f"X_train and X_valid must be 2-d with the same number of columns, got "
                         f"{X_train.shape} and {X_valid.shape}")
    if len(y_train) != len(X_train) or len(y_valid) != len(X_valid):
        raise ValueError("y_train/y_valid must have one entry per row of X_train/X_valid")
    if len(X_train) < 2 or len(X_valid) < 1:
        raise ValueError("need at least two training rows and one validation row")
    for name, array in [("X_train", X_train), ("y_train", y_train), ("X_valid", X_valid),
                        ("y_valid", y_valid)]:
        if not np.isfinite(array).all():
            raise ValueError(f"{name} has NaN or infinite entries; impute the data before "
                             "valuing it")
    return X_train, y_train, X_valid, y_valid


def _standardise(X_train, X_valid):
    mean, sd = X_train.mean(axis=0), X_train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return (X_train - mean) / sd, (X_valid - mean) / sd


def _sq_distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """(len(A), len(B)) squared Euclidean distances, clipped at zero."""
    d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T
    return np.maximum(d, 0.0)


# ----- KNN-Shapley ------------------------------------------------------------------------------
def knn_utility(y_sorted_subset: np.ndarray, y_test: float, K: int, task: str) -> float:
    """The KNN utility of a subset whose labels are given nearest first (Jia et al. 2019)."""
    top = np.asarray(y_sorted_subset, float)[:K]
    if task == "classification":
        return float(np.sum(top == y_test) / K)
    return float(-(top.sum() / K - y_test) ** 2)


def _knn_shapley_classification(u: np.ndarray, K: int) -> np.ndarray:
    """Theorem 1 of Jia et al. (2019) for a batch of test points.

    ``u`` is (B, N): 1 where the i-th nearest training label matches the test label.  Returns
    the (B, N) Shapley values in the same (sorted) order.  With ``w = u / K``:
    ``s_N = w_N·min(K, N)/N`` and ``s_i = s_{i+1} + (w_i − w_{i+1})·min(K, i)/i``.
    """
    B, N = u.shape
    w = u / K
    i = np.arange(1, N, dtype=float)                      # 1 .. N-1
    step = (w[:, :-1] - w[:, 1:]) * (np.minimum(K, i) / i)
    values = np.empty_like(w)
    values[:, -1] = w[:, -1] * min(K, N) / N
    values[:, :-1] = values[:, -1:] + np.cumsum(step[:, ::-1], axis=1)[:, ::-1]
    return values


def _knn_shapley_regression(y: np.ndarray, t: np.ndarray, K: int) -> np.ndarray:
    """Exact Shapley values of ``U(S) = −((1/K) Σ_{k ≤ min(K,|S|)} y_{α_k(S)} − t)²``.

    ``y`` is (B, N) with the training responses sorted nearest first for each of B test
    points, ``t`` the (B,) test responses.  Write ``a = y/K`` and number the neighbours 1..N.

    *Adjacent neighbours.*  The Shapley identity
    ``φ_i − φ_{i+1} = E_S[U(S∪{i}) − U(S∪{i+1})]`` holds with S drawn from the other N−2
    points by choosing |S| uniformly in 0..N−2 and then S uniformly (equivalently: the points
    placed before a marker in a random permutation).  Let m be the number of points of S nearer
    than i.  If m ≥ K neither i nor i+1 enters the K nearest and the difference is 0.
    Otherwise both coalitions share the same K−1 other neighbours with label sum R(S), and

        U(S∪{i}) − U(S∪{i+1}) = (a_{i+1} − a_i)(2R + a_i + a_{i+1} − 2t).

    So ``φ_i − φ_{i+1} = (a_{i+1} − a_i)[2·E(R·1[m<K]) + (a_i + a_{i+1} − 2t)·min(K,i)/i]``
    (m is uniform on 0..i−1, so ``P(m < K) = min(K, i)/i`` as in Theorem 1).

    *The expected neighbour sum.*  A point j belongs to R with m < K iff j ∈ S and at most
    K−2 of the other points of a set B (|B| = b) lie in S: B is the other i−2 points nearer
    than i when j < i, and the j−3 points nearer than j (excluding i, i+1) when j > i+1.
    Ordering only B, j and the marker, that probability is

        P_b = M(M+1) / (2(b+1)(b+2)),   M = min(K−1, b+1),

    so ``E(R·1[m<K]) = P_{i−2}·Σ_{j<i} a_j + Σ_{j>i+1} a_j·P_{j−3}`` — a prefix and a suffix
    sum.

    *The farthest point.*  N enters the K nearest iff |S| < K, when it adds
    ``−a_N(2Σ_S a + a_N − 2t)``; hence
    ``φ_N = −a_N[(a_N − 2t)·min(K,N)/N + Σ_{j<N} a_j·M(M+1)/(N(N−1))]``, M = min(K−1, N−1).

    The tests check the result against :func:`brute_force_shapley` on small sets.
    """
    B, N = y.shape
    a = y / K
    t = t[:, None]
    idx = np.arange(1, N + 1, dtype=float)                 # 1-based neighbour rank
    # P(m < K) for i = 1..N-1
    p_lin = np.minimum(K, idx[:-1]) / idx[:-1]
    # near term: P_{i-2} * sum_{j<i} a_j  (zero for i = 1)
    prefix = np.concatenate([np.zeros((B, 1)), np.cumsum(a, axis=1)[:, :-1]], axis=1)  # Σ_{j<i}
    b_near = idx - 2.0
    M_near = np.minimum(K - 1, b_near + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_near = np.where(idx >= 2, M_near * (M_near + 1) / (2 * (b_near + 1) * (b_near + 2)), 0.0)
    # far term: Σ_{j ≥ i+2} a_j P_{j-3}  (P defined for j ≥ 3)
    b_far = idx - 3.0
    M_far = np.minimum(K - 1, b_far + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_far = np.where(idx >= 3, M_far * (M_far + 1) / (2 * (b_far + 1) * (b_far + 2)), 0.0)
    weighted = a * p_far
    suffix = np.cumsum(weighted[:, ::-1], axis=1)[:, ::-1]   # Σ_{j ≥ i}
    far = np.zeros((B, N))
    far[:, :-2] = suffix[:, 2:]                               # Σ_{j ≥ i+2}
    expected_r = prefix * p_near + far
    step = (a[:, 1:] - a[:, :-1]) * (2 * expected_r[:, :-1]
                                      + (a[:, :-1] + a[:, 1:] - 2 * t) * p_lin)
    M = min(K - 1, N - 1)
    last = -a[:, -1] * ((a[:, -1] - 2 * t[:, 0]) * min(K, N) / N
                        + a[:, :-1].sum(axis=1) * M * (M + 1) / (N * (N - 1)))
    values = np.empty_like(a)
    values[:, -1] = last
    values[:, :-1] = last[:, None] + np.cumsum(step[:, ::-1], axis=1)[:, ::-1]
    return values


def knn_shapley(X_train, y_train, X_valid, y_valid, K: int = 10, task: str = "regression",
                standardize: bool = True, batch_size: int = 256) -> np.ndarray:
    """Exact KNN-Shapley value of every training row, averaged over the validation rows.

    ``task`` is ``"regression"`` (utility: minus the squared error of the K-NN mean) or
    ``"classification"`` (utility: share of the K nearest labels equal to the test label);
    exact ties in distance are broken by numpy's (deterministic, unstable) quicksort.  Returns
    an (N,) array; higher is more useful.
    """
    if task not in ("regression", "classification"):
        raise ValueError(f"unknown task {task!r}; use 'regression' or 'classification'")
    if int(K) != K or K < 1:
        raise ValueError(f"K must be a positive integer, got {K!r}")
    X_train, y_train, X_valid, y_valid = _as_arrays(X_train, y_train, X_valid, y_valid)
    if standardize:
        X_train, X_valid = _standardise(X_train, X_valid)
    N = len(X_train)
    total = np.zeros(N)
    for start in range(0, len(X_valid), batch_size):
        Xb, yb = X_valid[start:start + batch_size], y_valid[start:start + batch_size]
        order = np.argsort(_sq_distances(Xb, X_train), axis=1)
        y_sorted = y_train[order]
        if task == "classification":
            values = _knn_shapley_classification((y_sorted == yb[:, None]).astype(float), K)
        else:
            values = _knn_shapley_regression(y_sorted, yb, K)
        unsorted = np.empty_like(values)
        np.put_along_axis(unsorted, order, values, axis=1)
        total += unsorted.sum(axis=0)
    return total / len(X_valid)


def brute_force_shapley(n_players: int, utility: Callable[[tuple], float]) -> np.ndarray:
    """Shapley values by enumerating every coalition (for tests; 2^n utility calls)."""
    if n_players > 14:
        raise ValueError("brute-force Shapley enumerates 2^n coalitions; use n <= 14")
    cache = {}

    def value(coalition):
        if coalition not in cache:
            cache[coalition] = utility(coalition)
        return cache[coalition]

    phi = np.zeros(n_players)
    for i in range(n_players):
        others = [p for p in range(n_players) if p != i]
        for size in range(n_players):
            weight = math.factorial(size) * math.factorial(n_players - size - 1) / math.factorial(n_players)
            for subset in itertools.combinations(others, size):
                phi[i] += weight * (value(tuple(sorted(subset + (i,)))) - value(subset))
    return phi


# ----- LAVA -------------------------------------------------------------------------------------
def calibrated_gradient(potential: np.ndarray) -> np.ndarray:
    """LAVA's calibrated gradient ``f_i − Σ_{j≠i} f_j/(N−1)``: the derivative of the OT distance
    when mass moves onto row i from all other rows equally (invariant to shifting ``f``)."""
    f = np.asarray(potential, float)
    n = len(f)
    return f - (f.sum() - f) / (n - 1)


def _label_distances(X_train, y_train, X_valid, y_valid, classes, max_per_class, rng):
    """Squared 2-Wasserstein distances between class-conditional feature distributions."""
    import ot

    def sample(X, mask):
        rows = np.flatnonzero(mask)
        if len(rows) > max_per_class:
            rows = rng.choice(rows, max_per_class, replace=False)
        return X[rows]

    W = np.zeros((len(classes), len(classes)))
    for a, ca in enumerate(classes):
        A = sample(X_train, y_train == ca)
        for b, cb in enumerate(classes):
            Bv = sample(X_valid, y_valid == cb)
            if len(A) == 0 or len(Bv) == 0:
                continue
            W[a, b] = ot.emd2(np.full(len(A), 1 / len(A)), np.full(len(Bv), 1 / len(Bv)),
                              _sq_distances(A, Bv), numItermax=10_000_000)
    return W


def lava_values(X_train, y_train, X_valid, y_valid, *, standardize: bool = True,
                label_weight: float = 1.0, max_per_class: int = 5000, seed: int = 0,
                return_distance: bool = False):
    """LAVA data values (Just et al. 2023): minus the calibrated gradient of the label-aware OT
    distance between the training and validation sets; higher is more useful.

    The cost between a training row (x, y) and a validation row (x', y') is
    ``‖x − x'‖² + label_weight · W₂²(P(x | y), P'(x' | y'))`` (OTDD with p = 2), the transport
    problem between the two uniform empirical distributions is solved exactly, and ``f`` is the
    dual potential of the training side.  ``max_per_class`` caps the rows used for each
    class-conditional distance (a random subset, ``seed``).  With ``return_distance`` the OT
    distance is returned as well.
    """
    import ot

    X_train, y_train, X_valid, y_valid = _as_arrays(X_train, y_train, X_valid, y_valid)
    if label_weight < 0:
        raise ValueError("label_weight must be >= 0")
    classes = np.unique(np.concatenate([y_train, y_valid]))
    if len(classes) > 50:
        raise ValueError(f"LAVA needs class labels; y has {len(classes)} distinct values (use "
                         "knn_shapley(task='regression') for a continuous response)")
    if standardize:
        X_train, X_valid = _standardise(X_train, X_valid)
    rng = np.random.default_rng(seed)
    W = _label_distances(X_train, y_train, X_valid, y_valid, classes, max_per_class, rng)
    code_train = np.searchsorted(classes, y_train)
    code_valid = np.searchsorted(classes, y_valid)
    cost = _sq_distances(X_train, X_valid) + label_weight * W[code_train][:, code_valid]
    a = np.full(len(X_train), 1 / len(X_train))
    b = np.full(len(X_valid), 1 / len(X_valid))
    plan, log = ot.emd(a, b, cost, numItermax=100_000_000, log=True)
    if log.get("warning"):
        raise RuntimeError(f"the exact OT solver did not converge: {log['warning']}")
    values = -calibrated_gradient(log["u"])
    return (values, float(log["cost"])) if return_distance else values
