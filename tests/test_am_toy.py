"""Figure 2's toy experiment: the data generator and the committed paper-profile results."""
import numpy as np

from amlib.experiments import EXPERIMENTS, _load_all
from amlib.experiments.am_toy import PROFILES, toy_data
from amlib.experiments.runner import read_results


def test_toy_data_is_seeded_and_shaped():
    a, b = toy_data(300, 3), toy_data(300, 3)
    assert a.equals(b) and list(a.columns) == ["x", "y", "label"]
    assert set(np.unique(a["label"])) == {0.0, 1.0}
    assert not toy_data(300, 4).equals(a)


def test_am_toy_is_registered():
    _load_all()
    assert "am-toy" in EXPERIMENTS


def test_committed_toy_results_show_the_attack_working_and_mcar_failing():
    record = read_results("am-toy")
    assert record["provenance"]["profile"] == "paper"
    rows = record["results"]
    assert [r["seed"] for r in rows] == PROFILES["paper"]["seeds"]
    for row in rows:
        assert row["clean_pvalue"] < 1e-3
        assert row["blamm_pvalue"] > 0.05, row
        assert row["mcar_pvalue"] < 0.05, row
        assert 0 < row["missing_rate"] < 0.25
        assert row["blamm_accuracy_change"] > -0.03
