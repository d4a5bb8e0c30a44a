"""Where every raw data file comes from, and how a local path to it is obtained.

Each :class:`RawFile` names the file's canonical public URL and its SHA256.  :func:`fetch`
returns a verified local path, trying in order

1. an offline mirror folder (``AMLIB_DATA_MIRROR``, or a ``shared/data`` folder beside the
   repository when one exists), laid out as ``<mirror>/<mirror_path>``;
2. the download cache (``AMLIB_DATA_DIR``, default the user cache dir ``~/.cache/amlib``);
3. a download from the canonical URL with :mod:`pooch`, checked against the SHA256.

Every failure names the file, the places looked, the expected checksum and how to get it.
"""
from __future__ import annotations

import hashlib
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..paths import source_checkout, user_cache_dir

__all__ = ["RawFile", "DataFileError", "RAW_FILES", "fetch", "mirror_dir", "cache_dir", "sha256"]



class DataFileError(FileNotFoundError):
    """A raw data file is missing, unreachable or fails its checksum."""


@dataclass(frozen=True)
class RawFile:
    """One raw file: its place in the mirror, its checksum and where the public copy lives.

    ``archive_url``/``archive_member``/``archive_sha256`` describe files that are published only
    inside an archive (ca-housing ships as ``cal_housing.tgz``).
    """

    key: str
    mirror_path: str
    sha256: str
    url: str | None = None
    archive_sha256: str | None = None
    archive_member: str | None = None
    how_to_get: str = ""


_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases"
RAW_FILES: dict[str, RawFile] = {f.key: f for f in [
    RawFile("wine-quality/red", "tabular/wine-quality/winequality-red.csv",
            "4a402cf041b025d4566d954c3b9ba8635a3a8a01e039005d97d6a710278cf05e",
            f"{_UCI}/wine-quality/winequality-red.csv"),
    RawFile("wine-quality/white", "tabular/wine-quality/winequality-white.csv",
            "76c3f809815c17c07212622f776311faeb31e87610d52c26d87d6e361b169836",
            f"{_UCI}/wine-quality/winequality-white.csv"),
    RawFile("german-credit", "tabular/german-credit/german.data",
            "b21f3d81db8071257d5ff1deaeba1fd4303b62712e6fcc9715c7a86202cb5871",
            f"{_UCI}/statlog/german/german.data"),
    RawFile("ca-housing", "tabular/ca-housing/cal_housing.data",
            "a2b44dcc7e1c9091b43c4f458b25cbd1f7e8068d08edd26bc4703108d3fa6214",
            "https://ndownloader.figshare.com/files/5976036",
            archive_sha256="aaa5c9a6afe2225cc2aed2723682ae403280c4a3695a2ddda4ffb5d8215ea681",
            archive_member="CaliforniaHousing/cal_housing.data"),
    RawFile("twins", "tabular/twins/Twin_Data.csv.gz",
            "0128e5dfdeb468e85fd2818330beff49d4d433b7f7d56d3eb678f87ab15b00a9",
            "https://bitbucket.org/mvdschaar/mlforhealthlabpub/raw/"
            "0b0190bcd38a76c405c805f1ca774971fcd85233/data/twins/Twin_Data.csv.gz"),
    RawFile("adult/train", "tabular/adult/adult.data",
            "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
            f"{_UCI}/adult/adult.data"),
    RawFile("adult/test", "tabular/adult/adult.test",
            "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
            f"{_UCI}/adult/adult.test"),
    RawFile("compas", "tabular/compas/compas-scores-two-years.csv",
            "c451db85908b2f7fef1d83203bedf6b71ecda0d5af468d82ae62178f91d0cc7d",
            "https://raw.githubusercontent.com/propublica/compas-analysis/master/"
            "compas-scores-two-years.csv"),
    # Vision subsets: no public file equals these subsets, so they are mirror-only.
    RawFile("cifar10-subset", "vision/cifar10/cifar10_prefix_subset.npz",
            "219c4010bcc2a0ced2334a9e9f5328f87e90b2921f849abdb6e1057bd1f0d8f1",
            how_to_get="the subset exists only in the offline mirror; online, use the full set from "
                       "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (torchvision CIFAR10)"),
    RawFile("oxford-pets-labels", "vision/oxford_pets/labels.csv",
            "371de6fd7354cdc4585c5b4e4239c3bf88b03c9fa08e8d27134ae1611b1f5f88",
            how_to_get="the subset exists only in the offline mirror; online, use the full set from "
                       "https://www.robots.ox.ac.uk/~vgg/data/pets/"),
]}


def sha256(path: Path) -> str:
    """Hex SHA256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mirror_dir() -> Path | None:
    """The offline mirror folder: ``AMLIB_DATA_MIRROR``, else ``../shared/data`` beside the repo."""
    configured = os.environ.get("AMLIB_DATA_MIRROR")
    if configured:
        return Path(configured).expanduser()
    checkout = source_checkout()
    if checkout is None:
        return None
    beside = checkout.parent / "shared" / "data"
    return beside if beside.is_dir() else None


def cache_dir() -> Path:
    """The download cache: ``AMLIB_DATA_DIR``, default the user cache dir (``~/.cache/amlib``)."""
    configured = os.environ.get("AMLIB_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    return user_cache_dir()


def _checked(path: Path, raw: RawFile) -> Path:
    found = sha256(path)
    if found != raw.sha256:
        if raw.url:
            fix = f"delete it and run `amlib data fetch {raw.key}` to download it again from {raw.url}"
        else:  # a mirror-only file: there is nothing to download it from
            fix = (raw.how_to_get or "it has no public download URL: replace it with a verified "
                   "copy of the offline mirror (see the mirror folder's MANIFEST.md and SHA256SUMS)")
        raise DataFileError(f"{path} is corrupt: its SHA256 is {found}, expected {raw.sha256}. "
                            f"To fix: {fix}.")
    return path


def fetch(key: str, *, download: bool = True) -> Path:
    """A verified local path to the raw file ``key`` (see :data:`RAW_FILES`)."""
    if key not in RAW_FILES:
        raise KeyError(f"unknown data file {key!r}; known files: {', '.join(sorted(RAW_FILES))}")
    raw = RAW_FILES[key]
    looked: list[str] = []
    mirror = mirror_dir()
    if mirror is not None:
        candidate = mirror / raw.mirror_path
        if candidate.is_file():
            return _checked(candidate, raw)
        looked.append(str(candidate))
    cached = cache_dir() / raw.mirror_path
    if cached.is_file():
        return _checked(cached, raw)
    looked.append(str(cached))
    if download and raw.url:
        try:
            return _download(raw, cached)
        except Exception as error:  # network errors differ by platform; report them all the same way
            looked.append(f"{raw.url} ({type(error).__name__}: {error})")
    hint = raw.how_to_get or (
        f"download {raw.url} into {cached}, or point AMLIB_DATA_MIRROR at a folder holding "
        f"{raw.mirror_path}")
    raise DataFileError(
        f"data file {raw.mirror_path!r} ({key}) not found; looked in: {'; '.join(looked)}. "
        f"Expected SHA256 {raw.sha256}. To obtain it: {hint}.")


def _download(raw: RawFile, target: Path) -> Path:
    import pooch

    target.parent.mkdir(parents=True, exist_ok=True)
    if raw.archive_member is None:
        pooch.retrieve(raw.url, known_hash=f"sha256:{raw.sha256}", fname=target.name,
                       path=target.parent, progressbar=True)
        return _checked(target, raw)
    archive = pooch.retrieve(raw.url, known_hash=f"sha256:{raw.archive_sha256}",
                             fname=target.name + ".archive", path=target.parent, progressbar=True)
    with tarfile.open(archive) as tar:
        member = tar.extractfile(raw.archive_member)
        if member is None:
            raise DataFileError(f"{archive} has no member {raw.archive_member}")
        target.write_bytes(member.read())
    return _checked(target, raw)
