"""Random forests and weights for the Tree-LSTM tests."""

from __future__ import annotations

from typing import Optional

import numpy as np


def random_forest(rng: np.random.Generator, n: int, arity: Optional[int] = None,
                  root_prob: float = 0.1, shuffle: bool = True) -> np.ndarray:
    """Parents of n nodes: each node joins a random earlier node with a free position (at most
    `arity` children each), or starts a new tree; then the nodes are relabelled at random."""
    parents = np.full(n, -1, np.int64)
    n_children = np.zeros(n, np.int64)
    for j in range(1, n):
        open_ = np.flatnonzero(n_children[:j] < (arity or n))
        if open_.size and rng.random() >= root_prob:
            p = int(rng.choice(open_))
            parents[j] = p
            n_children[p] += 1
    if not shuffle:
        return parents
    perm = rng.permutation(n)  # old node j becomes perm[j]
    relabelled = np.full(n, -1, np.int64)
    relabelled[perm] = np.where(parents >= 0, perm[parents], -1)
    return relabelled


def weights(rng: np.random.Generator, inp: int, hidden: int, arity: Optional[int], bias: bool,
            dtype=np.float64, scale: float = 0.5):
    """w_ih, w_hh, b_ih, b_hh of the given kind (biases None without bias)."""
    if arity is None:
        hh = (4 * hidden, hidden)
    else:
        hh = ((3 + arity) * hidden, arity * hidden)
    w_ih = (rng.standard_normal((4 * hidden, inp)) * scale).astype(dtype)
    w_hh = (rng.standard_normal(hh) * scale).astype(dtype)
    if not bias:
        return w_ih, w_hh, None, None
    b_ih = (rng.standard_normal(4 * hidden) * scale).astype(dtype)
    b_hh = (rng.standard_normal(hh[0]) * scale).astype(dtype)
    return w_ih, w_hh, b_ih, b_hh
