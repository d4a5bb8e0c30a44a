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
    """Every MCAR and MNAR cell within 3 points of -1.61%, except the documented T-Net cell."""
    from amlib.experiments.am_ate import BASELINE_EXCEPTIONS

    base = summary[summary["mechanism"].isin(["MCAR", "MNAR"])].copy()
    assert len(base) == 9 * 4 * 2 + 2 * 4
    base["rate_key"] = ["attack" if r == "BLAMM" else str(int(round(100 * m)))
                        for r, m in zip(base["rate_rule"], base["missing_rate"])]
    off = base[(base["ate_mean"] - TRUE_ATE).abs() > 3.0]
    keys = ["estimator", "imputation", "mechanism", "access", "rate_key"]
    assert {tuple(k) for k in off[keys].itertuples(index=False)} == set(BASELINE_EXCEPTIONS), off
    assert ((base["ate_mean"] - TRUE_ATE).abs() < 3.5).all()


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


def _blamm(summary, estimator, imputation, access):
    return _cell(summary, estimator, imputation, "BLAMM", access)["ate_mean"]


def test_mice_is_weaker_than_mean_wherever_the_paper_says_so(summary):
    """App. D.3: MICE is less susceptible than mean imputation.  The paper's own Table 13 has
    MICE >= mean for TARNet at 50% and 25% and T-Net at 25%; every pair where ours has MICE >=
    mean must be one of those, and the claim must hold at full and 75% access."""
    from amlib.experiments.am_ate import paper_values

    paper = paper_values().query("table == 'T13' and mechanism == 'BLAMM'")
    exceptions_ours, exceptions_paper = set(), set()
    for estimator in ("linear", "tnet", "tarnet"):
        for access in (1.0, 0.75, 0.5, 0.25):
            if _blamm(summary, estimator, "mice", access) >= _blamm(summary, estimator, "mean", access):
                exceptions_ours.add((estimator, access))
            p = paper.set_index(["estimator", "imputation", "access"])["ate"]
            if p[(estimator, "mice", access)] >= p[(estimator, "mean", access)]:
                exceptions_paper.add((estimator, access))
    assert exceptions_paper == {("tarnet", 0.5), ("tarnet", 0.25), ("tnet", 0.25)}
    assert exceptions_ours <= exceptions_paper, exceptions_ours
    assert not {e for e in exceptions_ours if e[1] >= 0.75}


def test_doubly_robust_resists_at_high_access_only(summary):
    """App. D.3: DR + MIA is the most robust victim at 100% and 75% access, and loses that at
    50%.  Ours: lowest at 75%; at 100% second only to our CF + MIA (a different estimator from
    the paper's, see KNOWN_DISAGREEMENTS); at 50% moved as strongly as in the paper (8.79)."""
    from amlib.experiments.am_ate import ROWS

    for access in (1.0, 0.75):
        dr = _blamm(summary, "dr-mia", "mia", access)
        others = {r: _blamm(summary, *r, access) for r in ROWS if r != ("dr-mia", "mia")}
        beaten_by = {r for r, v in others.items() if v <= dr}
        assert beaten_by <= {("cf-mia", "mia")}, (access, beaten_by)
    assert _blamm(summary, "dr-mia", "mia", 0.75) < min(
        _blamm(summary, *r, 0.75) for r in ROWS if r != ("dr-mia", "mia"))
    dr50 = _blamm(summary, "dr-mia", "mia", 0.5)
    assert dr50 > 5.0 and dr50 > _blamm(summary, "dr-mia", "mia", 1.0) + 3.0
