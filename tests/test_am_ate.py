"""The pieces of the am-ate experiment (chapter 7) on small data with known answers."""
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from amlib.am.blamm import BLAMM
from amlib.am.modelers import remediate
from amlib.experiments import am_ate
from amlib.experiments.am_ate_attack import MASKED, mask_frame


def _simulate(n=600, seed=0):
    """Randomised W, a strong covariate x1 and a protective treatment: tau about -5 points."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    w = rng.integers(0, 2, n).astype(float)
    eta = -1.0 + 1.5 * x1 + 0.5 * x2 - 0.3 * w
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"x1": x1, "x2": x2, "w": w, "y": y})


def _tau_sklearn(frame):
    """The victim, independent of BLAMM's IRLS: scikit-learn's unpenalised logistic S-learner."""
    X = frame[["x1", "x2", "w"]].to_numpy()
    model = LogisticRegression(C=np.inf, max_iter=600).fit(X, frame["y"])
    X1, X0 = X.copy(), X.copy()
    X1[:, 2], X0[:, 2] = 1.0, 0.0
    return model.predict_proba(X1)[:, 1].mean() - model.predict_proba(X0)[:, 1].mean()


@pytest.fixture(scope="module")
def ate_attack():
    frame = _simulate()
    attack = BLAMM(frame, "y", ["x1"], family="bernoulli", proxy="mean", mechanism="per-sample",
                   objective="ate", treatment="w", tau_alpha=0.10, lam_upper=0.05, lr=0.05,
                   epochs=100, seed=0, progress_bar=False).fit()
    return frame, attack


def test_blamm_ate_moves_the_mean_imputed_linear_tau_to_the_target(ate_attack):
    frame, attack = ate_attack
    clean = _tau_sklearn(frame)
    assert clean < -0.02                      # the simulated effect is protective
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attacked = [_tau_sklearn(remediate(m, "mean", "y")) for m in attack.sample_masks(5, seed=1)]
    # from about -5 points to within 3 points of the +10-point target, with the opposite sign
    assert abs(np.mean(attacked) - 0.10) < 0.03, attacked
    # BLAMM's own proxy estimate agrees with the victim's on the sampled masks
    from amlib.experiments.am_ate_attack import _proxy_tau
    assert abs(_proxy_tau(attack) - np.mean(attacked)) < 0.03


def test_mcar_at_the_same_rate_leaves_tau_nearly_unchanged(ate_attack):
    frame, attack = ate_attack
    clean = _tau_sklearn(frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mcar = [_tau_sklearn(remediate(m, "mean", "y"))
                for m in attack.sample_masks(5, seed=1, mechanism="mcar")]
    shares = [m["x1"].isna().mean() for m in attack.sample_masks(5, seed=1, mechanism="mcar")]
    assert abs(np.mean(shares) - attack.missing_rate()) < 0.05
    assert abs(np.mean(mcar) - clean) < 0.03, (clean, mcar)


def test_mask_frame_hides_by_pattern_bits():
    frame = pd.DataFrame({"gestat": [1.0, 2, 3, 4], "wtgain": [5.0, 6, 7, 8], "w": [0, 1, 0, 1]})
    out = mask_frame(frame, [0, 1, 2, 3])   # 00, 01, 10, 11 (first masked feature = high bit)
    assert out["gestat"].isna().tolist() == [True, True, False, False]
    assert out["wtgain"].isna().tolist() == [True, False, True, False]
    assert out["w"].tolist() == frame["w"].tolist()
    assert MASKED == ["gestat", "wtgain"]


def test_twins_observational_sample(mirror):
    from amlib.data.twins import twins_observational

    sample = twins_observational(seed=3)
    frame = sample.frame
    assert len(frame) == 11400 and len(sample.covariates) == 39
    X = frame[sample.covariates]
    assert X.min().min() == 0.0 and X.max().max() == 1.0          # min-max scaled
    train, test = sample.split["train"], sample.split["test"]
    assert len(train) == len(test) == 5700 and not set(train) & set(test)
    assert ((frame["y"] == np.where(frame["w"] == 1, frame["y1"], frame["y0"]))).all()
    assert abs(frame["w"].mean() - 0.5) < 0.02
    assert sample.true_ate() == pytest.approx(-0.0161, abs=1e-4)   # the paper's -1.61%
    # each one-hot group sums to one; the linear design drops a level per group -> full rank
    for levels in sample.categorical.values():
        assert np.allclose(frame[levels].sum(axis=1), 1.0)
    design = np.column_stack([np.ones(5700), sample.part("train")[sample.linear_covariates("train")],
                              sample.part("train")["w"]])
    assert np.linalg.matrix_rank(design) == design.shape[1]
    # another seed draws other twins and another split
    other = twins_observational(seed=4)
    assert (other.frame["w"] != frame["w"]).any()
    assert not np.array_equal(other.split["train"], train)


def test_paper_values_are_consistent():
    paper = am_ate.paper_values()
    assert paper.groupby("table").size().to_dict() == {"T13": 72, "T14": 72, "T15": 20, "T2": 32}
    assert paper["cell"].is_unique
    keys = ["estimator", "imputation", "mechanism", "access", "rate_key"]
    t2, t13 = (paper[paper["table"] == t].set_index(keys)["ate"] for t in ("T2", "T13"))
    assert (t13.loc[t2.index] == t2).all()                       # Table 13 repeats Table 2
    t14 = paper[paper["table"] == "T14"].set_index(keys)["ate"]
    blamm = [k for k in t14.index if k[2] == "BLAMM"]
    assert (t14.loc[blamm] == t13.loc[blamm]).all()              # and Table 14 its BLAMM columns
    t15 = paper[paper["table"] == "T15"].set_index(keys)["ate"]
    shared = [k for k in t15.index if k[4] == "attack" and k[2] != "MNAR"]
    assert (t15.loc[shared] == t2.loc[shared]).all()
    # the paper's headline numbers
    assert t2[("linear", "mean", "BLAMM", 1.0, "attack")] == 9.86
    assert t2[("tarnet", "mean", "BLAMM", 1.0, "attack")] == 10.52
    assert t13[("dr-mia", "mia", "BLAMM", 0.5, "attack")] == 8.79


def test_grid_and_summary_shapes():
    config = am_ate.PROFILES["paper"]
    attacks = am_ate.attack_grid(config)
    assert len(attacks) == 20 and {a["epochs"] for a in attacks} == {300}
    assert {a["access"]: a["lam_upper"] for a in attacks} == {1.0: 0.5, 0.75: 0.25, 0.5: 1e-4,
                                                             0.25: 1e-4}
    cells = am_ate.cell_grid(config)
    # per access: BLAMM, MCAR, MNAR x (mean, mice, mia); at full access two more MNAR x mean; clean
    assert len(cells) == 4 * 3 * 3 + 2 + 1
    fake = [{"taus": {e: [0.01 * k for k in range(5)] for e in c["estimators"]},
             "hidden_shares": [0.07] * 5, "attack_rates": [0.07] * 5, "time_s": {}}
            for c in cells]
    summary = am_ate.summarise(cells, fake)
    assert {"estimator", "imputation", "mechanism", "access", "missing_rate", "ate_mean",
            "ate_sd"} <= set(summary.columns)
    assert set(summary["mechanism"]) == {"BLAMM", "MCAR", "MNAR"}
    assert summary["ate_mean"].eq(2.0).all()                    # percent
    cells_vs_paper = am_ate.compare(summary)
    assert cells_vs_paper["ate_ours"].notna().all()             # every paper cell is run
