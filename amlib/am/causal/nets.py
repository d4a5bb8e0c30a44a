"""T-Net and TARNet as one batched LightningModule, with CATENets' Twins settings.

T-Net (Curth & van der Schaar 2021) fits one network per arm on that arm's rows; TARNet (Shalit,
Johansson & Sontag 2017) shares a representation Phi(x) between two outcome heads, each trained
on its arm's rows (the "factual" loss).  The paper (App. D.3) runs CATENets v0.2.4's JAX models
with the settings of Curth & van der Schaar's Twins experiments (``n_layers_r=1, n_layers_out=1``,
other arguments at CATENets' defaults).  We re-implement them in PyTorch as follows
(:data:`DEFAULTS`):

- architecture: T-Net arm net x -> Dense(200) -> ELU -> Dense(100) -> ELU -> Dense(1) -> sigmoid;
  TARNet x -> Dense(200) -> ELU = Phi, then per arm Phi -> Dense(100) -> ELU -> Dense(1) ->
  sigmoid.  No batch norm or dropout (as CATENets' JAX models).  Weights Glorot-normal, biases
  zero; a net's initial weights depend only on its member's seed (both T-Net arm nets start from
  the same draw, as CATENets seeds both with ``PRNGKey(seed)``);
- objective: mean binary cross-entropy of the factual outcomes in the minibatch plus
  ``0.5 * penalty_l2 * sum ||W||^2`` over weight matrices (not biases), ``penalty_l2 = 1e-4``
  (CATENets' L2; the gradient is that of weight decay 1e-4 applied to the weights);
- optimiser: Adam, lr 1e-4 (betas 0.9, 0.999, eps 1e-8), minibatches of 100 from a fresh
  shuffle every epoch (``round(n / 100)`` batches; CATENets' slice end ``n - 1`` that drops one
  row per epoch is not copied);
- early stopping as CATENets: 30% of the rows are held out (``train_test_split``, seed = the
  member's seed; TARNet stratifies by W, T-Net splits each arm's rows).  After **every epoch** the
  validation objective (penalty included) is computed; a patience counter resets when it improves
  and otherwise grows, and training stops once it exceeds ``patience = 10`` and more than
  ``n_iter_min = 200`` minibatch steps have been taken (T-Net counts patience only after those
  200 steps, as CATENets' output-net trainer does).  At most ``n_iter = 10,000`` epochs (CATENets'
  ``n_iter`` counts passes over the data).  The weights kept are those at the stopping epoch;
- tau_hat = mean over all rows given (training and validation) of mu_1(x) - mu_0(x).

Speed: the members of :func:`nets_ate_many` (and, for T-Net, both arm nets of every member) are
stacked along a leading axis and trained in lockstep with ``torch.baddbmm`` under one Adam
optimiser; each net keeps its own data, shuffles, validation set and early-stopping state.  A net
that stops is frozen (its weights saved) and dropped from the stack, optimiser state included, so
the others continue at their own pace.  Every net's randomness (split, initial weights, shuffles)
comes from its own seed, so a batched run matches separate runs with the same seeds: T-Net to
float precision; TARNet, whose per-arm slots are padded to the widest arm of the step (so matrix
products change shape with the company a net keeps), up to rounding that training amplifies —
differences of a few 1e-3 in tau_hat, below the seed-to-seed spread.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch import nn

import pytorch_lightning as pl

from ._checks import CausalInputError

__all__ = ["DEFAULTS", "BatchedCATENets", "nets_ate_many"]

DEFAULTS = {"n_layers_r": 1, "n_units_r": 200, "n_layers_out": 1, "n_units_out": 100,
            "lr": 1e-4, "batch_size": 100, "n_iter": 10_000, "n_iter_min": 200, "patience": 10,
            "penalty_l2": 1e-4, "val_split": 0.3, "num_threads": None, "device": "cpu"}


class _Stream:
    """One net's minibatches: a fresh permutation each epoch, ``round(n / bs)`` batches.

    ``groups`` (TARNet: the arm of each training row) splits every batch into its rows of each
    group, so that each outcome head sees only its factual rows.
    """

    def __init__(self, n: int, batch_size: int, seed: int, groups: np.ndarray | None = None):
        self.n, self.bs = n, min(batch_size, n)
        self.nb = int(np.round(n / self.bs)) if self.bs < n else 1
        self.rs = np.random.RandomState(seed)
        self.groups = groups
        self.buffer: list[list[np.ndarray]] = []

    def peek(self, steps: int) -> list:
        """The next ``steps`` batches, each a list of row-index arrays, one per group."""
        while len(self.buffer) < steps:
            perm = self.rs.permutation(self.n)
            for b in range(self.nb):
                rows = perm[b * self.bs: min((b + 1) * self.bs, self.n)]
                if self.groups is None:
                    self.buffer.append([rows])
                else:
                    self.buffer.append([rows[self.groups[rows] == 0], rows[self.groups[rows] == 1]])
        return self.buffer[:steps]

    def consume(self, steps: int) -> None:
        del self.buffer[:steps]


class BatchedCATENets(pl.LightningModule):
    """``N`` stacked T-Net arm nets (``kind="tnet"``) or TARNets (``kind="tarnet"``).

    Layer ``l`` holds ``W[l]`` of shape (N, in, out) and ``b[l]`` of shape (N, 1, out); TARNet's
    head layers carry an arm axis, (N, 2, in, out).  ``forward(X)`` takes X of shape
    (N, G, m, d) and returns logits (N, G, m): for T-Net G = 1; for TARNet G = 2 and the rows in
    slot a go through head a (pass the same rows in both slots to get mu_0 and mu_1).
    :meth:`fit_nets` trains the stack with the manual loop described in the module docstring
    (``configure_optimizers`` gives its Adam); no ``Trainer`` is involved.
    """

    def __init__(self, kind: str, d: int, seeds, hp: dict):
        super().__init__()
        self.kind, self.hp, self.seeds = kind, dict(hp), [int(s) for s in seeds]
        body = [hp["n_units_r"]] * hp["n_layers_r"]
        head = [hp["n_units_out"]] * hp["n_layers_out"] + [1]
        if kind == "tnet":
            sizes, self.n_repr = [d] + body + head, len(body) + len(head)
        else:
            sizes, self.n_repr = [d] + body + head, len(body)
        self.sizes = sizes
        per_net = [self._init_net(int(s)) for s in seeds]
        self.W = nn.ParameterList([nn.Parameter(torch.stack([net[0][l] for net in per_net]))
                                   for l in range(len(sizes) - 1)])
        self.b = nn.ParameterList([nn.Parameter(torch.stack([net[1][l] for net in per_net]))
                                   for l in range(len(sizes) - 1)])

    def _init_net(self, seed: int):
        gen = torch.Generator().manual_seed(seed)
        Ws, bs = [], []
        for l, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            std = (2.0 / (fan_in + fan_out)) ** 0.5
            arms = () if (self.kind == "tnet" or l < self.n_repr) else (2,)
            Ws.append(torch.randn(*arms, fan_in, fan_out, generator=gen) * std)
            bs.append(torch.zeros(*arms, 1, fan_out))
        return Ws, bs

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hp["lr"])

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return _stack_forward(self.kind, self.n_repr, list(self.W), list(self.b), X)

    def objective(self, X, y, mask) -> torch.Tensor:
        """Per-net mean factual BCE over the masked rows + 0.5 penalty_l2 ||W||^2, shape (N,).

        X (N, G, m, d), y and mask (N, G, m).
        """
        bce = F.binary_cross_entropy_with_logits(self(X), y, reduction="none") * mask
        data = bce.flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1.0)
        sq = sum(W.pow(2).flatten(1).sum(1) for W in self.W)
        return data + 0.5 * self.hp["penalty_l2"] * sq

    def _keep(self, keep: np.ndarray, optimiser):
        """Drop the nets not in ``keep`` from the stack and from Adam's state."""
        index = torch.as_tensor(keep, device=self.W[0].device)
        new = torch.optim.Adam
        pairs = []
        for plist in (self.W, self.b):
            for l in range(len(plist)):
                old = plist[l]
                plist[l] = nn.Parameter(old.data.index_select(0, index).clone())
                pairs.append((old, plist[l]))
        opt = new(self.parameters(), lr=self.hp["lr"])
        for old, fresh in pairs:
            state = optimiser.state.get(old)
            if state:
                opt.state[fresh] = {"step": state["step"].clone(),
                                    "exp_avg": state["exp_avg"].index_select(0, index).clone(),
                                    "exp_avg_sq": state["exp_avg_sq"].index_select(0, index).clone()}
        return opt

    def fit_nets(self, train: list, val: list) -> "BatchedCATENets":
        """Train net j on ``train[j] = (X, y, w)`` with early stopping on ``val[j]``."""
        hp, dev = self.hp, self.W[0].device
        N, G = len(train), (2 if self.kind == "tarnet" else 1)
        tX, ty = _pad(train, dev)
        vX, vy, vmask = _pad_groups(val, G, dev)
        streams = [_Stream(len(y), hp["batch_size"], seed, w.astype(int) if G == 2 else None)
                   for (_, y, w), seed in zip(train, self.seeds)]
        final = [None] * N
        active = np.arange(N)
        best = np.full(N, np.inf)
        wait, epochs, steps = np.zeros(N, int), np.zeros(N, int), np.zeros(N, int)
        opt = self.configure_optimizers()
        block = 4 * max(s.nb for s in streams)
        while active.size:
            idx, msk, widths = _index_block([streams[j].peek(block) for j in active], G, dev)
            rows = torch.as_tensor(active, device=dev)[:, None, None]
            nbs = np.array([streams[j].nb for j in active])
            used = block
            for s in range(block):
                steps[active] += 1
                ends = (steps[active] % nbs) == 0
                i_s, m_s = idx[s, :, :, :widths[s]], msk[s, :, :, :widths[s]]
                opt.zero_grad(set_to_none=True)
                self.objective(tX[rows, i_s], ty[rows, i_s], m_s).sum().backward()
                opt.step()
                if not ends.any():
                    continue
                with torch.no_grad():
                    loss = self.objective(vX[active], vy[active], vmask[active]).cpu().numpy()
                stop = np.zeros(active.size, bool)
                for pos in np.flatnonzero(ends):
                    j = active[pos]
                    epochs[j] += 1
                    past_min = steps[j] > hp["n_iter_min"]
                    if G == 2 or past_min:  # T-Net counts patience only past n_iter_min
                        if loss[pos] < best[j]:
                            best[j], wait[j] = loss[pos], 0
                        else:  # no improvement (a NaN loss counts as none)
                            wait[j] += 1
                    if (wait[j] > hp["patience"] and past_min) or epochs[j] >= hp["n_iter"]:
                        stop[pos] = True
                        final[j] = ([W[pos].detach().clone() for W in self.W],
                                    [b[pos].detach().clone() for b in self.b])
                if stop.any():
                    used = s + 1
                    break
            for j in active:
                streams[j].consume(used)
            if used < block:  # some nets stopped: drop them, redraw the block for the others
                keep = ~stop
                active = active[keep]
                if active.size:
                    opt = self._keep(np.flatnonzero(keep), opt)
        for plist, k in ((self.W, 0), (self.b, 1)):
            for l in range(len(plist)):
                plist[l] = nn.Parameter(torch.stack([final[j][k][l] for j in range(N)]))
        self.epochs_run = epochs
        return self

    @torch.no_grad()
    def probabilities(self, X: torch.Tensor) -> torch.Tensor:
        """sigmoid(forward(X)); X of shape (N, G, m, d)."""
        return torch.sigmoid(self(X))


def _pad(parts: list, dev) -> tuple:
    """Training rows of each net, zero-padded: X (N, m, d) and y (N, m), float32."""
    m = max(len(p[1]) for p in parts)
    X = np.zeros((len(parts), m, parts[0][0].shape[1]), np.float32)
    y = np.zeros((len(parts), m), np.float32)
    for j, (Xj, yj, _) in enumerate(parts):
        X[j, :len(yj)], y[j, :len(yj)] = Xj, yj
    return torch.as_tensor(X, device=dev), torch.as_tensor(y, device=dev)


def _pad_groups(parts: list, G: int, dev) -> tuple:
    """Validation rows of each net by group (arm when G = 2): X (N, G, m, d), y, mask (N, G, m)."""
    groups = [[(Xj, yj) if G == 1 else (Xj[wj == g], yj[wj == g]) for g in range(G)]
              for Xj, yj, wj in parts]
    m = max(len(yg) for net in groups for _, yg in net)
    X = np.zeros((len(parts), G, m, parts[0][0].shape[1]), np.float32)
    y, mask = np.zeros((len(parts), G, m), np.float32), np.zeros((len(parts), G, m), np.float32)
    for j, net in enumerate(groups):
        for g, (Xg, yg) in enumerate(net):
            X[j, g, :len(yg)], y[j, g, :len(yg)], mask[j, g, :len(yg)] = Xg, yg, 1.0
    return tuple(torch.as_tensor(a, device=dev) for a in (X, y, mask))


def _index_block(batches: list, G: int, dev) -> tuple:
    """Stack per-net batch lists into indices and a mask (steps, A, G, width); step widths."""
    steps, A = len(batches[0]), len(batches)
    widths = np.array([max(len(batches[a][s][g]) for a in range(A) for g in range(G))
                       for s in range(steps)])
    idx = np.zeros((steps, A, G, widths.max()), np.int64)
    mask = np.zeros((steps, A, G, widths.max()), np.float32)
    for a in range(A):
        for s in range(steps):
            for g in range(G):
                rows = batches[a][s][g]
                idx[s, a, g, :len(rows)], mask[s, a, g, :len(rows)] = rows, 1.0
    return torch.as_tensor(idx, device=dev), torch.as_tensor(mask, device=dev), widths


def _split(X, y, w, seed, prop, stratify):
    if prop <= 0:
        return (X, y, w), (X, y, w)
    parts = train_test_split(X, y, w, test_size=prop, random_state=seed, shuffle=True,
                             stratify=w if stratify else None)
    return (parts[0], parts[2], parts[4]), (parts[1], parts[3], parts[5])


def nets_ate_many(kind: str, datasets: list, seeds: list, **hp) -> list[float]:
    """tau_hat of T-Net or TARNet for each checked ``(X, w, y)``, trained as one batched model."""
    d = {X.shape[1] for X, _, _ in datasets}
    if len(d) != 1:
        raise CausalInputError(f"the data sets have different numbers of columns {sorted(d)}; "
                               "a batched network needs the same covariates in every member")
    d = d.pop()
    train, val, net_seeds = [], [], []
    for (X, w, y), seed in zip(datasets, seeds):
        arms = ((w == 0), (w == 1)) if kind == "tnet" else (np.ones(len(w), bool),)
        for rows in arms:
            tr, va = _split(X[rows], y[rows], w[rows], seed, hp["val_split"], kind == "tarnet")
            train.append(tr)
            val.append(va)
            net_seeds.append(seed)
    threads = torch.get_num_threads()
    if hp["num_threads"]:
        torch.set_num_threads(int(hp["num_threads"]))
    try:
        model = BatchedCATENets(kind, d, net_seeds, hp).to(hp["device"])
        model.fit_nets(train, val)
        taus = []
        for k, (X, w, y) in enumerate(datasets):
            Xt = torch.as_tensor(X, dtype=torch.float32, device=hp["device"])
            if kind == "tnet":
                p = torch.stack([_net_probs(model, 2 * k + a, Xt) for a in (0, 1)])
            else:
                p = _net_probs(model, k, Xt)
            taus.append(float((p[1] - p[0]).mean()))
    finally:
        torch.set_num_threads(threads)
    return taus


def _stack_forward(kind: str, n_repr: int, Ws: list, bs: list, X: torch.Tensor) -> torch.Tensor:
    """Logits (N, G, m) of stacked nets on X (N, G, m, d); see :class:`BatchedCATENets`."""
    N, G, m, d = X.shape
    h, last = X.reshape(N, G * m, d), len(Ws) - 1
    for l in range(n_repr):
        h = torch.baddbmm(bs[l], h, Ws[l])
        h = h if l == last else F.elu(h)
    if kind == "tnet":
        return h.reshape(N, G, m)
    h = h.reshape(N * G, m, h.shape[-1])  # slot a of net j -> head a of net j
    for l in range(n_repr, len(Ws)):
        W, b = Ws[l], bs[l]
        h = torch.baddbmm(b.reshape(N * G, *b.shape[2:]), h, W.reshape(N * G, *W.shape[2:]))
        h = h if l == last else F.elu(h)
    return h.reshape(N, G, m)


@torch.no_grad()
def _net_probs(model: BatchedCATENets, j: int, X: torch.Tensor) -> torch.Tensor:
    """Probabilities of net j alone on X (m, d): (m,) for T-Net, (2, m) = (mu_0, mu_1) for TARNet."""
    Ws = [W[j:j + 1] for W in model.W]
    bs = [b[j:j + 1] for b in model.b]
    G = 1 if model.kind == "tnet" else 2
    X = X.reshape(1, 1, *X.shape).expand(1, G, *X.shape)
    return torch.sigmoid(_stack_forward(model.kind, model.n_repr, Ws, bs, X))[0].squeeze(0)
