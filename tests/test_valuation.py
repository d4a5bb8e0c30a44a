"""Data valuation: KNN-Shapley against brute-force Shapley values, LAVA's calibrated gradient
against finite differences of the exact OT distance, and both against planted bad rows."""
import numpy as np
import ot
import pytest

from amlib.am.valuation import (brute_force_shapley, calibrated_gradient, knn_shapley, knn_utility,
                             lava_values)


def _brute_force_knn(X, y, X_valid, y_valid, K, task):
    """Average over test points of brute-force Shapley values of the KNN utility."""
    total = np.zeros(len(X))
    for x_test, y_test in zip(X_valid, y_valid):
        rank = np.argsort(np.argsort(((X - x_test) ** 2).sum(1)))

        def utility(coalition):
            members = sorted(coalition, key=lambda i: rank[i])
            return knn_utility(y[members], y_test, K, task)

        total += brute_force_shapley(len(X), utility)
    return total / len(X_valid)


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("n, K", [(7, 1), (7, 2), (8, 3), (8, 5), (6, 6), (5, 9)])
def test_knn_shapley_matches_brute_force(task, n, K):
    rng = np.random.default_rng(100 * n + K)
    X, X_valid = rng.normal(size=(n, 3)), rng.normal(size=(4, 3))
    if task == "regression":
        y, y_valid = rng.normal(size=n), rng.normal(size=4)
    else:
        y, y_valid = rng.integers(0, 3, n).astype(float), rng.integers(0, 3, 4).astype(float)
    fast = knn_shapley(X, y, X_valid, y_valid, K=K, task=task, standardize=False)
    slow = _brute_force_knn(X, y, X_valid, y_valid, K, task)
    np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-12)


def test_knn_shapley_is_efficient_and_batch_independent():
    """Values add up to U(all) − U(∅) per test point, whatever the batch size."""
    rng = np.random.default_rng(0)
    X, X_valid = rng.normal(size=(60, 2)), rng.normal(size=(9, 2))
    y, y_valid = rng.normal(size=60), rng.normal(size=9)
    values = knn_shapley(X, y, X_valid, y_valid, K=5, standardize=False, batch_size=4)
    gain = []
    for x_test, y_test in zip(X_valid, y_valid):
        order = np.argsort(((X - x_test) ** 2).sum(1))
        gain.append(knn_utility(y[order], y_test, 5, "regression")
                    - knn_utility(y[:0], y_test, 5, "regression"))
    assert values.sum() == pytest.approx(np.mean(gain), rel=1e-10)
    again = knn_shapley(X, y, X_valid, y_valid, K=5, standardize=False, batch_size=256)
    np.testing.assert_allclose(values, again, rtol=1e-12)


def test_knn_shapley_ranks_a_corrupted_response_last():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 2))
    y = X @ np.array([1.0, -2.0]) + 0.1 * rng.normal(size=300)
    X_valid = rng.normal(size=(200, 2))
    y_valid = X_valid @ np.array([1.0, -2.0])
    y[17] += 25.0  # a grossly wrong response
    values = knn_shapley(X, y, X_valid, y_valid, K=5)
    assert np.argmin(values) == 17


def test_lava_calibrated_gradient_is_the_ot_derivative():
    """LAVA's value is minus d OT / d(mass of row i, taken equally from the others)."""
    rng = np.random.default_rng(2)
    X, X_valid = rng.normal(size=(7, 2)), rng.normal(size=(5, 2))
    y, y_valid = np.array([0, 1, 0, 1, 1, 0, 1.0]), np.array([0, 1, 1, 0, 1.0])
    values, distance = lava_values(X, y, X_valid, y_valid, standardize=False,
                                   return_distance=True)
    # the same cost, rebuilt from its definition
    classes = [0.0, 1.0]
    W = np.array([[ot.emd2(np.full((y == a).sum(), 1 / (y == a).sum()),
                           np.full((y_valid == b).sum(), 1 / (y_valid == b).sum()),
                           ot.dist(X[y == a], X_valid[y_valid == b])) for b in classes]
                  for a in classes])
    cost = ot.dist(X, X_valid) + W[y.astype(int)][:, y_valid.astype(int)]
    a, b = np.full(7, 1 / 7), np.full(5, 1 / 5)
    assert ot.emd2(a, b, cost) == pytest.approx(distance, rel=1e-12)
    eps = 1e-7
    for i in range(7):
        direction = np.full(7, -1 / 6)
        direction[i] = 1.0
        slope = (ot.emd2(a + eps * direction, b, cost) - ot.emd2(a - eps * direction, b, cost)) / (2 * eps)
        assert -values[i] == pytest.approx(slope, abs=1e-6)


def test_calibrated_gradient_ignores_a_shift():
    f = np.array([0.3, -1.0, 2.0, 0.5])
    np.testing.assert_allclose(calibrated_gradient(f), calibrated_gradient(f + 7.0))
    assert calibrated_gradient(f)[2] == pytest.approx(2.0 - (0.3 - 1.0 + 0.5) / 3)


def test_lava_ranks_flipped_labels_lowest():
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(-2, 1, size=(60, 2)), rng.normal(2, 1, size=(60, 2))])
    y = np.repeat([0.0, 1.0], 60)
    X_valid = np.vstack([rng.normal(-2, 1, size=(40, 2)), rng.normal(2, 1, size=(40, 2))])
    y_valid = np.repeat([0.0, 1.0], 40)
    flipped = [3, 70, 100]
    y[flipped] = 1 - y[flipped]
    values = lava_values(X, y, X_valid, y_valid)
    assert set(np.argsort(values)[:3]) == set(flipped)


def test_clear_errors():
    X, y = np.zeros((5, 2)), np.zeros(5)
    with pytest.raises(ValueError, match="NaN"):
        knn_shapley(np.full((5, 2), np.nan), y, X, y)
    with pytest.raises(ValueError, match="task"):
        knn_shapley(X, y, X, y, task="ranking")
    with pytest.raises(ValueError, match="K must be"):
        knn_shapley(X, y, X, y, K=0)
    with pytest.raises(ValueError, match="class labels"):
        lava_values(np.random.default_rng(0).normal(size=(60, 2)), np.arange(60.0), X, y)
    with pytest.raises(ValueError, match="same number of columns"):
        knn_shapley(X, y, np.zeros((3, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="2\\^n"):
        brute_force_shapley(20, lambda s: 0.0)
