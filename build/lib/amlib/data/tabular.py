"""Loaders for the tabular data sets of both papers, with the preprocessing each paper used.

Every loader returns a :class:`TabularDataset`: a numeric DataFrame (features + target), the
target's name, each feature's type and a seeded split into named row sets.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .registry import fetch

__all__ = ["TabularDataset", "wine_quality", "german_credit", "ca_housing", "diabetes", "twins",
           "load", "AM_DATASETS"]


@dataclass
class TabularDataset:
    """A numeric table, its target column, feature types and a split into named row sets.

    ``split`` maps a part name (``"train"``, ``"audit"``, ...) to integer row positions.
    ``task`` is ``"regression"`` or ``"classification"`` (binary, target coded 0/1).
    """

    name: str
    frame: pd.DataFrame
    target: str
    feature_types: dict[str, str]
    split: dict[str, np.ndarray]
    task: str
    source: str
    notes: dict = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return list(self.feature_types)

    def part(self, name: str | None = None) -> pd.DataFrame:
        """The rows of one split part (all rows when ``name`` is None)."""
        if name is None:
            return self.frame
        if name not in self.split:
            raise KeyError(f"{self.name} has no split part {name!r}; parts: {list(self.split)}")
        return self.frame.iloc[self.split[name]]

    def X(self, part: str | None = None) -> pd.DataFrame:
        return self.part(part)[self.features]

    def y(self, part: str | None = None) -> pd.Series:
        return self.part(part)[self.target]


def _train_audit_split(n: int, train_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """The AM paper's split: a random ``train_fraction`` for the adversary, the rest audits."""
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(round(train_fraction * n))
    return {"train": np.sort(order[:n_train]), "audit": np.sort(order[n_train:])}


def _continuous(columns) -> dict[str, str]:
    return {c: "continuous" for c in columns}


def wine_quality(seed: int = 0, train_fraction: float = 0.8) -> TabularDataset:
    """Red and white Vinho Verde wines (6497 rows, 11 features); label ``quality > 5``."""
    parts = [pd.read_csv(fetch(f"wine-quality/{colour}"), sep=";") for colour in ("red", "white")]
    raw = pd.concat(parts, ignore_index=True)
    frame = raw.drop(columns="quality").rename(columns=lambda c: c.replace(" ", "_"))
    frame["good"] = (raw["quality"] > 5).astype(float)
    types = _continuous(frame.columns[:-1])
    return TabularDataset("wine-quality", frame, "good", types,
                          _train_audit_split(len(frame), train_fraction, seed), "classification",
                          "UCI 186 (Cortez et al. 2009), red + white")


GERMAN_COLUMNS = [
    "status", "duration", "credit_history", "purpose", "credit_amount", "savings",
    "employment_since", "installment_rate", "personal_status_sex", "other_debtors",
    "residence_since", "property", "age", "other_installment_plans", "housing",
    "existing_credits", "job", "people_liable", "telephone", "foreign_worker", "class"]
GERMAN_NUMERIC = ["duration", "credit_amount", "installment_rate", "residence_since", "age",
                  "existing_credits", "people_liable"]


def german_credit(seed: int = 0, train_fraction: float = 0.9) -> TabularDataset:
    """Statlog German credit (1000 rows, 20 attributes) one-hot coded with ``drop="first"``.

    The 13 categorical attributes become 41 indicator columns, so there are 48 features.  The
    label ``bad_credit`` is 1 for class 2 ("bad") and 0 for class 1 ("good").
    """
    raw = pd.read_csv(fetch("german-credit"), sep=" ", header=None, names=GERMAN_COLUMNS)
    categorical = [c for c in GERMAN_COLUMNS[:-1] if c not in GERMAN_NUMERIC]
    dummies = pd.get_dummies(raw[categorical], drop_first=True, dtype=float)
    frame = pd.concat([raw[GERMAN_NUMERIC].astype(float), dummies], axis=1)
    frame["bad_credit"] = (raw["class"] == 2).astype(float)
    types = {**_continuous(GERMAN_NUMERIC), **{c: "binary" for c in dummies.columns}}
    return TabularDataset("german-credit", frame, "bad_credit", types,
                          _train_audit_split(len(frame), train_fraction, seed), "classification",
                          "UCI 144 (Hofmann 1994), german.data")


CA_RAW = ["longitude", "latitude", "housingMedianAge", "totalRooms", "totalBedrooms",
          "population", "households", "medianIncome", "medianHouseValue"]


def ca_housing(seed: int = 0, train_fraction: float = 0.8) -> TabularDataset:
    """California housing with scikit-learn's 8 derived features; target in units of $100k."""
    raw = pd.read_csv(fetch("ca-housing"), header=None, names=CA_RAW)
    frame = pd.DataFrame({
        "MedInc": raw["medianIncome"],
        "HouseAge": raw["housingMedianAge"],
        "AveRooms": raw["totalRooms"] / raw["households"],
        "AveBedrms": raw["totalBedrooms"] / raw["households"],
        "Population": raw["population"],
        "AveOccup": raw["population"] / raw["households"],
        "Latitude": raw["latitude"],
        "Longitude": raw["longitude"],
        "MedHouseVal": raw["medianHouseValue"] / 100_000,
    })
    return TabularDataset("ca-housing", frame, "MedHouseVal", _continuous(frame.columns[:-1]),
                          _train_audit_split(len(frame), train_fraction, seed), "regression",
                          "StatLib cal_housing (Pace & Barry 1997), scikit-learn features")


def diabetes(seed: int = 0, train_fraction: float = 0.8) -> TabularDataset:
    """Efron et al.'s diabetes data in raw units (scikit-learn's bundled copy); ``sex`` as 0/1."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False, as_frame=True)
    frame = bunch.frame.rename(columns={"target": "progression"}).astype(float)
    frame["sex"] = frame["sex"] - 1.0  # coded 1/2 in the file
    types = {c: ("binary" if c == "sex" else "continuous") for c in frame.columns[:-1]}
    return TabularDataset("diabetes", frame, "progression", types,
                          _train_audit_split(len(frame), train_fraction, seed), "regression",
                          "scikit-learn load_diabetes(scaled=False) (Efron et al. 2004)")


TWINS_RISK = ["anemia", "cardiac", "lung", "diabetes", "herpes", "hydra", "hemo", "chyper",
              "phyper", "eclamp", "incervix", "pre4000", "dtotord", "preterm", "renal", "rh",
              "uterine", "othermr"]
TWINS_CODED_99 = ["cigar", "drink", "wtgain", "gestat", "dmeduc", "nprevist"]


def twins(seed: int = 0, train_fraction: float = 0.8) -> TabularDataset:
    """Twins under 2 kg (GANITE/CATENets file): 11,400 pairs, 30 covariates, both outcomes.

    Missing-value codes are cleaned as CATENets does (risk factors: codes 8/9 -> column mode;
    ``cigar, drink, wtgain, gestat, dmeduc, nprevist``: 99 -> mean of the rest).  ``y0``/``y1``
    are one-year mortality of the lighter / heavier twin.  The observational set keeps one twin
    per pair at random (``w`` ~ Bernoulli(1/2), seeded): ``y = w*y1 + (1-w)*y0``.
    """
    raw = pd.read_csv(fetch("twins"), compression="gzip")
    raw.columns = [c.strip("'\u2019") for c in raw.columns]
    covariates = raw.drop(columns=["outcome(t=0)", "outcome(t=1)"]).astype(float)
    for column in TWINS_RISK:
        is_code = covariates[column].isin([8, 9])
        covariates.loc[is_code, column] = covariates.loc[~is_code, column].mode().iloc[0]
    for column in TWINS_CODED_99:
        is_code = covariates[column] == 99
        covariates.loc[is_code, column] = covariates.loc[~is_code, column].mean()
    frame = covariates.copy()
    frame["y0"] = (raw["outcome(t=0)"] < 9999).astype(float)
    frame["y1"] = (raw["outcome(t=1)"] < 9999).astype(float)
    rng = np.random.default_rng(seed)
    frame["w"] = rng.integers(0, 2, len(frame)).astype(float)
    frame["y"] = np.where(frame["w"] == 1, frame["y1"], frame["y0"])
    types = _continuous(covariates.columns)
    types["w"] = "binary"
    return TabularDataset("twins", frame, "y", types,
                          _train_audit_split(len(frame), train_fraction, seed), "classification",
                          "GANITE/CATENets Twin_Data.csv.gz (Almond et al. 2005)",
                          notes={"true_ate": float((frame["y1"] - frame["y0"]).mean())})


AM_DATASETS = {"ca-housing": ca_housing, "wine-quality": wine_quality,
               "german-credit": german_credit, "diabetes": diabetes, "twins": twins}


def load(name: str, **kwargs) -> TabularDataset:
    """Load a tabular data set by name (see :data:`AM_DATASETS`)."""
    if name not in AM_DATASETS:
        raise KeyError(f"unknown data set {name!r}; choose one of {sorted(AM_DATASETS)}")
    return AM_DATASETS[name](**kwargs)
