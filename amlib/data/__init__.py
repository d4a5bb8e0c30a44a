"""The data layer: a checksummed registry of raw files and the papers' loaders."""
from .registry import DataFileError, RAW_FILES, cache_dir, fetch, mirror_dir
from .tabular import AM_DATASETS, TabularDataset, load
from .fairness import FAIRNESS_DATASETS, FairnessDataset, load_fairness
from .twins import TwinsSample, twins_observational

# amlib.data.features (image features; imports torch and PIL) is imported on use, not here

__all__ = ["DataFileError", "RAW_FILES", "cache_dir", "fetch", "mirror_dir", "AM_DATASETS",
           "TabularDataset", "load", "FAIRNESS_DATASETS", "FairnessDataset", "load_fairness",
           "TwinsSample", "twins_observational"]
