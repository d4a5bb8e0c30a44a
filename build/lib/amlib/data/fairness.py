"""Adult, COMPAS and German credit as Li & Liu (2022) preprocess them for influence reweighing.

Facts of their preprocessing that this module follows: rows with a missing value are dropped;
no shuffling; the last 20% of rows (Adult: the official test file) is the test set and the last 25%
of the rest the validation set; categorical columns with more than two levels become one indicator
per level (in order of first appearance in the training file), two-level columns become one 0/1
column; the sensitive attribute stays among the features; every column is standardised with the
training set's mean and standard deviation.  Feature dimensions: Adult 102, COMPAS 433, German 56.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .registry import fetch

__all__ = ["FairnessDataset", "adult", "compas", "german", "load_fairness", "FAIRNESS_DATASETS"]


@dataclass
class FairnessDataset:
    """Standardised features, 0/1 labels and 0/1 sensitive groups for train / val / test.

    Group 1 is the privileged group, label 1 the favourable outcome. ``l2_reg`` is the L2 strength
    Li & Liu tuned for their logistic regression.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    s_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    s_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    s_test: np.ndarray
    feature_names: list[str]
    sensitive: str
    l2_reg: float

    @property
    def dim(self) -> int:
        return self.x_train.shape[1]

    def sizes(self) -> tuple[int, int, int]:
        return len(self.y_train), len(self.y_val), len(self.y_test)


def _encode(frame: pd.DataFrame, categorical: list[str], mappings: dict) -> pd.DataFrame:
    """One-hot (>2 levels) or 0/1 (2 levels) coding; ``mappings`` is filled from ``frame`` once."""
    kept = frame.drop(columns=[c for c in categorical if c in frame.columns])
    coded: dict[str, np.ndarray] = {}
    for column in categorical:
        if column not in mappings:
            mappings[column] = {v: i for i, v in enumerate(dict.fromkeys(frame[column]))}
        mapping = mappings[column]
        if len(mapping) > 2:
            for i, level in enumerate(mapping):
                coded[f"{column}.{i}"] = (frame[column] == level).to_numpy(float)
        else:
            unknown = set(frame[column]) - set(mapping)
            if unknown:
                raise ValueError(f"column {column!r} has levels {unknown} unseen in training")
            coded[column] = frame[column].map(mapping).to_numpy(float)
    return pd.concat([kept, pd.DataFrame(coded, index=frame.index)], axis=1)


def _build(name, train_val, test, target, sensitive, groups, categorical, mappings, l2_reg,
           val_fraction=0.25):
    groups_tv, groups_test = groups(train_val), groups(test)
    train_val = _encode(train_val, categorical, mappings)
    test = _encode(test, categorical, mappings)
    y_tv, y_test = train_val.pop(target).to_numpy(), test.pop(target).to_numpy()
    test = test[train_val.columns]
    n_val = round(len(train_val) * val_fraction)
    n_train = len(train_val) - n_val
    x_tv = train_val.to_numpy(float)
    mean, std = x_tv[:n_train].mean(0), x_tv[:n_train].std(0)
    std[std == 0] = 1.0  # a constant column stays constant (zero) instead of becoming NaN
    scale = lambda x: (x - mean) / std  # noqa: E731
    return FairnessDataset(
        name, scale(x_tv[:n_train]), y_tv[:n_train], groups_tv[:n_train],
        scale(x_tv[n_train:]), y_tv[n_train:], groups_tv[n_train:],
        scale(test.to_numpy(float)), y_test, groups_test,
        list(train_val.columns), sensitive, l2_reg)


ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
                 "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
                 "hours_per_week", "native_country", "income"]
ADULT_CATEGORICAL = ["workclass", "education", "marital_status", "occupation", "relationship",
                     "race", "sex", "native_country", "income"]


def adult() -> FairnessDataset:
    """Adult: 22622 / 7540 / 15060 rows, 102 features, sensitive ``sex`` (Male = 1)."""
    read = dict(names=ADULT_COLUMNS, skipinitialspace=True, na_values="?")
    train = pd.read_csv(fetch("adult/train"), **read).dropna().drop(columns="fnlwgt")
    test = pd.read_csv(fetch("adult/test"), skiprows=1, **read).dropna().drop(columns="fnlwgt")
    test["income"] = test["income"].str.rstrip(".")
    mappings = {"income": {"<=50K": 0.0, ">50K": 1.0}, "sex": {"Female": 0.0, "Male": 1.0}}
    groups = lambda f: (f["sex"] == "Male").to_numpy(float)  # noqa: E731
    return _build("adult", train, test, "income", "sex", groups, ADULT_CATEGORICAL, mappings,
                  2.26220)


COMPAS_KEEP = ["sex", "age", "age_cat", "race", "juv_fel_count", "juv_misd_count",
               "juv_other_count", "priors_count", "c_charge_degree", "c_charge_desc",
               "two_year_recid"]


def _split_last(frame: pd.DataFrame, test_fraction: float = 0.2):
    n_test = round(len(frame) * test_fraction)
    return frame.iloc[:len(frame) - n_test], frame.iloc[len(frame) - n_test:]


def compas() -> FairnessDataset:
    """COMPAS after ProPublica's filter: 3700 / 1234 / 1233 rows, 433 features, sensitive race.

    Label 1 = no recidivism within two years (the favourable outcome); Caucasian = 1.  Li & Liu's
    code matches column names against the *string* of categorical names, so ``age`` (a substring
    of ``age_cat``) is one-hot coded too: that is what makes 433 features, and we keep it.
    """
    raw = pd.read_csv(fetch("compas"), index_col="id")
    kept = raw[(raw.days_b_screening_arrest.abs() <= 30) & (raw.is_recid != -1)
               & (raw.c_charge_degree != "O") & (raw.score_text != "N/A")]
    frame = kept[COMPAS_KEEP].dropna().copy()
    frame["race"] = np.where(frame["race"] == "Caucasian", "Caucasian", "Not Caucasian")
    frame["two_year_recid"] = np.where(frame["two_year_recid"] == 1, "recid", "no recid")
    mappings = {"two_year_recid": {"recid": 0.0, "no recid": 1.0},
                "race": {"Caucasian": 1.0, "Not Caucasian": 0.0}}
    categorical = ["sex", "age", "age_cat", "race", "c_charge_degree", "c_charge_desc", "two_year_recid"]
    train_val, test = _split_last(frame)
    groups = lambda f: (f["race"] == "Caucasian").to_numpy(float)  # noqa: E731
    return _build("compas", train_val, test, "two_year_recid", "race", groups, categorical,
                  mappings, 37.0)


LI_LIU_GERMAN_COLUMNS = [
    "status", "month", "credit_history", "purpose", "credit_amount", "savings", "employment",
    "investment_as_income_percentage", "personal_status", "other_debtors", "residence_since",
    "property", "age", "installment_plans", "housing", "number_of_credits", "skill_level",
    "people_liable_for", "telephone", "foreign_worker", "credit"]


def german() -> FairnessDataset:
    """German credit: 600 / 200 / 200 rows, 56 features, sensitive ``age >= 30`` (= 1).

    Li & Liu's code thresholds age with ``>=`` on train/val but ``>`` on test; we use ``>= 30``
    everywhere, as their paper states.
    """
    frame = pd.read_csv(fetch("german-credit"), sep=" ", header=None, names=LI_LIU_GERMAN_COLUMNS)
    frame["sex"] = frame["personal_status"].map(
        {"A91": "male", "A93": "male", "A94": "male", "A92": "female", "A95": "female"})
    frame = frame.drop(columns="personal_status")
    frame["credit"] = frame["credit"].astype(str)
    categorical = ["status", "credit_history", "purpose", "savings", "employment",
                   "other_debtors", "property", "installment_plans", "housing", "skill_level",
                   "telephone", "foreign_worker", "sex", "credit"]
    train_val, test = _split_last(frame)
    groups = lambda f: (f["age"] >= 30).to_numpy(float)  # noqa: E731
    return _build("german", train_val, test, "credit", "age", groups, categorical,
                  {"credit": {"1": 1.0, "2": 0.0}}, 5.84843)


FAIRNESS_DATASETS = {"adult": adult, "compas": compas, "german": german}


def load_fairness(name: str) -> FairnessDataset:
    if name not in FAIRNESS_DATASETS:
        raise KeyError(f"unknown fairness data set {name!r}; choose one of {sorted(FAIRNESS_DATASETS)}")
    return FAIRNESS_DATASETS[name]()
