"""Shared fixtures: skip data tests with a clear reason when no data can be found, and read the
committed paper-profile results."""
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


@pytest.fixture(scope="session")
def paper_results():
    """``paper_results(name)``: the committed ``results/<name>.json``, checked to come from the
    ``paper`` profile (the test skips, naming the command, when the file is not committed)."""
    from amlib.experiments.runner import read_results

    def read(name: str) -> dict:
        try:
            record = read_results(name)
        except FileNotFoundError as error:
            pytest.skip(str(error))
        assert record["provenance"]["profile"] == "paper", f"{name} was not run with --profile paper"
        return record
    return read
