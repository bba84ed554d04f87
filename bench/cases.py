"""What the suite measures: the cases (a cell at a shape), their inputs and their FLOP counts.

A case kind is a small class with `key`, `make_inputs(rng)` and `flops(mode)`; peers say per case
whether they support it (`supports(case, mode)`). A new kind of row (a Tree-LSTM over a forest,
say) is a new class here, a `reference_*` function in peers/reference_peer.py, and a branch in
the peers that can run it; the timer, the check, the table and the plot do not change.

Inputs follow PyTorch: x (T, B, I); h0, c0 (layers*directions, B, H) for modules, (B, H) for one
layer; weights (G*H, I) and (G*H, H), uniform in +-1/sqrt(H), gate order of torch.nn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import numpy as np

MODES = ("forward", "train")  # forward: inference; train: forward + backward
MODE_TITLES = {"forward": "forward", "train": "fwd+bwd"}
CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}

# (T, B, I, H) of the grid, and the small shapes of the CI smoke run.
SHAPES = ((100, 1, 128, 128), (1000, 1, 64, 64), (100, 16, 256, 256), (50, 64, 512, 512),
          (20, 256, 1024, 1024))
STACKED_SHAPE = (100, 16, 256, 256)
QUICK_SHAPES = ((6, 3, 8, 5),)
QUICK_STACKED_SHAPE = (5, 2, 6, 4)


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


def build_cases(cells, shapes, stacked_shape) -> list:
    """The suite's cases: every cell at every shape, then the stacked LSTM (if a shape is given)."""
    cases = [SequenceCase(cell, *shape) for shape in shapes for cell in cells]
    if stacked_shape is not None:
        cases.append(StackedLSTMCase(*stacked_shape))
    return cases
