"""Pretrained-network features of the image data sets, computed once and cached with checksums.

The influence paper's data-valuation experiments (Sec. 4) fit a multiclass logistic regression on
ImageNet ResNet50 penultimate features of CIFAR-10, Oxford-IIIT Pet and Caltech-101. Offline we
have real image *subsets* and EfficientNet-Lite0 (see :mod:`amlib.data.networks` and the mirror's
``vision/MANIFEST.md``), so every number computed from :func:`image_features` is labelled
:data:`STAND_IN`.

Cache. Features are computed once per (data set, network) — batched, in eval mode without
gradients, with a progress bar — and stored as ``<cache_dir()>/features/<name>__<network>__<key>.npz``
(``cache_dir()`` is ``AMLIB_DATA_DIR`` or the user cache dir). The key hashes the network name, the
SHA256 of its weights, its input normalisation, the preprocessing version and the SHA256 of the
images (the CIFAR-10 ``.npz``; for JPEG folders a hash of every file's checked SHA256), so new
images or weights never hit an old entry. Each file stores the SHA256 of its feature and label
bytes; on load both and the key are checked. **A corrupt, truncated or mismatching cache file is
recomputed with a** :class:`FeatureCacheWarning` (features are a deterministic function of the
verified images and weights, so recomputing is always correct); a lock file keeps two processes
from computing the same entry at once (the second waits for the first).

Splits (as the original code, see the influence notes): ``train``; the test part halved,
stratified and seeded, into ``attack`` (the paper's "val", whose influence is attacked) and
``heldout`` (the transfer test). CIFAR-10 keeps its official train/test parts (5,085 / 1,017 →
508 + 509). The Pet subset holds trainval images only, so a stratified 50/50 split stands in for
the official ~50/50 trainval/test (185 / 185 → 92 + 93); Caltech-101 has no official split, and the
original code's 80/20 (6,941/1,736) is applied (3,175 / 794 → 397 + 397).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import vision
from .networks import PREPROCESSING, FeatureNetwork, get_network, preprocess
from .registry import RAW_FILES, cache_dir

__all__ = ["image_features", "FeatureSet", "FEATURE_NETWORKS", "FEATURE_DATASETS", "STAND_IN",
           "FeatureCacheWarning", "cached_features", "extract_features", "feature_splits"]

FEATURE_NETWORKS = ("efficientnet-lite0", "resnet50")
STAND_IN = "EfficientNet-Lite0 features on image subsets"
#: data set name → (loader, test fraction of a seeded stratified split or None for the official one)
FEATURE_DATASETS = {"cifar10": (vision.cifar10_subset, None),
                    "pets": (vision.oxford_pets_subset, 0.5),
                    "caltech101": (vision.caltech101_subset, 0.2)}
_ALIASES = {"oxford_pets": "pets", "oxford-pets": "pets", "pet": "pets", "caltech": "caltech101",
            "cifar-10": "cifar10"}
_FORMAT = 1


class FeatureCacheWarning(UserWarning):
    """A cached feature file was unreadable or did not match its checksums; it is recomputed."""


@dataclass
class FeatureSet:
    """Features ``X`` (n, dim) float32, labels ``y`` (n,) int64, class names and index splits."""

    name: str
    network: str
    X: np.ndarray
    y: np.ndarray
    class_names: list[str]
    split: dict[str, np.ndarray]
    stand_in: str
    checksums: dict[str, str] = field(default_factory=dict)
    extraction_seconds: float = float("nan")
    cache_path: Path | None = None
    standardized: bool = False

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def part(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) of one split: ``"train"``, ``"attack"`` or ``"heldout"``."""
        if which not in self.split:
            raise KeyError(f"unknown split {which!r}; choose one of {', '.join(self.split)}")
        idx = self.split[which]
        return self.X[idx], self.y[idx]


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def extract_features(images, network: FeatureNetwork, *, batch_size: int = 64,
                     progress: bool = True, desc: str = "features") -> np.ndarray:
    """(n, dim) float32 features of a sequence of images (paths or uint8 arrays), in batches."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(images)
    out = np.empty((n, network.dim), dtype=np.float32)
    bar = tqdm(total=n, desc=desc, unit="img", disable=not progress)
    with torch.no_grad():
        for lo in range(0, n, batch_size):
            chunk = [preprocess(images[i]) for i in range(lo, min(lo + batch_size, n))]
            batch = network.normalise(torch.from_numpy(np.stack(chunk)))
            feats = network.features(batch)
            if feats.shape != (len(chunk), network.dim):
                raise ValueError(f"{network.name} returned features of shape {tuple(feats.shape)},"
                                 f" expected ({len(chunk)}, {network.dim})")
            out[lo:lo + len(chunk)] = feats.float().numpy()
            bar.update(len(chunk))
    bar.close()
    return out


def _cache_key(name: str, network: FeatureNetwork, images_sha256: str, n: int) -> str:
    spec = {"format": _FORMAT, "dataset": name, "n_images": n, "images_sha256": images_sha256,
            "network": network.name, "weights_sha256": network.weights_sha256,
            "normalisation": network.normalisation, "preprocessing": PREPROCESSING}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _load(path: Path, key: str, labels: np.ndarray) -> tuple[np.ndarray, dict] | None:
    """The cached features, or None (with a warning) when the file does not check out."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            X, y, meta = npz["X"], npz["y"], json.loads(str(npz["meta"]))
        problems = []
        if meta.get("key") != key:
            problems.append("its key does not match the images/network")
        if meta.get("features_sha256") != _digest(X, y):
            problems.append("its features fail their SHA256")
        if not np.array_equal(y, labels):
            problems.append("its labels differ from the data set's")
    except Exception as error:   # a truncated zip, a missing member, bad JSON: all mean "corrupt"
        problems = [f"it cannot be read ({type(error).__name__}: {error})"]
    if problems:
        warnings.warn(f"feature cache {path} is corrupt or stale: {'; '.join(problems)}. "
                      "Recomputing it.", FeatureCacheWarning, stacklevel=3)
        return None
    return X, meta


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _acquire(lock: Path, wait_s: float = 3600.0) -> bool:
    """Create ``lock`` (True), or wait while another live process holds it (False)."""
    start, told = time.monotonic(), False
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            return True
        except FileExistsError:
            try:
                holder = int(lock.read_text() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and not _pid_alive(holder):
                lock.unlink(missing_ok=True)   # left behind by a process that died
                continue
            if time.monotonic() - start > wait_s:
                raise TimeoutError(f"{lock} is held by process {holder} for over {wait_s:.0f} s; "
                                   "delete the lock file if that process is gone")
            if not told:
                print(f"waiting for process {holder}, which is computing {lock.stem}")
                told = True
            time.sleep(2.0)
            if not lock.exists():
                return False


def cached_features(name: str, images, labels, images_sha256: str, network, *,
                    batch_size: int = 64, progress: bool = True,
                    cache: Path | None = None) -> tuple[np.ndarray, dict, Path]:
    """Features of ``images`` from the cache, else computed, stored and returned.

    Returns ``(X, meta, path)``; ``meta`` holds the key, the checksums and the extraction time.
    """
    network = get_network(network)
    labels = np.asarray(labels, dtype=np.int64)
    key = _cache_key(name, network, images_sha256, len(labels))
    folder = Path(cache) if cache is not None else cache_dir() / "features"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}__{network.name}__{key[:16]}.npz"
    while True:
        if path.is_file():
            loaded = _load(path, key, labels)
            if loaded is not None:
                return loaded[0], loaded[1], path
        lock = path.with_suffix(".lock")
        if _acquire(lock):
            break
    try:
        start = time.perf_counter()
        X = extract_features(images, network, batch_size=batch_size, progress=progress,
                             desc=f"{name} ({network.name})")
        meta = {"key": key, "dataset": name, "network": network.name,
                "weights_sha256": network.weights_sha256, "images_sha256": images_sha256,
                "preprocessing": PREPROCESSING, "normalisation": network.normalisation,
                "features_sha256": _digest(X, labels), "torch": torch.__version__,
                "threads": torch.get_num_threads(), "batch_size": batch_size,
                "extraction_seconds": round(time.perf_counter() - start, 2)}
        tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, X=X, y=labels, meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)
    finally:
        lock.unlink(missing_ok=True)
    return X, meta, path


def _stratified_halves(idx: np.ndarray, y: np.ndarray, test_size: float, seed: int):
    from sklearn.model_selection import train_test_split

    a, b = train_test_split(idx, test_size=test_size, stratify=y[idx], random_state=seed)
    return np.sort(a), np.sort(b)


def feature_splits(name: str, labels: np.ndarray, official: dict[str, np.ndarray],
                   seed: int = 0) -> dict[str, np.ndarray]:
    """``train``/``attack``/``heldout`` index arrays (see the module docstring)."""
    test_fraction = FEATURE_DATASETS[name][1]
    if test_fraction is None:
        train, test = np.asarray(official["train"]), np.asarray(official["test"])
    else:
        train, test = _stratified_halves(np.arange(len(labels)), labels, test_fraction, seed)
    attack, heldout = _stratified_halves(test, labels, 0.5, seed)
    return {"train": train, "attack": attack, "heldout": heldout}


def _images_sha256(subset) -> str:
    if subset.name == "cifar10":
        return RAW_FILES["cifar10-subset"].sha256
    root = vision.mirror_dir() / "vision"
    sums = vision._mirror_sums(subset.name)
    lines = []
    for path in subset.images:
        relative = Path(path).relative_to(root).as_posix()
        lines.append(f"{sums[relative]}  {relative}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def image_features(name: str, network="efficientnet-lite0", *, progress: bool = True,
                   batch_size: int = 64, standardize: bool = True,
                   split_seed: int = 0) -> FeatureSet:
    """Penultimate-layer features of ``"cifar10"``, ``"pets"`` or ``"caltech101"`` (cached).

    The images are checked against the mirror's SHA256s before anything else. ``standardize``
    (default, as the original code) centres and scales every feature by the *training* part's mean
    and standard deviation (the cache keeps the raw features). ``split_seed`` seeds the stratified
    splits. ``network``: ``"efficientnet-lite0"`` (offline default), ``"resnet50"`` (needs
    torchvision and, on first use, a download) or a :class:`~amlib.data.networks.FeatureNetwork`.
    """
    key = _ALIASES.get(name, name)
    if key not in FEATURE_DATASETS:
        raise ValueError(f"unknown image data set {name!r}; choose one of "
                         f"{', '.join(FEATURE_DATASETS)}")
    subset = FEATURE_DATASETS[key][0]()
    images_sha256 = _images_sha256(subset)
    net = get_network(network)
    X, meta, path = cached_features(key, subset.images, subset.labels, images_sha256, net,
                                    batch_size=batch_size, progress=progress)
    y = np.asarray(subset.labels, dtype=np.int64)
    split = feature_splits(key, y, subset.split, split_seed)
    if standardize:
        train = X[split["train"]].astype(np.float64)
        mean, std = train.mean(axis=0), train.std(axis=0)
        X = ((X - mean) / np.where(std > 1e-12, std, 1.0)).astype(np.float32)
    label = STAND_IN if net.name == "efficientnet-lite0" else f"{net.name} features on image subsets"
    checksums = {k: meta[k] for k in ("key", "weights_sha256", "images_sha256", "features_sha256")}
    return FeatureSet(key, net.name, X, y, list(subset.class_names), split, label, checksums,
                      float(meta.get("extraction_seconds", float("nan"))), path, standardize)
