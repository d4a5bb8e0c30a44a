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


def test_diagnostics_show_the_ca_housing_cca_attack_converging(record):
    """The documented reason for the ca-housing CCA gap: every seed misses at Table 4's 600
    epochs, a longer run of the same attack crosses 0.05, a start near fully observed fails."""
    diag = pd.DataFrame(record["results"]["diagnostics"]["summary"])
    cca = diag[(diag["modeler"] == "cca") & (diag["mechanism"] == "BLAMM") & (diag["attack"] == "cca")]
    default = cca[cca["initial_missing_rate"].isna()]
    assert set(default["seed"]) == {1, 2, 0} and set(default["epochs"]) == {600, 1200, 2400}
    assert (default.loc[default["epochs"] == 600, "pvalue"] < 0.05).all(), default
    longest = default.set_index("epochs").loc[2400]
    assert longest["pvalue"] > 0.05 and longest["missing_rate"] < default["missing_rate"].min() + 1e-12
    started = cca[cca["initial_missing_rate"].notna()]
    assert len(started) == 1 and started["pvalue"].iloc[0] < 0.05
    # the regression attack at four times its epochs: its own modeler ✓, the CCA and mean ones not
    regression = diag[(diag["attack"] == "regression") & (diag["mechanism"] == "BLAMM")]
    p = regression.set_index("modeler")["pvalue"]
    assert p["regression"] > 0.05 and p["cca"] < 0.05 and p["mean"] < 0.05, regression


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


def test_matched_attacks_land_near_theta_alpha(summary):
    """Tables 1, 6, 7: a modeler met by its own attack lands within 0.15 (normalised ℓ1) of θα
    and at most half as far as under MCAR at the same rate; regression imputation and CCA
    behave alike under MCAR (the paper's columns differ by a few hundredths)."""
    from amlib.experiments.am_tables import l1_cells

    l1 = l1_cells(summary)
    normalised = l1[l1["normalised"]].set_index(["dataset", "modeler", "attack", "mechanism"])
    blamm = normalised.xs("BLAMM", level="mechanism")
    mcar = normalised.xs("MCAR", level="mechanism")
    matched = blamm[blamm.index.get_level_values("modeler") == blamm.index.get_level_values("attack")]
    assert len(matched) >= 6
    assert (matched["l1_normalised"] < 0.15).all(), matched["l1_normalised"]
    assert (matched["l1_normalised"] < 0.5 * mcar.loc[matched.index, "l1_normalised"]).all()
    by_modeler = (summary[(summary["mechanism"] == "MCAR")
                          & summary["dataset"].isin(["ca-housing", "wine-quality"])]
                  .groupby(["dataset", "modeler"])["l1_normalised"].mean().unstack())
    assert ((by_modeler["regression"] - by_modeler["cca"]).abs() < 0.05).all()


def test_successful_attacks_cost_little_on_the_audit_split(summary, paper_results):
    """Table 9: wherever the attack succeeds (mean p > 0.05) the modeler's audit score is within
    0.05 of θα's (Table 3); scores above 1 (NMSE blown up by ca-housing's AveOccup outliers)
    occur only for the CCA modeler under MCAR, and their medians stay below 0.6."""
    table3 = pd.DataFrame(paper_results("am-table3")["results"]).query("seed == 0")
    theta_alpha_score = table3.set_index("dataset")["score_theta_alpha"]
    blamm = summary[(summary["mechanism"] == "BLAMM") & (summary["pvalue"] > 0.05)]
    cost = (blamm["audit_score"] - blamm["dataset"].map(theta_alpha_score)).abs()
    assert len(blamm) >= 20 and cost.max() < 0.05, cost.max()
    blown = summary[summary["audit_score"] > 1.0]
    assert set(blown["dataset"]) == {"ca-housing"} and set(blown["mechanism"]) == {"MCAR"}
    assert set(blown["modeler"]) == {"cca"} and (blown["audit_score_median"] < 0.6).all()


def test_coefficient_tables_move_towards_theta_alpha(record):
    """Tables 10-12: the target is significant on complete data, not after BLAMM, still after
    MCAR; away from the target BLAMM's fit is nearer θα than MCAR's."""
    from amlib.experiments.am_tables import coefficient_table

    for dataset, attack in [("ca-housing", "mean"), ("wine-quality", "cca"), ("diabetes", "cca")]:
        table = coefficient_table(record, dataset, attack, attack)
        target = AM_TARGETS[dataset].target_feature
        assert table.loc[target, "p (θp)"] < 1e-3 and table.loc[target, "p BLAMM"] > 0.05
        assert table.loc[target, "p MCAR"] < 0.05, dataset
        others = table.drop(index=[target])
        assert ((others["θ̂ BLAMM"] - others["θα"]).abs().sum()
                < (others["θ̂ MCAR"] - others["θα"]).abs().sum()), dataset


def test_training_curves_fall(record):
    """Figures 5-7: the upper-level loss falls at least fivefold; the ca-housing CCA attack hides
    over 90% of MedInc at its peak and is still shedding missingness in its last 100 epochs."""
    def history(dataset, attack):
        trial = next(t for t in record["results"]["trials"]
                     if (t["params"]["dataset"], t["params"]["attack"]) == (dataset, attack))
        return pd.DataFrame(trial["history"])

    for dataset, attack in [("ca-housing", "mean"), ("wine-quality", "cca"), ("diabetes", "cca")]:
        loss = history(dataset, attack)["loss"]
        assert loss.iloc[-1] < 0.2 * loss.iloc[0], (dataset, attack)
    rate = history("ca-housing", "cca")["missing_rate"]
    assert rate.max() > 0.9 and rate.iloc[-101] - rate.iloc[-1] > 0.03
