"""The data layer: checksums, errors, and known facts about every data set."""
import shutil

import numpy as np
import pytest

from amlib.data import DataFileError, RAW_FILES, fetch, load, load_fairness
from amlib.data.registry import sha256
from amlib.data import vision


@pytest.mark.parametrize("key", sorted(RAW_FILES))
def test_every_raw_file_matches_its_checksum(mirror, key):
    assert sha256(fetch(key, download=False)) == RAW_FILES[key].sha256


def test_missing_file_error_names_file_places_checksum_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("AMLIB_DATA_MIRROR", str(tmp_path / "empty-mirror"))
    monkeypatch.setenv("AMLIB_DATA_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataFileError) as caught:
        fetch("german-credit", download=False)
    message = str(caught.value)
    assert "tabular/german-credit/german.data" in message
    assert str(tmp_path / "empty-mirror") in message and str(tmp_path / "cache") in message
    assert RAW_FILES["german-credit"].sha256 in message
    assert "archive.ics.uci.edu" in message


def test_corrupt_file_is_refused(mirror, tmp_path, monkeypatch):
    target = tmp_path / "tabular" / "german-credit" / "german.data"
    target.parent.mkdir(parents=True)
    shutil.copy(fetch("german-credit"), target)
    with open(target, "ab") as handle:
        handle.write(b"tampered")
    monkeypatch.setenv("AMLIB_DATA_MIRROR", str(tmp_path))
    with pytest.raises(DataFileError, match="corrupt"):
        fetch("german-credit", download=False)


def test_unknown_names_are_refused():
    with pytest.raises(KeyError, match="known files"):
        fetch("no-such-file")
    with pytest.raises(KeyError, match="choose one of"):
        load("no-such-set")


def test_wine_quality(mirror):
    data = load("wine-quality")
    assert data.frame.shape == (6497, 12) and len(data.features) == 11
    assert data.frame["good"].sum() == 4113  # quality 6-9: 638+199+18 red, 2198+880+175+5 white
    assert np.isclose(data.frame["alcohol"].mean(), (1599 * 10.4230 + 4898 * 10.5143) / 6497, atol=1e-3)
    assert len(data.split["train"]) == 5198 and len(data.split["audit"]) == 1299


def test_german_credit(mirror):
    data = load("german-credit")
    assert data.frame.shape == (1000, 49) and len(data.features) == 48
    assert data.frame["bad_credit"].sum() == 300
    assert np.isclose(data.frame["duration"].mean(), 20.903)
    assert np.isclose(data.frame["credit_amount"].mean(), 3271.258)
    assert len(data.split["train"]) == 900
    assert set(np.unique(data.frame.drop(columns=data.frame.columns[:7]).to_numpy())) <= {0.0, 1.0}


def test_ca_housing(mirror):
    data = load("ca-housing")
    assert data.frame.shape == (20640, 9)
    means = data.frame.mean()
    assert np.isclose(means["MedInc"], 3.87067, atol=1e-4)
    assert np.isclose(means["AveOccup"], 3.07066, atol=1e-4)
    assert np.isclose(means["MedHouseVal"], 2.06856, atol=1e-4)
    assert np.isclose(data.frame["MedInc"].max(), 15.0001)


def test_diabetes():
    data = load("diabetes")
    assert data.frame.shape == (442, 11)
    assert set(data.frame["sex"].unique()) == {0.0, 1.0}
    assert np.isclose(data.frame["age"].mean(), 48.518, atol=1e-3)
    assert np.isclose(data.frame["progression"].mean(), 152.133, atol=1e-3)


def test_twins(mirror):
    data = load("twins")
    covariates = [c for c in data.features if c != "w"]
    assert len(data.frame) == 11400 and len(covariates) == 30
    assert {"gestat", "wtgain"} <= set(covariates)
    assert np.isclose(data.frame["y0"].mean(), 0.1769, atol=1e-4)
    assert np.isclose(data.frame["y1"].mean(), 0.1608, atol=1e-4)
    assert np.isclose(data.notes["true_ate"], -0.0161, atol=1e-4)
    assert (data.frame["gestat"] != 99).all() and (data.frame["anemia"] <= 2).all()
    observed = np.where(data.frame["w"] == 1, data.frame["y1"], data.frame["y0"])
    assert np.array_equal(observed, data.frame["y"])
    assert 0.45 < data.frame["w"].mean() < 0.55


def test_splits_are_seeded_and_disjoint(mirror):
    a, b, c = load("wine-quality", seed=0), load("wine-quality", seed=0), load("wine-quality", seed=1)
    assert np.array_equal(a.split["train"], b.split["train"])
    assert not np.array_equal(a.split["train"], c.split["train"])
    assert not set(a.split["train"]) & set(a.split["audit"])


@pytest.mark.parametrize("name, dim, sizes, positive", [
    ("adult", 102, (22622, 7540, 15060), 0.2477),
    ("compas", 433, (3700, 1234, 1233), 0.5495),
    ("german", 56, (600, 200, 200), 0.705),
])
def test_li_liu_fairness_sets(mirror, name, dim, sizes, positive):
    data = load_fairness(name)
    assert data.dim == dim and data.sizes() == sizes
    assert np.isclose(data.y_train.mean(), positive, atol=1e-4)
    assert np.allclose(data.x_train.mean(0), 0, atol=1e-8)
    for part in (data.x_train, data.x_val, data.x_test):
        assert np.isfinite(part).all() and part.shape[1] == dim
    for groups in (data.s_train, data.s_val, data.s_test):
        assert set(np.unique(groups)) == {0.0, 1.0}


def test_vision_subsets(mirror):
    cifar = vision.cifar10_subset()
    assert cifar.images.shape == (6102, 32, 32, 3) and cifar.n_classes == 10
    assert list(cifar.labels[5085:5095]) == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    pets = vision.oxford_pets_subset(verify=True)
    assert len(pets.images) == 370 and pets.n_classes == 37
    assert np.bincount(pets.labels).tolist() == [10] * 37
    caltech = vision.caltech101_subset(verify=False)
    assert caltech.n_classes == 101 and len(caltech.images) == 3969
