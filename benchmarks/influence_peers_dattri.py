"""dattri's CG influence on the problem of ``influence_peers.py`` (its child roles).

dattri (Deng et al. 2024, ``pip install dattri``; 0.3.0 installs beside the project's pins) scores
every (training point, test sample) pair: per-sample gradients of the test target, each
multiplied by (H + λI)⁻¹ through ``IFAttributorCG`` (conjugate gradients on autograd Hessian-vector
products of the whole training loss), then by every training point's gradient. The benchmark's
quantity is one number per training point, the influence on the *summed* test loss, so the
adapter hands dattri a test set of one "sample" — all m test points — whose target is their summed
cross-entropy: one CG solve, as amlib and torch-influence do. The training loss is the mean
cross-entropy, its per-sample gradients carry no regulariser and L2 enters as dattri's
``regularization`` (λI added to the Hessian): the same system as amlib's H + l2·I. dattri's CG
ignores its ``tol`` argument and always runs ``max_iter`` iterations, so the iteration count is
``max_iter``: "same accuracy" is the smallest ``max_iter`` of :data:`MAX_ITERS` whose values are
within the target error (searched untimed), "defaults" its defaults (``max_iter=10``).
"""
from __future__ import annotations

import os
import time

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")   # dattri's progress bars, in every child process

#: ``max_iter`` values searched for dattri's "same accuracy" row
MAX_ITERS = [10, 15, 20, 25, 30, 35, 40, 50, 60, 80, 100, 150]


def _setup(arrays: dict, meta: dict, l2: float, threads: int, max_iter: int):
    """dattri's attributor (cached on the whole training set) and its data loaders."""
    import torch
    import torch.nn.functional as F
    from dattri.algorithm.influence_function import IFAttributorCG
    from dattri.task import AttributionTask
    from influence_peers import linear_model
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(threads)
    d = meta["d"]
    lin = linear_model(arrays, meta)

    def train_loss(params, data):
        """Mean cross-entropy of a batch (dattri passes single points as batches of one)."""
        x, y = data
        return F.cross_entropy(torch.func.functional_call(lin, params, x.reshape(-1, d)),
                               y.reshape(-1))

    def summed_test_loss(params, data):
        """The one test "sample" is the whole test set: its summed cross-entropy (Eq. 3)."""
        x, y = data
        logits = torch.func.functional_call(lin, params, x.reshape(-1, d))
        return F.cross_entropy(logits, y.reshape(-1), reduction="sum")

    task = AttributionTask(loss_func=train_loss, model=lin, checkpoints=lin.state_dict(),
                           target_func=summed_test_loss)
    attributor = IFAttributorCG(task=task, max_iter=max_iter, regularization=l2, device="cpu")
    X = torch.from_numpy(arrays["X"]).double()
    y = torch.from_numpy(arrays["y"])
    train = TensorDataset(X, y)
    attributor.cache(DataLoader(train, batch_size=len(train)))   # the Hessian of all n points
    test = TensorDataset(torch.from_numpy(arrays["Xt"]).double()[None],
                         torch.from_numpy(arrays["yt"])[None])
    return attributor, DataLoader(train, batch_size=512), DataLoader(test, batch_size=1)


def values(arrays: dict, meta: dict, l2: float, threads: int, max_iter: int
           ) -> tuple[np.ndarray, float]:
    """(value of every training point, seconds of the attribution itself)."""
    attributor, train, test = _setup(arrays, meta, l2, threads, max_iter)
    start = time.perf_counter()
    scores = attributor.attribute(train, test)      # (n, 1): g_iᵀ (H + λI)⁻¹ G_test
    seconds = time.perf_counter() - start
    return scores.detach().double().numpy()[:, 0], seconds


def floor(threads: int) -> None:
    """dattri's imports (the data are loaded by the caller)."""
    import torch
    from dattri.algorithm.influence_function import IFAttributorCG  # noqa: F401
    from dattri.task import AttributionTask  # noqa: F401

    torch.set_num_threads(threads)


def search(arrays: dict, meta: dict, l2: float, threads: int, ref: np.ndarray,
           target_error: float) -> dict:
    """The smallest ``max_iter`` whose values are within ``target_error`` of the reference."""
    found = []
    for max_iter in MAX_ITERS:
        vals, _ = values(arrays, meta, l2, threads, max_iter)
        err = float(np.linalg.norm(vals - ref) / np.linalg.norm(ref))
        found.append({"max_iter": max_iter, "error": err})
        if err < target_error:
            return {"max_iter": max_iter, "search": found}
    return {"max_iter": None, "search": found}
