"""Shared fixtures: skip data tests with a clear reason when no data can be found."""
import os

import pytest

from amlib.data import mirror_dir

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def mirror():
    folder = mirror_dir()
    if folder is None or not folder.is_dir():
        pytest.skip("no offline data mirror: set AMLIB_DATA_MIRROR to a folder like ../shared/data")
    return folder
