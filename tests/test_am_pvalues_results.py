"""The committed paper-profile results of the p-value experiment against the paper's tables.

Every cell the paper marks with a tick in the comparisons named by the chapter (matched attacks,
the transfers mean/cca and regression/regression, all of german-credit, diabetes) must have a
mean p-value above 0.05 unless it is listed, with its reason, in KNOWN_DISAGREEMENTS; no MCAR
cell may; and KNOWN_DISAGREEMENTS must be exactly the cells where we disagree, so it cannot go
stale in either direction.
"""
import pandas as pd
import pytest

from amlib.experiments.am_datasets import AM_TARGETS
from amlib.experiments.am_pvalues import (KNOWN_DISAGREEMENTS, claimed_cells,
                                          compare_cells, missing_rates, paper_values)


@pytest.fixture(scope="module")
def record(paper_results):
    return paper_results("am-pvalues")


@pytest.fixture(scope="module")
def summary(record):
    return pd.DataFrame(record["results"]["summary"])


@pytest.fixture(scope="module")
def cells(summary):
    return compare_cells(summary)


def test_results_are_the_paper_profile(record, cells):
    assert record["provenance"]["profile"] == "paper"
    config = record["provenance"]["config"]
    assert config["masks"] == 20 and config["epoch_scale"] == 1.0
    # every (modeler, attack) cell of Table 8 was run, for both mechanisms
    assert len(cells) == 2 * (3 * 12 + 2) == 76


def test_paper_ticks_agree_with_the_papers_own_table8():
    """The copied tables are self-consistent: a tick in Tables 1, 6, 7 iff Table 8's p > 0.05."""
    paper = paper_values()
    keys = ["dataset", "modeler", "attack", "mechanism"]
    ticks = paper[paper["table"].isin(["AM-1", "AM-6", "AM-7"])][keys + ["check"]]
    p8 = paper[paper["table"] == "AM-8"][keys + ["value"]]
    both = ticks.merge(p8, on=keys)
    assert len(both) == len(ticks) == 76
    assert ((both["value"] > 0.05) == (both["check"] == 1)).all()


def test_claimed_paper_ticks_hold_except_the_known_disagreements(cells):
    claimed = claimed_cells(cells)
    assert len(claimed) == 22  # 4 pairs x ca-housing, wine-quality; 12 german-credit; 2 diabetes
    for _, cell in claimed.iterrows():
        key = (cell["dataset"], cell["modeler"], cell["attack"], "BLAMM")
        if key in KNOWN_DISAGREEMENTS:
            assert cell["pvalue_ours"] <= 0.05, f"{key} now agrees: remove it from KNOWN_DISAGREEMENTS"
        else:
            assert cell["pvalue_ours"] > 0.05, f"{key}: mean p = {cell['pvalue_ours']:.3g}"


def test_no_mcar_cell_is_insignificant(cells):
    mcar = cells[cells["mechanism"] == "MCAR"]
    assert len(mcar) == 38
    assert (mcar["pvalue_ours"] < 0.05).all(), mcar[mcar["pvalue_ours"] >= 0.05]


def test_known_disagreements_are_exactly_the_disagreeing_cells(cells):
    disagree = {tuple(row) for row in cells.loc[~cells["agree"],
                                                ["dataset", "modeler", "attack", "mechanism"]]
                .itertuples(index=False)}
    assert disagree == set(KNOWN_DISAGREEMENTS)


def test_missing_rates_are_reported_and_near_table5(record):
    trials = [t["params"] for t in record["results"]["trials"]]
    rates = missing_rates(trials, record["results"]["trials"])
    assert rates["paper_percent"].notna().all() and len(rates) == 10
    # the paper: 4.5-18.1% everywhere except the ca-housing CCA (40.2%) and linear (41.1%) attacks
    ca_heavy = (rates["dataset"] == "ca-housing") & rates["attack"].isin(["cca", "regression"])
    assert rates.loc[~ca_heavy, "ours_percent"].between(3.0, 20.0).all(), rates
    assert rates.loc[ca_heavy, "ours_percent"].between(25.0, 50.0).all(), rates
    # ours within a factor of two of the paper's in every cell
    ratio = rates["ours_percent"] / rates["paper_percent"]
    assert ratio.between(0.5, 2.0).all(), rates


def test_diagnostics_keep_ca_housing_cca_below_threshold(record):
    """The documented reason for the ca-housing CCA gap: other seeds and twice the epochs."""
    diag = pd.DataFrame(record["results"]["diagnostics"]["summary"])
    cca = diag[(diag["modeler"] == "cca") & (diag["mechanism"] == "BLAMM")]
    assert set(cca["seed"]) == {0, 1, 2} and cca["epochs"].max() == 1200
    assert (cca["pvalue"] < 0.05).all(), cca


def test_every_dataset_has_feature_tables(record):
    assert set(record["results"]["features"]) == set(AM_TARGETS)


def test_chapter_tables_line_up_with_the_record(record, paper_results):
    """The chapter's side-by-side tables: one row per (modeler, attack) pair run, one column per
    (data set, mechanism, side); the coefficient table's θp is the Table 3 fit of the same split."""
    from amlib.experiments.am_tables import (coefficient_table, l1_cells, pvalue_text,
                                             side_by_side)

    assert [pvalue_text(p) for p in (0.0, 0.5, 0.01, 2e-5)] == ["0", "0.500 ✓", "0.010", "2e-05"]
    summary = pd.DataFrame(record["results"]["summary"])
    cells = compare_cells(summary)
    wide = side_by_side(cells, "pvalue_paper", "pvalue_ours", pvalue_text)
    assert wide.shape == (len(cells[["modeler", "attack"]].drop_duplicates()),
                          2 * len(cells[["dataset", "mechanism"]].drop_duplicates()))
    l1 = l1_cells(summary)
    assert (l1.loc[l1["normalised"], "ratio"]
            == l1.loc[l1["normalised"], "l1_normalised"] / l1.loc[l1["normalised"], "value"]).all()
    table = coefficient_table(record, "diabetes", "cca", "cca")
    table3 = pd.DataFrame(paper_results("am-table3")["results"]).query("seed == 0")
    assert table.loc["sex", "θp"] == pytest.approx(
        table3.set_index("dataset").loc["diabetes", "coef"], rel=1e-10)
    assert table.loc["sex", "θα"] == 0.0
