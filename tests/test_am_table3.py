"""AM paper Table 3: the committed paper-profile results and a fresh fit agree, and hold the claims."""
import numpy as np
import pandas as pd
import pytest

from amlib.experiments.am_datasets import (AM_TARGETS, AMTarget, paper_table3, table3_row,
                                          table3_targets)


@pytest.fixture(scope="module")
def committed(paper_results):
    return pd.DataFrame(paper_results("am-table3")["results"])


def test_committed_results_match_a_fresh_fit(mirror, committed):
    for spec in AM_TARGETS.values():
        fresh = table3_row(spec, seed=0)
        stored = committed[(committed.dataset == spec.dataset) & (committed.seed == 0)].iloc[0]
        for key in ["coef", "score_theta_p", "score_theta_alpha"]:
            assert np.isclose(fresh[key], stored[key], rtol=1e-8), (spec.dataset, key)


def test_targets_significant_on_complete_data(committed):
    split0 = committed[committed.seed == 0]
    assert (split0["pvalue"] < 1e-3).all()


def test_close_to_the_paper(committed):
    paper = paper_table3().set_index("dataset")
    ours = committed.groupby("dataset")[["coef", "score_theta_p", "score_theta_alpha"]].mean()
    assert ((ours["coef"] - paper["coef"]).abs() / paper["coef"].abs() < 0.05).all()
    for column in ["score_theta_p", "score_theta_alpha"]:
        assert ((ours[column] - paper[column]).abs() < 0.05).all(), column


def test_one_target_table_serves_table3_and_the_attacks():
    """Table 3's rows follow the paper's order; every attack of the table has Table 4 settings."""
    from amlib.experiments.am_datasets import TABLE4, attack_trial

    assert [t.dataset for t in table3_targets()] == list(paper_table3()["dataset"])
    assert {(name, a) for name, spec in AM_TARGETS.items() for a in spec.attacks} == set(TABLE4)
    trial = attack_trial("ca-housing", "cca", epoch_scale=1.5)
    assert (trial["target"], trial["epochs"], trial["lam_upper"]) == ("MedInc", 900, 0.05)
    with pytest.raises(KeyError, match="no 'mean' attack on 'diabetes'"):
        attack_trial("diabetes", "mean")


def test_wrong_target_column_is_named():
    with pytest.raises(KeyError, match="not a feature"):
        table3_row(AMTarget("diabetes", "no_such_column", "gaussian"))
