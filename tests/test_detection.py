"""amlib.am.detection: Little's MCAR test against a hand computation and its null distribution, the
predictability test, input errors, and the committed am-detection results."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from amlib.am.detection import auc, em_normal, little_mcar_test, missingness_predictability_test


def _bivariate(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.multivariate_normal([1.0, -1.0], [[1.0, 0.6], [0.6, 2.0]], size=n)
    X[rng.random(n) < 0.3, 1] = np.nan
    return X


def test_little_matches_a_hand_computation_with_one_masked_column():
    """One monotone pattern: the ML estimates have Anderson's closed form (regress x2 on x1 in
    the complete rows), and d² has two terms, one per pattern, with df = 2 + 1 − 2 = 1."""
    X = _bivariate()
    miss = np.isnan(X[:, 1])
    x1, cc = X[:, 0], X[~miss]
    beta, alpha = np.polyfit(cc[:, 0], cc[:, 1], 1)
    resid_var = np.mean((cc[:, 1] - alpha - beta * cc[:, 0]) ** 2)
    mu = np.array([x1.mean(), alpha + beta * x1.mean()])
    s11 = x1.var()
    cov = np.array([[s11, beta * s11], [beta * s11, resid_var + beta ** 2 * s11]])
    d_full = cc.mean(axis=0) - mu
    d_part = x1[miss].mean() - mu[0]
    d2 = (len(cc) * d_full @ np.linalg.solve(cov, d_full) + miss.sum() * d_part ** 2 / s11)

    result = little_mcar_test(pd.DataFrame(X, columns=["a", "b"]))
    assert np.allclose(result.mean, mu, atol=1e-7) and np.allclose(result.cov, cov, atol=1e-7)
    assert result.statistic == pytest.approx(d2, rel=1e-6)
    assert result.df == 1 and result.n_patterns == 2
    assert result.pvalue == pytest.approx(stats.chi2.sf(d2, 1), rel=1e-6)


def test_em_without_missing_values_is_the_sample_moments():
    X = np.random.default_rng(1).normal(size=(30, 3))
    mean, cov = em_normal(X)
    assert np.allclose(mean, X.mean(axis=0)) and np.allclose(cov, np.cov(X.T, bias=True))


def test_little_is_calibrated_under_mcar_with_several_patterns():
    rng = np.random.default_rng(0)
    sigma = [[1, .5, .2], [.5, 1, .3], [.2, .3, 1]]
    pvalues = []
    for _ in range(300):
        X = rng.multivariate_normal([0, 1, 2], sigma, size=200)
        X[rng.random(200) < 0.2, 1] = np.nan
        X[rng.random(200) < 0.1, 2] = np.nan          # four patterns in all
        pvalues.append(little_mcar_test(X).pvalue)
    assert 0.02 <= np.mean(np.array(pvalues) < 0.05) <= 0.09
    assert stats.kstest(pvalues, "uniform").pvalue > 0.01


def test_both_tests_reject_missingness_driven_by_an_observed_column():
    rng = np.random.default_rng(2)
    X = rng.multivariate_normal([0, 0, 0], np.eye(3) + 0.3, size=400)
    X[X[:, 0] > 0.5, 1] = np.nan                       # MAR, not MCAR
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    assert little_mcar_test(frame).pvalue < 1e-6
    logistic = missingness_predictability_test(frame, "b")
    assert logistic.pvalue < 1e-6 and logistic.df == 2 and logistic.auc > 0.95


def test_predictability_is_calibrated_under_mcar():
    rng = np.random.default_rng(3)
    rejections = []
    for _ in range(100):
        frame = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
        frame.loc[rng.random(300) < 0.2, "b"] = np.nan
        rejections.append(missingness_predictability_test(frame, "b").pvalue < 0.05)
    assert np.mean(rejections) <= 0.12


def test_auc_is_the_mann_whitney_probability():
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert auc(np.array([1.0, 1.0]), np.array([0, 1])) == 0.5


def test_clear_errors():
    X = np.random.default_rng(4).normal(size=(20, 3))
    with pytest.raises(ValueError, match="no missing"):
        little_mcar_test(X)
    Y = X.copy()
    Y[:, 2] = np.nan
    with pytest.raises(ValueError, match="every row"):
        little_mcar_test(Y)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    with pytest.raises(ValueError, match="no missing"):
        missingness_predictability_test(frame, "b")
    with pytest.raises(KeyError):
        missingness_predictability_test(frame, "z")
    frame.loc[:3, "b"] = np.nan
    frame.loc[5, "c"] = np.nan
    with pytest.raises(ValueError, match="fully observed"):
        missingness_predictability_test(frame, "b")
    assert missingness_predictability_test(frame, "b", predictors=["a"]).df == 1
    frame["b"] = np.nan
    with pytest.raises(ValueError, match="every row"):
        missingness_predictability_test(frame, "b", predictors=["a"])


@pytest.fixture(scope="module")
def summary(paper_results):
    record = paper_results("am-detection")
    return pd.DataFrame(record["results"]["summary"]).set_index(["dataset", "attack", "mechanism"])


def test_committed_results_cover_the_paper_grid(summary):
    cells = {(d, a) for d, a, _ in summary.index}
    assert cells == {(d, a) for d in ("german-credit", "wine-quality") for a in ("mean", "cca")}
    assert (summary["masks"] == 20).all()
    rates = summary.xs("BLAMM", level="mechanism")["hidden_share"]
    mcar = summary.xs("MCAR", level="mechanism")["hidden_share"]
    assert np.allclose(rates, mcar, atol=0.02)                # MCAR matched to the learned rate


def test_committed_results_support_the_chapters_claims(summary):
    """The chapter's claims: every BLAMM mask is flagged by both tests, MCAR masks about 5% of
    the time, and the missingness is far more predictable under BLAMM than under MCAR."""
    blamm = summary.xs("BLAMM", level="mechanism")
    mcar = summary.xs("MCAR", level="mechanism")
    assert (blamm["little_reject"] >= 0.95).all() and (blamm["lr_reject"] >= 0.95).all()
    assert mcar["little_reject"].mean() <= 0.10 and mcar["lr_reject"].mean() <= 0.10
    assert (blamm["auc"] > mcar["auc"] + 0.05).all()
