"""Shared helpers of the test suite: random problems for each cell, one call of forward and
backward for the kernels or the NumPy reference, the tolerance check, and fixtures that run a
test on every instruction set and with 1 and 2 threads."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pytest

import fastrnn
from fastrnn import _C

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
DTYPES = (np.float64, np.float32)
ISAS = tuple(_C.isa_supported().split(","))

# (T, B, I, H): ones, odd sizes, a single step, no steps, sizes that leave a SIMD tail for every
# vector width, and enough rows that inference mode splits the input projection into chunks.
SHAPES = (
    (1, 1, 1, 1),
    (3, 1, 4, 5),
    (5, 2, 1, 3),
    (4, 3, 7, 1),
    (1, 6, 2, 9),
    (0, 2, 3, 4),
    (7, 5, 11, 13),
    (2, 9, 17, 33),
    (20, 64, 5, 7),
)

# Relative tolerance of the kernels against the float64 reference, and the absolute part as a
# fraction of the largest expected value (for elements that cross zero).
RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}
ATOL_SCALE = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-6}

OUTPUTS = ("y", "h_n", "c_n")
GRADS = ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh")


def family(cell: str) -> str:
    return "rnn" if cell.startswith("rnn") else cell


@dataclass
class Problem:
    """The arguments of one forward and backward call of a cell (None where left out)."""

    cell: str
    x: np.ndarray
    h0: Optional[np.ndarray]
    c0: Optional[np.ndarray]
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: Optional[np.ndarray]
    b_hh: Optional[np.ndarray]
    dy: Optional[np.ndarray]
    dh_n: Optional[np.ndarray]
    dc_n: Optional[np.ndarray]

    ARRAYS = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "dy", "dh_n", "dc_n")
    INPUTS = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")

    @property
    def family(self) -> str:
        return family(self.cell)

    def arrays(self) -> dict[str, np.ndarray]:
        return {n: getattr(self, n) for n in self.ARRAYS if getattr(self, n) is not None}

    def replace(self, **changes: Any) -> "Problem":
        return dataclasses.replace(self, **changes)

    def astype(self, dtype: Any) -> "Problem":
        return self.replace(**{n: a.astype(dtype) for n, a in self.arrays().items()})

    def copy(self) -> "Problem":
        return self.replace(**{n: a.copy() for n, a in self.arrays().items()})

    def forward(self, module: Any = fastrnn, training: bool = True) -> fastrnn.SequenceResult:
        """rnn/lstm/gru_forward of `module` (fastrnn or fastrnn.reference) on these arguments."""
        w = (self.w_ih, self.w_hh, self.b_ih, self.b_hh)
        if self.family == "lstm":
            return module.lstm_forward(self.x, self.h0, self.c0, *w, training=training)
        if self.family == "gru":
            return module.gru_forward(self.x, self.h0, *w, training=training)
        return module.rnn_forward(self.x, self.h0, *w, nonlinearity=self.cell[4:],
                                  training=training)

    def backward(self, result: fastrnn.SequenceResult,
                 module: Any = fastrnn) -> fastrnn.SequenceGrads:
        if self.family == "lstm":
            return module.lstm_backward(result, self.dy, self.dh_n, self.dc_n)
        if self.family == "gru":
            return module.gru_backward(result, self.dy, self.dh_n)
        return module.rnn_backward(result, self.dy, self.dh_n)


def make_problem(rng: np.random.Generator, cell: str, steps: int, batch: int, inp: int,
                 hidden: int, dtype: Any = np.float64, *, bias: bool = True, h0: bool = True,
                 c0: bool = True, dy: bool = True, dh_n: bool = True,
                 dc_n: bool = True) -> Problem:
    """Random arguments at the scale of torch's initialisation (weights U(-1/sqrt(H), 1/sqrt(H)),
    so that gates are neither saturated nor linear). c0 and dc_n only for the LSTM."""
    g = GATES[cell]
    k = 1.0 / np.sqrt(hidden)
    lstm = family(cell) == "lstm"

    def normal(*shape: int, scale: float = 1.0) -> np.ndarray:
        return (scale * rng.standard_normal(shape)).astype(dtype)

    def uniform(*shape: int) -> np.ndarray:
        return rng.uniform(-k, k, shape).astype(dtype)

    return Problem(
        cell=cell,
        x=normal(steps, batch, inp),
        h0=normal(batch, hidden, scale=0.5) if h0 else None,
        c0=normal(batch, hidden, scale=0.5) if c0 and lstm else None,
        w_ih=uniform(g * hidden, inp),
        w_hh=uniform(g * hidden, hidden),
        b_ih=uniform(g * hidden) if bias else None,
        b_hh=uniform(g * hidden) if bias else None,
        dy=normal(steps, batch, hidden) if dy else None,
        dh_n=normal(batch, hidden) if dh_n else None,
        dc_n=normal(batch, hidden) if dc_n and lstm else None,
    )


def assert_close(actual: Optional[np.ndarray], expected: Optional[np.ndarray], dtype: Any,
                 name: str = "") -> None:
    """actual (computed in `dtype`) against the float64 reference: rtol 1e-10 (float64) or 1e-5
    (float32), atol a small fraction of the largest expected magnitude. NaN must match NaN."""
    if expected is None:
        assert actual is None, f"{name}: expected None, got an array"
        return
    assert actual is not None, f"{name}: expected an array, got None"
    dtype = np.dtype(dtype)
    assert actual.dtype == dtype, f"{name}: dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    finite = np.abs(expected[np.isfinite(expected)])
    scale = finite.max() if finite.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype],
                               atol=ATOL_SCALE[dtype] * scale, err_msg=name)


def assert_results_close(actual: Any, expected: Any, dtype: Any, fields: tuple) -> None:
    for name in fields:
        assert_close(getattr(actual, name), getattr(expected, name), dtype, name)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator seeded from the test's id, so that every test case has its own fixed data."""
    seed = int.from_bytes(request.node.nodeid.encode(), "little") % (2**63)
    return np.random.default_rng(seed)


@pytest.fixture(params=ISAS)
def isa(request: pytest.FixtureRequest):
    """Runs the test once per instruction set this machine supports; restores 'auto' after."""
    _C.set_isa(request.param)
    try:
        yield request.param
    finally:
        _C.set_isa("auto")


@pytest.fixture(params=(1, 2), ids=("threads1", "threads2"))
def num_threads(request: pytest.FixtureRequest):
    """Runs the test with 1 and with 2 kernel threads; restores the previous setting after."""
    before = fastrnn.get_num_threads()
    fastrnn.set_num_threads(request.param)
    try:
        yield request.param
    finally:
        fastrnn.set_num_threads(before)
