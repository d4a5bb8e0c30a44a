"""The ATE estimators of amlib.am.causal recover a known ATE on simulated data.

Simulation: four standard-normal covariates; a confounded treatment,
P(W=1 | x) = expit(0.8 x0* + 0.8 r - 0.5 x1), where r marks x0 as missing and x0* is x0 when
observed and 0 otherwise (with no missingness this is plain confounding by x0 and x1); a binary
outcome with P(Y(w)=1 | x) = expit(-1 + x'(1, 0.5, -0.5, 0.3) + gamma w).  The target is the
sample ATE over the covariates drawn, tau = mean_i [expit(.. + gamma) - expit(..)], computed
exactly from the potential-outcome probabilities: about +0.165 for gamma = 0.9 and -0.094 for
gamma = -0.6, so an estimator with the wrong sign, or one that returns 0, fails.

Tolerance: 4 standard errors of the efficient estimator, SE = sd(psi)/sqrt(n) with psi the
oracle AIPW residual w(y - p1)/e - (1 - w)(y - p0)/(1 - e) (true nuisances).  For the
correctly specified logistic regression the error's z-score over 40 seeds has mean -0.2 and sd
1.0 at n = 2000, so 4 SE leaves a 6e-5 chance of a false failure; forests and networks add a
finite-sample smoothing bias, which at n = 3000 stayed within about 2 SE (nets within 3.5 SE)
over seeds 0-2, hence 5 SE for the networks.  With n = 3000 the 4-SE band is about +-0.07,
narrower than |tau|.

Missing covariates (the MIA estimators): x0 is missing completely at random (30%) or
informatively, P(r=1 | x) = expit(2 x0 - 1).  W depends on (x0*, r) only, so treatment is
unconfounded given what is observed (Mayer et al. 2020's "unconfoundedness despite
missingness") and the same tau is the target.
"""
import numpy as np
import pytest

from amlib.am.causal import (ESTIMATORS, CausalInputError, estimate_ate, estimate_ate_many)

N = 3000
FOREST = {"n_estimators": 60}
CF = {"n_estimators": 60, "n_nuisance": 40}
NETS = {"lr": 1e-3, "n_iter_min": 50, "num_threads": 1}
OPTIONS = {"linear": {}, "cf": CF, "cf-mia": FOREST, "dr-mia": FOREST, "tnet": NETS,
           "tarnet": NETS}


def _expit(z):
    return 1.0 / (1.0 + np.exp(-z))


def simulate(n, gamma, seed, missing=None):
    """(X with NaN where missing, w, y, true sample ATE, oracle standard error)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    if missing == "mcar":
        r = rng.random(n) < 0.3
    elif missing == "informative":
        r = rng.random(n) < _expit(2.0 * X[:, 0] - 1.0)
    else:
        r = np.zeros(n, bool)
    e = _expit(0.8 * np.where(r, 0.0, X[:, 0]) + 0.8 * r - 0.5 * X[:, 1])
    w = (rng.random(n) < e).astype(float)
    lin = -1.0 + X @ np.array([1.0, 0.5, -0.5, 0.3])
    p0, p1 = _expit(lin), _expit(lin + gamma)
    y = np.where(w == 1, rng.random(n) < p1, rng.random(n) < p0).astype(float)
    psi = w * (y - p1) / e - (1 - w) * (y - p0) / (1 - e)
    X_obs = X.copy()
    X_obs[r, 0] = np.nan
    return X_obs, w, y, float(np.mean(p1 - p0)), float(psi.std() / np.sqrt(n))


CASES = {"positive": (0.9, 1), "negative": (-0.6, 2)}


@pytest.fixture(scope="module")
def data():
    return {key: simulate(N, gamma, seed) for key, (gamma, seed) in CASES.items()}


def test_simulated_targets_have_the_intended_signs(data):
    assert 0.12 < data["positive"][3] < 0.20 and -0.13 < data["negative"][3] < -0.07
    # the confounding is real: the naive difference in means misses the positive target
    X, w, y, tau, se = data["positive"]
    assert abs(y[w == 1].mean() - y[w == 0].mean() - tau) > 4 * se


@pytest.mark.parametrize("name", ["linear", "cf", "cf-mia", "dr-mia"])
@pytest.mark.parametrize("case", list(CASES))
def test_recovers_known_ate(name, case, data):
    X, w, y, tau, se = data[case]
    est = estimate_ate(name, X, w, y, seed=0, **OPTIONS[name])
    assert isinstance(est, float)
    assert abs(est - tau) < 4 * se, (name, case, est, tau, se)


@pytest.mark.parametrize("name", ["tnet", "tarnet"])
def test_nets_batched_recover_both_ates_and_match_separate_training(name, data):
    # two members of different row counts in one batched model
    members = [data["positive"], simulate(N - 400, *CASES["negative"])]
    batched = estimate_ate_many(name, [m[:3] for m in members], [3, 4], **NETS)
    for est, (X, w, y, tau, se), seed in zip(batched, members, [3, 4]):
        assert abs(est - tau) < 5 * se, (name, est, tau, se)
        alone = estimate_ate(name, X, w, y, seed=seed, **NETS)
        # T-Net: same numbers; TARNet: padded arm slots change the shapes of the matrix
        # products, and training amplifies the rounding (like a fraction of a reseed)
        assert abs(est - alone) < (1e-6 if name == "tnet" else 0.5 * se), (est, alone)


@pytest.mark.parametrize("name", ["cf-mia", "dr-mia"])
@pytest.mark.parametrize("missing", ["mcar", "informative"])
def test_mia_estimators_recover_the_ate_with_missing_covariates(name, missing):
    X, w, y, tau, se = simulate(N, 0.9, 5, missing)
    assert np.isnan(X).mean() > 0.05
    est = estimate_ate(name, X, w, y, seed=0, **FOREST)
    assert abs(est - tau) < 4 * se, (name, missing, est, tau, se)


def test_estimate_ate_many_loops_with_the_given_seeds():
    X, w, y, _, _ = simulate(600, 0.9, 0)
    many = estimate_ate_many("dr-mia", [(X, w, y), (X, w, y)], [0, 1], **FOREST)
    assert many[0] == estimate_ate("dr-mia", X, w, y, seed=0, **FOREST)
    assert many[0] != many[1]  # the seed reaches the cross-fitting folds and the forests


@pytest.mark.parametrize("name", [n for n in ESTIMATORS if n not in ("cf-mia", "dr-mia")])
def test_nan_is_refused_with_the_fix(name, data):
    X, w, y, _, _ = data["positive"]
    X = X.copy()
    X[0, 1] = np.nan
    with pytest.raises(CausalInputError, match="impute"):
        estimate_ate(name, X, w, y)


@pytest.mark.parametrize("bad, match", [
    (lambda X, w, y: (X, w * 2, y), "binary"),
    (lambda X, w, y: (X, w, y + 0.5), "binary"),
    (lambda X, w, y: (X[:-1], w, y), "rows"),
    (lambda X, w, y: (X[:, 0], w, y), "two-dimensional"),
    (lambda X, w, y: (X, np.zeros_like(w), y), "arm"),
    (lambda X, w, y: (np.where(X > 3, np.inf, X), w, y), "infinite"),
])
def test_bad_input_raises_a_typed_error(bad, match, data):
    X, w, y, _, _ = data["positive"]
    with pytest.raises(CausalInputError, match=match):
        estimate_ate("linear", *bad(X, w, y))


def test_bad_names_and_options():
    X, w, y, _, _ = simulate(200, 0.9, 0)
    with pytest.raises(CausalInputError, match="unknown estimator"):
        estimate_ate("grf", X, w, y)
    with pytest.raises(CausalInputError, match="allowed"):
        estimate_ate("linear", X, w, y, n_estimators=3)
    with pytest.raises(CausalInputError, match="one seed per data set"):
        estimate_ate_many("linear", [(X, w, y)], [0, 1])
    with pytest.raises(CausalInputError, match="non-negative"):
        estimate_ate("linear", X, w, y, seed=-1)
    assert issubclass(CausalInputError, ValueError)
