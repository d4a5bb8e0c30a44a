"""Mechanisms p(R|X) (App. C.4), the partial-access mixture (eq. 24), baselines and sampling."""
import numpy as np
import pandas as pd
import pytest
import torch

from amlib.am.missingness import (LogisticMNAR, MCARMechanism, NeuralMechanism, PartialAccess,
                               PerSampleMechanism, Standardizer, apply_patterns,
                               expected_missing_fraction, masked_missing_rate, mcar_matched,
                               observed_marginals, pattern_index, pattern_matrix, sample_patterns)


def _Z(n=50, k=4, seed=0):
    return torch.tensor(np.random.default_rng(seed).normal(size=(n, k)))


def test_pattern_matrix_and_gamma():
    R = pattern_matrix(3)
    assert R.shape == (8, 3)
    assert pattern_index((1, 0, 1)) == 5 and R[5].tolist() == [1, 0, 1]
    assert R[-1].tolist() == [1, 1, 1] and R[0].tolist() == [0, 0, 0]
    with pytest.raises(ValueError):
        pattern_matrix(0)


@pytest.mark.parametrize("m", [1, 2])
def test_probabilities_sum_to_one(m):
    Z = _Z()
    torch.manual_seed(0)
    for mech in [NeuralMechanism(4, m, 16, Standardizer(Z)).double(), PerSampleMechanism(50, m),
                 NeuralMechanism(4, m, 16, activation="tanh"),
                 LogisticMNAR(Z, m, 0.2)]:
        probs = mech(Z)
        assert probs.shape == (50, 2 ** m)
        assert torch.all(probs >= 0)
        torch.testing.assert_close(probs.sum(1), torch.ones(50, dtype=torch.float64))


def test_per_sample_starts_uniform_and_rejects_other_rows():
    mech = PerSampleMechanism(10, 2)
    torch.testing.assert_close(mech(torch.zeros(10, 1)), torch.full((10, 4), 0.25,
                                                                     dtype=torch.float64))
    with pytest.raises(ValueError, match="per-sample"):
        mech(torch.zeros(11, 1))


def test_partial_access_limits():
    Z = _Z()
    torch.manual_seed(1)
    inner = NeuralMechanism(4, 2, 8).double()
    none = PartialAccess(inner, 0.0)(Z)
    assert torch.all(none[:, -1] == 1) and torch.all(none[:, :-1] == 0)
    torch.testing.assert_close(PartialAccess(inner, 1.0)(Z), inner(Z))
    half = PartialAccess(inner, 0.5)(Z)
    torch.testing.assert_close(masked_missing_rate(half), 0.5 * masked_missing_rate(inner(Z)))
    with pytest.raises(ValueError):
        PartialAccess(inner, 1.5)


def test_rates_and_marginals():
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)  # m = 2
    obs = observed_marginals(probs)
    torch.testing.assert_close(obs, torch.tensor([[0.3 + 0.4, 0.2 + 0.4]], dtype=torch.float64))
    # Ω with d = 5 features: expected hidden count (0.3 + 0.4) / 5
    assert float(expected_missing_fraction(probs, 5)) == pytest.approx(0.7 / 5)
    assert float(masked_missing_rate(probs)) == pytest.approx(0.35)


def test_mcar_matched_and_mnar_rate():
    Z = _Z(400)
    torch.manual_seed(2)
    probs = NeuralMechanism(4, 1, 8).double()(Z).detach()
    mcar = mcar_matched(probs)
    torch.testing.assert_close(mcar(Z)[0], probs.mean(0))
    assert float(masked_missing_rate(mcar(Z))) == pytest.approx(float(masked_missing_rate(probs)))
    mnar = LogisticMNAR(Z, 2, 0.15, seed=3)
    assert float(masked_missing_rate(mnar(Z))) == pytest.approx(0.15, abs=1e-6)
    with pytest.raises(ValueError):
        MCARMechanism([0.5, 0.6])


def test_sampling_frequencies_and_nan_frame():
    probs = torch.tensor([[0.2, 0.8]] * 5000, dtype=torch.float64)
    pats = sample_patterns(probs, 2, seed=0)
    assert pats.shape == (2, 5000)
    assert abs((pats == 0).mean() - 0.2) < 0.02
    np.testing.assert_array_equal(pats, sample_patterns(probs, 2, seed=0))  # seeded
    frame = pd.DataFrame({"a": np.arange(4.0), "b": np.ones(4), "y": np.zeros(4)})
    out = apply_patterns(frame, ["a", "b"], np.array([3, 2, 1, 0]))
    assert out["a"].isna().tolist() == [False, False, True, True]
    assert out["b"].isna().tolist() == [False, True, False, True]
    assert not out["y"].isna().any() and not frame.isna().any().any()
    with pytest.raises(KeyError, match="not in the frame"):
        apply_patterns(frame, ["zzz"], np.zeros(4, int))


def test_neural_mechanism_can_start_near_fully_observed():
    Z = _Z(400, 5)
    default = NeuralMechanism(5, 1, 100, standardizer=Standardizer(Z)).double()
    assert 0.3 < float(masked_missing_rate(default(Z).detach())) < 0.7     # PyTorch's init: about half
    for q in (0.05, 0.2):
        torch.manual_seed(0)
        mech = NeuralMechanism(5, 1, 100, standardizer=Standardizer(Z),
                               initial_missing_rate=q).double()
        probs = mech(Z).detach()
        assert 0.7 * q < float(masked_missing_rate(probs)) < 1.3 * q   # the weights add a little
        assert float(probs[:, 0].std()) > 0      # the weights keep their random init
    two = NeuralMechanism(5, 2, 100, standardizer=Standardizer(Z),
                          initial_missing_rate=0.1).double()
    assert 0.87 < float(two(Z).detach()[:, -1].mean()) < 0.93   # the fully observed pattern
    with pytest.raises(ValueError, match="initial_missing_rate"):
        NeuralMechanism(5, 1, initial_missing_rate=1.0)
