"""The worked example of the influence chapters (8–10), and their common set-up.

Chapters 8, 9 and 10 study influence on German credit, the small fairness data set of Li & Liu
(600 training, 200 validation and 200 test rows, 56 features): a binary logistic regression
without intercept, L2-regularised with Li & Liu's strength converted to the library's mean-loss
units (``l2 = l2_reg / n``, see :mod:`amlib.influence.fairness`), fitted to machine precision.
:func:`german_credit_tensors` gives the tensors and the fitted model in one call;
:func:`chapter_setup` is the set-up every influence chapter starts with;
:func:`gaussian_classes` draws the small seeded problems of the unit tests.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..data.fairness import FairnessDataset, load_fairness
from ..plotting import set_style
from .fitting import FitResult, fit_logistic
from .models import LogisticModel

__all__ = ["GermanCredit", "german_credit_tensors", "chapter_setup", "gaussian_classes"]


@dataclass
class GermanCredit:
    """German credit as tensors (float64 features, int64 labels) and the honest model.

    ``X, y`` training rows; ``X_val, y_val`` the validation rows (the query set of the
    influence chapters); ``X_test, y_test`` held-out rows; ``l2`` the penalty in the library's
    units; ``fit`` the fitted :class:`~amlib.influence.fitting.FitResult` (``model``, ``theta``);
    ``data`` the :class:`~amlib.data.fairness.FairnessDataset` it came from (numpy arrays,
    sensitive groups).
    """

    X: torch.Tensor
    y: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    l2: float
    fit: FitResult
    data: FairnessDataset | None = field(repr=False, default=None)

    @property
    def model(self) -> LogisticModel:
        return self.fit.model

    @property
    def theta(self) -> torch.Tensor:
        return self.fit.theta


def german_credit_tensors(*, tol: float = 1e-12) -> GermanCredit:
    """Load German credit (through :mod:`amlib.data`), convert it to tensors and fit the honest
    model: no intercept, ``l2 = l2_reg / n``, Newton to ‖∇R‖ ≤ ``tol``."""
    data = load_fairness("german")

    def rows(x, y):
        return torch.tensor(x, dtype=torch.float64), torch.tensor(y).long()

    X, y = rows(data.x_train, data.y_train)
    X_val, y_val = rows(data.x_val, data.y_val)
    X_test, y_test = rows(data.x_test, data.y_test)
    l2 = data.l2_reg / X.shape[0]
    fit = fit_logistic(X, y, bias=False, l2=l2, method="newton", tol=tol)
    return GermanCredit(X, y, X_val, y_val, X_test, y_test, l2, fit, data)


def chapter_setup(*, float64: bool = True, threads: int = 1) -> None:
    """The set-up of an influence chapter: the book's plot style, ``threads`` torch threads (the
    chapters are small; more threads only add noise to the timings they show) and, with
    ``float64``, float64 as torch's default dtype (the chapters compare solvers to ~1e-12)."""
    set_style()
    torch.set_num_threads(threads)
    if float64:
        torch.set_default_dtype(torch.float64)


def gaussian_classes(n: int, d: int, C: int, seed: int, n_test: int, sep: float):
    """(X, y, X_test, y_test), float64: C Gaussian classes with means ~ N(0, sep²·I) in R^d,
    unit covariance, labels uniform; n training and ``n_test`` test rows from one generator."""
    g = torch.Generator().manual_seed(seed)
    means = sep * torch.randn(C, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (n + n_test,), generator=g)
    X = means[y] + torch.randn(n + n_test, d, generator=g, dtype=torch.float64)
    return X[:n], y[:n], X[n:], y[n:]
