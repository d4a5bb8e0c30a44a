"""Shared fixtures: skip data tests with a clear reason when no data can be found, read the
committed paper-profile results, and the influence tests' logistic problems."""
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


@pytest.fixture(scope="session")
def paper_results():
    """``paper_results(name)``: the committed ``results/<name>.json``, checked to come from the
    ``paper`` profile (the test skips, naming the command, when the file is not committed)."""
    from amlib.experiments.runner import read_results

    def read(name: str) -> dict:
        try:
            record = read_results(name)
        except FileNotFoundError as error:
            pytest.skip(str(error))
        assert record["provenance"]["profile"] == "paper", f"{name} was not run with --profile paper"
        return record
    return read


# ===== amlib.influence fixtures ====================================================================
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
