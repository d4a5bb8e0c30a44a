"""The Lightning shell shared by every full-batch optimiser in the library.

BLAMM (:class:`amlib.am.blamm.BLAMM`) and the targeted influence attack
(:class:`amlib.influence.attacks.TargetedInfluenceAttack`) both keep their data on the module and
take one full-batch step per "epoch".  This module holds what they share: silencing Lightning,
the one-batch loader, and :func:`fit_full_batch`, which seeds, builds a quiet CPU/GPU ``Trainer``
and runs it with a chosen number of threads.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings

import torch
from torch.utils.data import DataLoader, Dataset

import pytorch_lightning as pl

__all__ = ["quiet_lightning", "one_batch_loader", "fit_full_batch"]


def quiet_lightning() -> None:
    """Silence Lightning's banners and the single-batch data-loader warnings."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning",
                 "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*number of training batches.*")
    warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", ".*treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", ".*training_step.*returned.*None.*")


class _OneBatch(Dataset):
    """Full-batch training: one (empty) batch per epoch; the data live on the module."""

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return torch.zeros(1)


def one_batch_loader() -> DataLoader:
    """A loader that yields one empty batch per epoch (the module holds the data)."""
    return DataLoader(_OneBatch(), batch_size=None)


def fit_full_batch(module: pl.LightningModule, epochs: int, seed: int, *,
                   progress_bar: bool | None = None, num_threads: int | None = None,
                   logger=False, accelerator: str = "cpu") -> pl.LightningModule:
    """Seed, then run ``epochs`` full-batch steps of ``module`` under a quiet ``Trainer``.

    ``progress_bar=None`` shows Lightning's bar only in an interactive terminal and never inside
    a sweep's trial (the sweep draws one bar for all its trials);
    ``num_threads`` sets torch's intra-op threads for the run and restores them afterwards.
    """
    quiet_lightning()
    pl.seed_everything(seed, verbose=False)
    if progress_bar is None:
        progress_bar = sys.stdout.isatty() and not os.environ.get("AMLIB_IN_SWEEP")
    bar = bool(progress_bar)
    threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        if epochs > 0:
            trainer = pl.Trainer(max_epochs=epochs, accelerator=accelerator, devices=1,
                                 logger=logger, enable_checkpointing=False,
                                 enable_model_summary=False, enable_progress_bar=bar,
                                 log_every_n_steps=1, num_sanity_val_steps=0)
            trainer.fit(module)
    finally:
        torch.set_num_threads(threads)
    return module
