"""Loaders for the offline image subsets of CIFAR-10, Oxford-IIIT Pet and Caltech-101.

The paper used the full data sets with ImageNet ResNet50 features; only real subsets are
available offline (see the mirror's ``vision/MANIFEST.md``).  Every result computed from these is
labelled a stand-in.  Feature extraction comes in a later chapter; these loaders return images
(CIFAR-10, as arrays) or file paths (Pet, Caltech-101) with integer labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .registry import DataFileError, fetch, mirror_dir, sha256

__all__ = ["VisionSubset", "cifar10_subset", "oxford_pets_subset", "caltech101_subset"]


@dataclass
class VisionSubset:
    """Images (uint8 NHWC array) or image paths, integer labels, class names and a split."""

    name: str
    images: np.ndarray | list[Path]
    labels: np.ndarray
    class_names: list[str]
    split: dict[str, np.ndarray]
    stand_in: str = "offline subset of the paper's data set (see vision/MANIFEST.md)"

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def cifar10_subset() -> VisionSubset:
    """5,085 train + 1,017 test CIFAR-10 images: the first 1,017 of each official batch."""
    with np.load(fetch("cifar10-subset"), allow_pickle=False) as npz:
        images = np.concatenate([npz["x_train"], npz["x_test"]])
        labels = np.concatenate([npz["y_train"], npz["y_test"]]).astype(int)
        names = [str(n) for n in npz["label_names"]]
        n_train = len(npz["y_train"])
    split = {"train": np.arange(n_train), "test": np.arange(n_train, len(labels))}
    return VisionSubset("cifar10", images, labels, names, split)


def _mirror_sums(folder: str) -> dict[str, str]:
    root = mirror_dir()
    sums = None if root is None else root / "vision" / "SHA256SUMS"
    if sums is None or not sums.is_file():
        raise DataFileError(
            f"the {folder} image subset exists only in the offline mirror (vision/{folder}); "
            "set AMLIB_DATA_MIRROR to a folder holding vision/SHA256SUMS and the images")
    table = {}
    for line in sums.read_text().splitlines():
        digest, path = line.split(maxsplit=1)
        table[path.removeprefix("./")] = digest
    return table


def _verified_images(relative_paths: list[str], verify: bool) -> list[Path]:
    root = mirror_dir() / "vision"
    sums = _mirror_sums(relative_paths[0].split("/")[0]) if verify else {}
    paths = []
    for relative in relative_paths:
        path = root / relative
        if not path.is_file():
            raise DataFileError(f"image {path} is missing from the offline mirror")
        if verify and sha256(path) != sums.get(relative):
            raise DataFileError(f"image {path} fails its SHA256 (expected {sums.get(relative)})")
        paths.append(path)
    return paths


def oxford_pets_subset(verify: bool = True) -> VisionSubset:
    """370 Oxford-IIIT Pet JPEGs, 10 per breed x 37 breeds (all from the trainval split)."""
    table = pd.read_csv(fetch("oxford-pets-labels"))
    paths = _verified_images([f"oxford_pets/{f}" for f in table["file"]], verify)
    names = table.drop_duplicates("label").sort_values("label")["breed"].tolist()
    labels = table["label"].to_numpy(int)
    return VisionSubset("oxford_pets", paths, labels, names, {"all": np.arange(len(labels))})


def caltech101_subset(verify: bool = True) -> VisionSubset:
    """Up to 40 JPEGs for each of Caltech-101's 101 classes (``BACKGROUND_Google`` left out)."""
    sums = _mirror_sums("caltech101")
    relative = sorted(p for p in sums if p.startswith("caltech101/")
                      and "/BACKGROUND_Google/" not in p)
    names = sorted({p.split("/")[2] for p in relative})
    index = {n: i for i, n in enumerate(names)}
    labels = np.array([index[p.split("/")[2]] for p in relative])
    paths = _verified_images(relative, verify)
    return VisionSubset("caltech101", paths, labels, names, {"all": np.arange(len(labels))})
