"""What the suite measures: the cases (a cell at a shape), their inputs and their FLOP counts.

A case kind is a small class with `key`, `make_inputs(rng)` and `flops(mode)`; peers say per case
whether they support it (`supports(case, mode)`). A new kind of row (as TreeCase, a Tree-LSTM
over a forest) is a new class here, a function in peers/reference_peer.py, and a branch in the
peers that can run it; the timer, the check, the table and the plot do not change.

Inputs follow PyTorch: x (T, B, I); h0, c0 (layers*directions, B, H) for modules, (B, H) for one
layer; weights (G*H, I) and (G*H, H), uniform in +-1/sqrt(H), gate order of torch.nn.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Dict, Optional, Tuple

import numpy as np

import forests

MODES = ("forward", "train")  # forward: inference; train: forward + backward
MODE_TITLES = {"forward": "forward", "train": "fwd+bwd"}
CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
TREE_CELLS = ("tree_childsum", "tree_nary")  # rows over a forest, see TreeCase
ALL_CELLS = CELLS + TREE_CELLS
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}

# (T, B, I, H) of the grid, and the small shapes of the CI smoke run.
SHAPES = ((100, 1, 128, 128), (1000, 1, 64, 64), (100, 16, 256, 256), (50, 64, 512, 512),
          (20, 256, 1024, 1024))
STACKED_SHAPE = (100, 16, 256, 256)
QUICK_SHAPES = ((6, 3, 8, 5),)
QUICK_STACKED_SHAPE = (5, 2, 6, 4)
# Trees per forest, (I, H) and words per sentence of the tree rows; the smoke run's small forests.
TREE_COUNTS = (25, 256)
TREE_SIZE = (300, 150)
TREE_WORDS = (5, 50)
QUICK_TREE_COUNTS = (3,)
QUICK_TREE_SIZE = (6, 4)
QUICK_TREE_WORDS = (2, 8)


def _uniform(rng: np.random.Generator, shape, bound: float) -> np.ndarray:
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


@dataclass(frozen=True)
class SequenceCase:
    """One layer, one direction of a cell over a sequence: fastrnn.<cell>_forward / _backward."""

    cell: str
    T: int
    B: int
    I: int  # noqa: E741 (the input size, as in the papers)
    H: int
    kind = "sequence"

    @property
    def gates(self) -> int:
        return GATES[self.cell]

    @property
    def shape(self) -> dict:
        return {"T": self.T, "B": self.B, "I": self.I, "H": self.H}

    @property
    def key(self) -> str:
        return f"{self.cell} T={self.T} B={self.B} I={self.I} H={self.H}"

    def flops(self, mode: str) -> float:
        """GEMM FLOPs: forward 2*T*B*(I+H)*G*H, forward+backward three times that."""
        fwd = 2.0 * self.T * self.B * (self.I + self.H) * self.gates * self.H
        return fwd if mode == "forward" else 3.0 * fwd

    def make_inputs(self, rng: np.random.Generator) -> Dict[str, np.ndarray]:
        """x (T, B, I), h0 (B, H), c0 (B, H) for the LSTM, w_ih, w_hh, b_ih, b_hh; float32."""
        g, h, k = self.gates, self.H, 1.0 / np.sqrt(self.H)
        inputs = {
            "x": rng.standard_normal((self.T, self.B, self.I)).astype(np.float32),
            "h0": (0.5 * rng.standard_normal((self.B, h))).astype(np.float32),
            "w_ih": _uniform(rng, (g * h, self.I), k),
            "w_hh": _uniform(rng, (g * h, h), k),
            "b_ih": _uniform(rng, (g * h,), k),
            "b_hh": _uniform(rng, (g * h,), k),
        }
        if self.cell == "lstm":
            inputs["c0"] = (0.5 * rng.standard_normal((self.B, h))).astype(np.float32)
        return inputs


@dataclass(frozen=True)
class StackedLSTMCase:
    """A multi-layer, optionally bidirectional LSTM module: fastrnn.LSTM against torch.nn.LSTM.

    Parameters are a state dict in torch.nn.LSTM's names (weight_ih_l0, ..._reverse).
    """

    T: int
    B: int
    I: int  # noqa: E741
    H: int
    layers: int = 2
    bidirectional: bool = True
    cell = "lstm"
    kind = "stacked"
    gates = 4

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def key(self) -> str:
        bi = " bidirectional" if self.bidirectional else ""
        return f"lstm {self.layers}-layer{bi} T={self.T} B={self.B} I={self.I} H={self.H}"

    @property
    def shape(self) -> dict:
        return {"T": self.T, "B": self.B, "I": self.I, "H": self.H, "layers": self.layers,
                "bidirectional": self.bidirectional}

    def layer_input(self, layer: int) -> int:
        return self.I if layer == 0 else self.directions * self.H

    def param_names(self, layer: int, direction: int):
        sfx = f"l{layer}" + ("_reverse" if direction else "")
        return tuple(f"{p}_{sfx}" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def flops(self, mode: str) -> float:
        fwd = sum(2.0 * self.T * self.B * (self.layer_input(l) + self.H) * 4 * self.H
                  for l in range(self.layers)) * self.directions
        return fwd if mode == "forward" else 3.0 * fwd

    def make_inputs(self, rng: np.random.Generator) -> Dict[str, np.ndarray]:
        """x (T, B, I), h0 and c0 (layers*directions, B, H), and the state dict's arrays.

        The initial states are zeros: fastrnn.LSTM.forward(x, training=...) takes none.
        """
        n, h, k = self.layers * self.directions, self.H, 1.0 / np.sqrt(self.H)
        inputs = {
            "x": rng.standard_normal((self.T, self.B, self.I)).astype(np.float32),
            "h0": np.zeros((n, self.B, h), np.float32),
            "c0": np.zeros((n, self.B, h), np.float32),
        }
        for layer in range(self.layers):
            for d in range(self.directions):
                w_ih, w_hh, b_ih, b_hh = self.param_names(layer, d)
                inputs[w_ih] = _uniform(rng, (4 * h, self.layer_input(layer)), k)
                inputs[w_hh] = _uniform(rng, (4 * h, h), k)
                inputs[b_ih] = _uniform(rng, (4 * h,), k)
                inputs[b_hh] = _uniform(rng, (4 * h,), k)
        return inputs

    def state_dict(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        return {k: v for k, v in inputs.items() if k.startswith(("weight_", "bias_"))}


@dataclass(frozen=True)
class TreeCase:
    """A Tree-LSTM over a seeded forest (bench/forests.py): fastrnn.tree_lstm_forward/_backward.

    tree_childsum: dependency-like trees (0-5 children), Child-Sum, inputs on every node.
    tree_nary: SST-like binarized trees, N-ary with N = 2, inputs on the leaves only (the other
    rows of x are zeros; every backend takes and differentiates the input nodes' rows only).
    Training mode is forward then backward of loss = h.sum() over every node: dh = 1, dc = 0.
    """

    cell: str
    trees: int
    I: int  # noqa: E741
    H: int
    words: Tuple[int, int] = TREE_WORDS
    seed: int = 0
    kind = "tree"

    @property
    def arity(self) -> Optional[int]:
        return None if self.cell == "tree_childsum" else 2

    @cached_property
    def parents(self) -> np.ndarray:
        """(n_nodes,) int64 parent of each node, -1 for a root."""
        kind = "dependency" if self.cell == "tree_childsum" else "binarized"
        return forests.make_forest(kind, self.trees, self.words, self.seed)

    @cached_property
    def heights(self) -> np.ndarray:
        return forests.heights(self.parents)

    @cached_property
    def n_children(self) -> np.ndarray:
        p = self.parents
        return np.bincount(p[p >= 0], minlength=p.shape[0])

    @property
    def n_nodes(self) -> int:
        return int(self.parents.shape[0])

    @property
    def n_levels(self) -> int:
        return int(self.heights.max()) + 1 if self.n_nodes else 0

    @cached_property
    def input_nodes(self) -> np.ndarray:
        """The nodes that have an input row: the leaves (N-ary) or every node (Child-Sum)."""
        if self.arity is None:
            return np.arange(self.n_nodes)
        return np.flatnonzero(self.n_children == 0)

    @property
    def key(self) -> str:
        return (f"{self.cell} trees={self.trees} nodes={self.n_nodes} levels={self.n_levels} "
                f"I={self.I} H={self.H}")

    @property
    def shape(self) -> dict:
        return {"trees": self.trees, "nodes": self.n_nodes, "levels": self.n_levels,
                "input_nodes": int(self.input_nodes.size), "arity": self.arity, "I": self.I,
                "H": self.H, "words": list(self.words), "seed": self.seed}

    def flops(self, mode: str) -> float:
        """GEMM FLOPs of the work the row needs, nothing for zero inputs or absent children:
        Child-Sum forward 2*H*(4*I*n_in + 3*H*n_inner + H*n_edges) (W x on every node, U_iuo on
        the children's sum h~ of every inner node, U_f on every child); N-ary forward
        2*H*(4*I*n_in + H*sum_j k_j*(3+k_j)) (W x on the input nodes, and on a node with k
        children the k*H columns and (3+k)*H rows of U it uses: 10*H^2 per node of a binarized
        tree). Forward + backward is three times that (each product has two of the same size
        in backward)."""
        H, n_in = self.H, self.input_nodes.size
        k = self.n_children
        if self.arity is None:
            hidden = 3 * H * np.count_nonzero(k) + H * int(k.sum())
        else:
            hidden = H * int(np.sum(k * (3 + k)))
        fwd = 2.0 * H * (4 * self.I * n_in + hidden)
        return fwd if mode == "forward" else 3.0 * fwd

    def make_inputs(self, rng: np.random.Generator) -> Dict[str, np.ndarray]:
        """x (n_nodes, I) standard normal on the input nodes, zero elsewhere; w_ih (4H, I),
        w_hh (4H, H) Child-Sum or ((3+N)H, N*H) N-ary, b_ih (4H,), b_hh (4H,) or ((3+N)H,);
        uniform in +-1/sqrt(H); float32."""
        h, k = self.H, 1.0 / np.sqrt(self.H)
        x = np.zeros((self.n_nodes, self.I), np.float32)
        x[self.input_nodes] = rng.standard_normal((self.input_nodes.size, self.I))
        rows, cols = (4 * h, h) if self.arity is None else ((3 + self.arity) * h, self.arity * h)
        return {"x": x, "w_ih": _uniform(rng, (4 * h, self.I), k),
                "w_hh": _uniform(rng, (rows, cols), k), "b_ih": _uniform(rng, (4 * h,), k),
                "b_hh": _uniform(rng, (rows,), k)}


def build_cases(cells, shapes, stacked_shape, trees=(), tree_size=TREE_SIZE,
                tree_words=TREE_WORDS, seed=0) -> list:
    """The suite's cases: every sequence cell at every shape, the stacked LSTM (if a shape is given
    and a sequence cell is asked for), then every tree cell at every forest size."""
    seq = [c for c in cells if c in CELLS]
    cases = [SequenceCase(cell, *shape) for shape in shapes for cell in seq]
    if stacked_shape is not None and seq:
        cases.append(StackedLSTMCase(*stacked_shape))
    cases += [TreeCase(cell, n, *tree_size, words=tuple(tree_words), seed=seed)
              for cell in cells if cell in TREE_CELLS for n in trees]
    return cases
