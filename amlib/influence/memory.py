"""How much memory a backward pass holds on to, counted exactly.

Resident memory is blurred by the allocator at the 100 MB level; the tensors autograd saves for
backward are not. :class:`SavedTensorBytes` counts the bytes of the distinct storages saved inside
its context (``torch.autograd.graph.saved_tensors_hooks``), leaving out given tensors (the data
matrices, which exist anyway). It is how chapter 10 and ``benchmarks/influence_step.py`` compare
the backward-friendly surrogate (Alg. 1) with backpropagation through an unrolled solver.
"""
from __future__ import annotations

import torch

__all__ = ["SavedTensorBytes", "saved_bytes"]


class SavedTensorBytes:
    """Context manager: ``nbytes`` of the distinct storages autograd saved for backward inside
    it, except those of the tensors in ``exclude``. Deterministic for a given computation."""

    def __init__(self, *exclude: torch.Tensor):
        self.exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self.seen: dict[int, int] = {}
        self._hooks = None

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in self.exclude:
            self.seen[storage.data_ptr()] = storage.nbytes()
        return t

    def __enter__(self) -> "SavedTensorBytes":
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    @property
    def nbytes(self) -> int:
        return int(sum(self.seen.values()))


def saved_bytes(fn, *exclude: torch.Tensor):
    """(fn(), the bytes autograd saved for its backward pass), leaving out ``exclude``."""
    with SavedTensorBytes(*exclude) as counter:
        out = fn()
    return out, counter.nbytes
