"""Train the AM paper's p-value attack from its own hyper-parameters (Section 5.1, Table 4).

:func:`train_attack` is the one entry point for "run the paper's attack on my table": it takes
the paper's λ values as printed in Table 4, converts them once to :class:`~amlib.am.blamm.BLAMM`'s
units, and runs the attack the paper names (``"mean"``, ``"cca"`` or ``"regression"``; the last is
a CCA warm start followed by fine-tuning on the regression-imputation proxy, App. D.2).

>>> run = train_attack(frame, target="MedInc", family="gaussian", attack="cca",
...                    epochs=600, lam_upper=0.05, lam_lower=0.0, seed=0)
>>> run.blamm.missing_rate()               # Table 5's quantity
>>> masks = run.blamm.sample_masks(20, seed=1)
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, NamedTuple

import pandas as pd

if TYPE_CHECKING:  # BLAMM pulls in torch and Lightning: imported when an attack is trained
    from .blamm import BLAMM

__all__ = ["ATTACKS", "WARM_SHARE", "AttackRun", "train_attack"]

#: the attacks of the paper's Tables 1 and 5-9 (each is also the proxy it optimises)
ATTACKS = ("mean", "cca", "regression")
#: share of the ``"regression"`` attack's epochs spent on the CCA warm start (App. D.2)
WARM_SHARE = 0.6


class AttackRun(NamedTuple):
    """A trained attack: the final BLAMM and, for the ``"regression"`` attack, its CCA warm start."""

    blamm: "BLAMM"
    warm: "BLAMM | None"

    def history(self) -> pd.DataFrame:
        """Per-epoch ``loss``, ``g``, ``omega`` and ``missing_rate``; with a warm start, both
        stages one after the other and a ``stage`` column (``"cca"``, ``"regression"``)."""
        history = self.blamm.history_frame()
        if self.warm is not None:
            history = pd.concat([self.warm.history_frame().assign(stage="cca"),
                                 history.assign(stage="regression")], ignore_index=True)
        return history


def train_attack(frame: pd.DataFrame, target: str, family: str, attack: str = "cca", *,
                 epochs: int, lam_upper: float, lam_lower: float = 0.0, lr: float = 0.01,
                 seed: int = 0, response: str | None = None,
                 progress_bar: bool | None = False,
                 initial_missing_rate: float | None = None) -> AttackRun:
    """Train BLAMM to hide ``target`` from a GLM modeler, with λs in the paper's units.

    Parameters
    ----------
    frame : pandas.DataFrame
        The attacker's complete table: the features, then the response (the last column unless
        ``response`` names another).
    target : str
        The feature both hidden (M = {target}) and driven to a zero coefficient (θα, eq. 22).
    family : str
        The modeler's GLM family: ``"gaussian"`` or ``"binomial"`` (``"bernoulli"``).
    attack : str
        ``"mean"``, ``"cca"`` or ``"regression"``: the proxy of the modeler attacked.  The
        regression attack runs the CCA attack for ``WARM_SHARE`` of the epochs, then fine-tunes
        the same mechanism on the regression-imputation proxy at ``lr / 100`` (App. D.2).
    epochs, lr, seed : int, float, int
        Adam steps, step size and seed (Table 4 uses ``lr = 0.01``).
    lam_upper, lam_lower : float
        Table 4's upper- and lower-level λ, as the paper prints them.
    response : str, optional
        The response column (default: the last column of ``frame``).
    progress_bar : bool, optional
        Lightning's bar (default off; ``None`` shows it only in a terminal).
    initial_missing_rate : float, optional
        Start the mechanism near this missing rate instead of PyTorch's initialisation (about
        half hidden); the paper states no initialisation, and the default keeps PyTorch's.

    Returns
    -------
    AttackRun
        ``run.blamm`` (the trained :class:`~amlib.am.blamm.BLAMM`) and ``run.warm`` (the CCA
        warm start of the regression attack, else ``None``).

    Notes
    -----
    The paper's λs are converted once, here, to BLAMM's units (``d`` features, ``N`` rows):

    - **lower λ → λ / N.**  Table 4's lower-level λ multiplies ‖θ‖² next to a *sum* over rows
      (eq. 8); BLAMM's lower objective is a *mean* over rows, so the same penalty is λ/N.
    - **upper λ → λ · d.**  We read Table 4's upper λ as multiplying the missing rate of the
      target (Table 5's quantity); BLAMM's Ω is the hidden share of all ``d`` features, which
      is that rate / d, so the same penalty is λ·d.  Section 4's formula puts λ on the share of
      all ``d`` features; read literally, with our mean-KL ``g``, the ca-housing CCA attack hid
      about 98% of MedInc in a development run against Table 5's 40%, while this reading
      reproduces Table 5's rates.
    """
    from .blamm import BLAMM

    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; use one of {ATTACKS}")
    if not isinstance(frame, pd.DataFrame):
        raise TypeError("frame must be a pandas DataFrame (features, then the response)")
    response = frame.columns[-1] if response is None else response
    if response not in frame.columns:
        raise KeyError(f"response {response!r} is not a column of the frame")
    d = frame.shape[1] - 1
    common = dict(response=response, masked=[target], family=family,
                  lam_upper=lam_upper * d, lam_lower=lam_lower / len(frame), seed=seed,
                  progress_bar=progress_bar)
    start = dict(initial_missing_rate=initial_missing_rate)
    if attack != "regression":
        return AttackRun(BLAMM(frame, proxy=attack, lr=lr, epochs=epochs, **common, **start).fit(),
                         None)
    warm_epochs = max(1, int(round(WARM_SHARE * epochs)))
    warm = BLAMM(frame, proxy="cca", lr=lr, epochs=warm_epochs, **common, **start).fit()
    tuned = BLAMM(frame, proxy="regression", mechanism=copy.deepcopy(warm.adversary),
                  lr=lr / 100, epochs=max(1, epochs - warm_epochs), **common).fit()
    return AttackRun(tuned, warm)
