"""train_attack: the paper's λs converted once, and the regression attack's two stages."""
import pytest
import torch

from amlib.am.attack import WARM_SHARE, train_attack
from amlib.am.blamm import BLAMM
from amlib.experiments.am_toy import toy_data


def test_lambdas_are_converted_to_blamm_units():
    """Upper λ multiplies the target's missing rate (BLAMM's Ω is that rate / d), lower λ a sum
    over rows (BLAMM's lower objective is a mean): the same attack built by hand agrees."""
    frame = toy_data(150, 0)
    run = train_attack(frame, "x", "bernoulli", "mean", epochs=5, lam_upper=0.1,
                       lam_lower=0.3, seed=2)
    d, n = frame.shape[1] - 1, len(frame)
    assert run.warm is None
    assert run.blamm.lam_upper == pytest.approx(0.1 * d)
    assert run.blamm.lam_lower == pytest.approx(0.3 / n)
    by_hand = BLAMM(frame, "label", ["x"], "bernoulli", "mean", lam_upper=0.1 * d,
                    lam_lower=0.3 / n, epochs=5, seed=2, progress_bar=False).fit()
    torch.testing.assert_close(run.blamm.pattern_probs(), by_hand.pattern_probs())
    assert len(run.history()) == 5


def test_regression_attack_warm_starts_from_cca():
    frame = toy_data(150, 1)
    run = train_attack(frame, "x", "bernoulli", "regression", epochs=10, lam_upper=0.01,
                       lr=0.02, seed=0)
    warm_epochs = round(WARM_SHARE * 10)
    assert (run.warm.proxy, run.warm.epochs, run.warm.lr) == ("cca", warm_epochs, 0.02)
    assert (run.blamm.proxy, run.blamm.epochs) == ("regression", 10 - warm_epochs)
    assert run.blamm.lr == pytest.approx(0.02 / 100)
    assert run.blamm.adversary is not run.warm.adversary     # fine-tuned on a copy
    history = run.history()
    assert list(history["stage"]) == ["cca"] * warm_epochs + ["regression"] * (10 - warm_epochs)


def test_bad_attack_is_named():
    with pytest.raises(ValueError, match="unknown attack 'knn'"):
        train_attack(toy_data(50, 0), "x", "bernoulli", "knn", epochs=1, lam_upper=0.0)
    with pytest.raises(KeyError, match="response 'z'"):
        train_attack(toy_data(50, 0), "x", "bernoulli", "cca", epochs=1, lam_upper=0.0,
                     response="z")
