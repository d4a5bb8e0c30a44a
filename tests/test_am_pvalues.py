"""The p-value experiment: its grid follows the paper's Table 4, and one small trial runs end to end."""
import numpy as np
import pandas as pd
import pytest

from amlib.experiments.am_datasets import TABLE4
from amlib.experiments.am_pvalues import PROFILES, feature_table, run_trial, summarise, trial_grid


def test_paper_grid_is_table4():
    trials = trial_grid(PROFILES["paper"])
    assert len(trials) == 10 == len(TABLE4)
    by_key = {(t["dataset"], t["attack"]): t for t in trials}
    assert by_key[("ca-housing", "cca")]["epochs"] == 600
    assert by_key[("ca-housing", "cca")]["lam_upper"] == 0.05
    assert by_key[("wine-quality", "regression")]["lam_lower"] == 1e-7
    assert by_key[("german-credit", "regression")]["epochs"] == 333
    assert by_key[("diabetes", "cca")]["modelers"] == ["cca", "mice"]
    assert all(t["masks"] == 20 and t["lr"] == 0.01 for t in trials)


@pytest.fixture(scope="module")
def small_trial(mirror):
    params = dict(trial_grid(PROFILES["quick"])[-1])  # diabetes, CCA attack
    assert params["dataset"] == "diabetes"
    params.update(epochs=30, masks=2)
    return params, run_trial(params)


def test_small_trial_records_everything(small_trial):
    params, result = small_trial
    masks = pd.DataFrame(result["masks"])
    assert len(masks) == 2 * 2 * len(params["modelers"])  # masks x mechanisms x modelers
    assert set(masks["mechanism"]) == {"BLAMM", "MCAR"}
    assert np.isfinite(masks[["coef", "pvalue", "l1", "audit_score"]].to_numpy()).all()
    assert 0 < result["missing_rate"] < 1
    assert len(result["history"]["loss"]) == params["epochs"]
    assert result["theta_alpha"]["sex"] == 0.0


def test_summary_and_feature_tables(small_trial):
    params, result = small_trial
    summary = summarise([params], [result])
    assert len(summary) == 2 * len(params["modelers"])
    assert (summary["insignificant"] == (summary["pvalue"] > 0.05)).all()
    features = feature_table([params], [result], "diabetes")
    assert set(features["feature"]) == {"const", "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"}
    with pytest.raises(KeyError, match="no trials"):
        feature_table([params], [result], "wine-quality")


def test_diagnostics_run_only_in_the_paper_profile():
    from amlib.experiments.am_pvalues import diagnostic_grid

    assert diagnostic_grid(PROFILES["quick"]) == []
    extra = diagnostic_grid(PROFILES["paper"])
    assert [(t["dataset"], t["attack"], t["seed"], t["epochs"]) for t in extra] == [
        ("ca-housing", "cca", 1, 600), ("ca-housing", "cca", 2, 600), ("ca-housing", "cca", 0, 1200),
        ("ca-housing", "cca", 0, 2400), ("ca-housing", "cca", 0, 600),
        ("ca-housing", "regression", 0, 4000)]
    assert all("cca" in t["modelers"] and t["masks"] == 20 for t in extra)
    assert [t.get("initial_missing_rate") for t in extra] == [None] * 4 + [0.05, None]


def test_compare_cells_counts_agreement_with_the_paper():
    from amlib.experiments.am_pvalues import claimed_cells, compare_cells, paper_values

    paper = paper_values()
    table8 = paper[paper["table"] == "AM-8"]
    assert len(table8) == 76
    ours = table8[["dataset", "modeler", "attack", "mechanism"]].assign(pvalue=table8["value"].to_numpy())
    cells = compare_cells(ours)
    assert len(cells) == 76 and cells["agree"].all()
    flipped = ours.copy()
    hit = (flipped["dataset"] == "wine-quality") & (flipped["modeler"] == "cca") & \
        (flipped["attack"] == "cca") & (flipped["mechanism"] == "BLAMM")
    flipped.loc[hit, "pvalue"] = 0.01
    cells = compare_cells(flipped)
    assert (~cells["agree"]).sum() == 1
    claimed = claimed_cells(cells)
    assert (claimed["mechanism"] == "BLAMM").all() and claimed["check_paper"].all()
    assert {("german-credit", "cca", "mean"), ("diabetes", "mice", "cca"),
            ("wine-quality", "cca", "cca")} <= set(zip(claimed["dataset"], claimed["modeler"],
                                                       claimed["attack"]))
    assert ("wine-quality", "regression", "cca") not in set(zip(claimed["dataset"], claimed["modeler"],
                                                                claimed["attack"]))
