"""Shared fixtures: skip data tests with a clear reason when no data can be found."""
import os

import pytest

from amlib.data import mirror_dir

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def mirror():
    folder = mirror_dir()
    if folder is None or not folder.is_dir():
        pytest.skip("no offline data mirror: set AMLIB_DATA_MIRROR to a folder like ../shared/data")
    return folder


# ===== amlib.influence fixtures (the influence tests' block; keep it separate) ==================
@pytest.fixture(scope="module", params=[2, 3], ids=["binary", "multiclass"])
def logistic_problem(request):
    """(model, θ*, X, y, X_test, y_test): a fitted L2 logistic regression (l2 = 0.05, with bias)
    on 120 training and 60 test rows of C = 2 or 3 Gaussian classes in R^4, float64."""
    from amlib.influence import fit_logistic
    from amlib.influence.examples import gaussian_classes

    C = request.param
    X, y, Xt, yt = gaussian_classes(n=120, d=4, C=C, seed=C, n_test=60, sep=1.5)
    fit = fit_logistic(X, y, l2=0.05)
    return fit.model, fit.theta, X, y, Xt, yt
