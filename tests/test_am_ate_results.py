"""The committed paper-profile results of the ATE experiment against the issue's and paper's numbers.

Targets (paper, Table 2): linear + mean under BLAMM at full access 9.86% (we require >= 8%), T-Net
and TARNet + mean 10.42% and 10.52% (>= 7%); τ̂ falls as access falls (2.26% at 25% for
linear); every MCAR and MNAR cell stays within 3 points of the ground truth -1.61%.  A failure
here means the reproduction misses the paper's number: the chapter says by how much and why.
"""
import pandas as pd
import pytest

from amlib.experiments.am_ate import PAPER_RATES, TRUE_ATE, compare
from amlib.experiments.runner import results_dir


@pytest.fixture(scope="module")
def record():
    import json

    path = results_dir() / "am-ate.json"
    if not path.is_file():
        pytest.skip("results/am-ate.json is not committed yet "
                    "(run `amlib reproduce am-ate --profile paper`)")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def summary(record):
    return pd.DataFrame(record["results"]["summary"])


def _cell(summary, estimator, imputation, mechanism, access):
    rows = summary[(summary["estimator"] == estimator) & (summary["imputation"] == imputation)
                   & (summary["mechanism"] == mechanism) & (summary["access"] == access)
                   & (summary["rate_rule"] == "BLAMM")]
    assert len(rows) == 1, (estimator, imputation, mechanism, access)
    return rows.iloc[0]


def test_results_are_the_paper_profile(record, summary):
    assert record["provenance"]["profile"] == "paper"
    assert not record["provenance"]["git_commit"].endswith("-dirty")
    assert (summary["n"] == 5).all()
    assert set(summary["mechanism"]) == {"BLAMM", "MCAR", "MNAR"}
    # every cell of Tables 2, 13, 14, 15 was run
    assert compare(summary)["ate_ours"].notna().all()


def test_linear_mean_blamm_full_access_reaches_8_percent(summary):
    cell = _cell(summary, "linear", "mean", "BLAMM", 1.0)
    assert cell["ate_mean"] >= 8.0, f"paper 9.86%, ours {cell['ate_mean']:.2f}%"


@pytest.mark.parametrize("estimator,paper", [("tnet", 10.42), ("tarnet", 10.52)])
def test_neural_mean_blamm_full_access_reaches_7_percent(summary, estimator, paper):
    cell = _cell(summary, estimator, "mean", "BLAMM", 1.0)
    assert cell["ate_mean"] >= 7.0, f"paper {paper}%, ours {cell['ate_mean']:.2f}%"


def test_linear_mean_tau_falls_with_access(summary):
    taus = [_cell(summary, "linear", "mean", "BLAMM", a)["ate_mean"] for a in (1.0, 0.5, 0.25)]
    assert taus[0] > taus[1] > taus[2], taus     # paper: 9.86 > 6.29 > 2.26
    assert taus[2] < 0.5 * taus[0]


def test_baseline_cells_stay_near_the_ground_truth(summary):
    base = summary[summary["mechanism"].isin(["MCAR", "MNAR"])]
    assert len(base) >= 9 * 4 * 2
    off = base[(base["ate_mean"] - TRUE_ATE).abs() > 3.0]
    assert off.empty, off[["estimator", "imputation", "mechanism", "access", "missing_rate",
                           "ate_mean"]]


def test_expected_missing_rates_reported_next_to_the_paper(record):
    attacks = pd.DataFrame(record["results"]["attacks"]).set_index("access")
    for access, paper in PAPER_RATES.items():
        assert attacks.loc[access, "paper_rate"] == paper
        # ours within a factor of 1.5 of the paper's 7.2 / 11.1 / 24.3 / 12.5%
        assert paper / 1.5 < attacks.loc[access, "missing_rate"] < paper * 1.5, attacks


def test_figure8_and_timings_are_saved(record):
    fig8 = record["results"]["figure8"]
    assert set(fig8) == {"1.0", "0.75", "0.5", "0.25"}
    for curves in fig8.values():
        assert len(curves["g"]) == 300
        assert {"missing_rate_y0", "missing_rate_y1", "local_rate"} <= set(curves)
    times = record["results"]["time_s"]
    assert {"attack", "linear", "tnet", "tarnet", "cf", "cf-mia", "dr-mia"} <= set(times)


def test_known_disagreements_are_exactly_the_disagreeing_cells(summary):
    from amlib.experiments.am_ate import KNOWN_DISAGREEMENTS, TOLERANCE

    cells = compare(summary)
    keys = ["estimator", "imputation", "mechanism", "access", "rate_key"]
    unique = cells.drop_duplicates(subset=keys)
    off = unique[(unique["ate_ours"] - unique["ate"]).abs() > TOLERANCE]
    assert {tuple(k) for k in off[keys].itertuples(index=False)} == set(KNOWN_DISAGREEMENTS)


def test_transfer_orderings(summary):
    """Paper, App. D.3: MICE is less susceptible than mean imputation; DR + MIA is the most
    robust victim at 100% and 75% access."""
    def blamm(estimator, imputation, access):
        return _cell(summary, estimator, imputation, "BLAMM", access)["ate_mean"]

    for estimator in ("linear",):
        assert blamm(estimator, "mice", 1.0) < blamm(estimator, "mean", 1.0)
    for access in (1.0, 0.75):
        others = [blamm(e, i, access) for e, i in
                  [("linear", "mean"), ("tnet", "mean"), ("tarnet", "mean"), ("cf", "mean"),
                   ("linear", "mice"), ("tnet", "mice"), ("tarnet", "mice"), ("cf-mia", "mia")]]
        assert blamm("dr-mia", "mia", access) < min(others) + 1.0, access
