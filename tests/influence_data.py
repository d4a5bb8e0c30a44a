"""Small seeded classification problems shared by the influence tests (not a test module)."""
import torch


def gaussian_classes(n: int, d: int, C: int, seed: int, n_test: int, sep: float):
    """(X, y, X_test, y_test), float64: C Gaussian classes with means ~ N(0, sep²·I) in R^d."""
    g = torch.Generator().manual_seed(seed)
    means = sep * torch.randn(C, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (n + n_test,), generator=g)
    X = means[y] + torch.randn(n + n_test, d, generator=g, dtype=torch.float64)
    return X[:n], y[:n], X[n:], y[n:]
