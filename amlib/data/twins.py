"""The Twins observational study as the AM paper (Section 5.2) and CATENets prepare it.

:func:`twins_observational` turns the 11,400 same-sex twin pairs under 2 kg of
``Twin_Data.csv.gz`` (Louizos et al. 2017; cleaned by :func:`amlib.data.tabular.twins`) into one
observational sample:

1. coded unknowns are replaced as CATENets does (risk factors: codes 8/9 -> the column's mode;
   ``cigar, drink, wtgain, gestat, dmeduc, nprevist``: 99 -> the mean of the known values);
2. one twin per pair is kept at random: ``w ~ Bernoulli(1/2)`` picks the heavier twin (treated,
   W = 1) or the lighter one (W = 0), and ``y`` is that twin's one-year mortality;
3. the 30 covariates become 39 columns: 8 continuous, 19 binary, and the categorical ``adequacy``
   (3 levels), ``pldel`` (5) and ``resstatb`` (4) one-hot coded with every level kept, as in
   CATENets' ``dataset_twins.py``;
4. every column is min-max scaled to [0, 1] over all 11,400 pairs (CATENets fits its
   ``MinMaxScaler`` before splitting, and so do we);
5. the pairs are split at random into two halves, ``train`` and ``test``.

Steps 2 and 5 draw from ``seed``, so a new seed is a new observational sample and a new split.
Because W is assigned by a fair coin, the difference of the observed mortality means estimates
the ATE without adjustment; :meth:`TwinsSample.true_ate` is the exact finite-sample ATE
``mean(y1 − y0)`` of a part (−1.61% over all pairs).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .tabular import TWINS_RISK, twins

__all__ = ["TWINS_CONTINUOUS", "TWINS_BINARY", "TWINS_CATEGORICAL", "TwinsSample",
           "twins_observational"]

TWINS_CONTINUOUS = ["dmage", "mpcb", "cigar", "drink", "wtgain", "gestat", "dmeduc", "nprevist"]
TWINS_BINARY = ["dmar"] + TWINS_RISK
TWINS_CATEGORICAL = ["adequacy", "pldel", "resstatb"]


@dataclass
class TwinsSample:
    """One observational Twins sample: covariates (scaled, one-hot), ``w``, ``y`` and, for
    evaluation only, both potential outcomes ``y0``/``y1``; ``split`` holds row positions."""

    frame: pd.DataFrame
    covariates: list[str]
    categorical: dict[str, list[str]]
    split: dict[str, np.ndarray]
    seed: int
    notes: dict = field(default_factory=dict)

    def part(self, name: str | None = None) -> pd.DataFrame:
        """The rows of ``"train"`` or ``"test"`` (all rows when ``name`` is None)."""
        if name is None:
            return self.frame
        if name not in self.split:
            raise KeyError(f"the Twins sample has no part {name!r}; parts: {list(self.split)}")
        return self.frame.iloc[self.split[name]].reset_index(drop=True)

    def arrays(self, part: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(X, w, y)`` as float arrays for the ATE estimators."""
        rows = self.part(part)
        return (rows[self.covariates].to_numpy(float), rows["w"].to_numpy(float),
                rows["y"].to_numpy(float))

    def true_ate(self, part: str | None = None) -> float:
        """``mean(y1 − y0)`` over the pairs of ``part`` (a fraction)."""
        rows = self.part(part)
        return float((rows["y1"] - rows["y0"]).mean())

    def naive_ate(self, part: str | None = None) -> float:
        """Difference of the observed mortality means, treated minus control (a fraction)."""
        rows = self.part(part)
        return float(rows.loc[rows["w"] == 1, "y"].mean() - rows.loc[rows["w"] == 0, "y"].mean())

    def linear_covariates(self, part: str | None = None) -> list[str]:
        """Covariates for a model with an intercept: the first level of every one-hot group is
        the reference (dropped), and so is any column that is constant within ``part`` (a rare
        ``pldel`` level can be absent from a half), so that ``[1, X, w]`` has full rank."""
        rows = self.part(part)
        dropped = {levels[0] for levels in self.categorical.values()}
        return [c for c in self.covariates
                if c not in dropped and rows[c].nunique() > 1]


def twins_observational(seed: int = 0, train_fraction: float = 0.5) -> TwinsSample:
    """Draw the observational Twins sample and its train/test split (see the module doc)."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    # tabular.twins cleans the coded unknowns and draws w ~ Bernoulli(1/2) from `seed`.
    base = twins(seed=seed).frame
    parts = [base[TWINS_CONTINUOUS + TWINS_BINARY]]
    categorical = {}
    for column in TWINS_CATEGORICAL:
        dummies = pd.get_dummies(base[column].astype(int), prefix=column, dtype=float)
        categorical[column] = list(dummies.columns)
        parts.append(dummies)
    covariates = pd.concat(parts, axis=1).astype(float)
    low, high = covariates.min(), covariates.max()
    span = (high - low).where(high > low, 1.0)
    covariates = (covariates - low) / span
    frame = covariates.copy()
    for column in ("w", "y", "y0", "y1"):
        frame[column] = base[column].to_numpy(float)
    order = np.random.default_rng([seed, 1]).permutation(len(frame))
    n_train = int(round(train_fraction * len(frame)))
    split = {"train": np.sort(order[:n_train]), "test": np.sort(order[n_train:])}
    return TwinsSample(frame, list(covariates.columns), categorical, split, seed,
                       notes={"source": "GANITE/CATENets Twin_Data.csv.gz (Almond et al. 2005)",
                              "true_ate_all_pairs": float((frame["y1"] - frame["y0"]).mean())})
