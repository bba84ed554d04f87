"""The fused sequence kernels as functions: check the arguments, make them contiguous, one call
into the compiled module, wrap the arrays it returns.

Shapes: x (T, B, I); h0, c0 (B, H); w_ih (G*H, I); w_hh (G*H, H); b_ih, b_hh (G*H,), with G = 1
(RNN), 4 (LSTM, gates i, f, g, o) or 3 (GRU, gates r, z, n), PyTorch's layout.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np

from . import _C
from . import cuda as _gpu
from ._checks import as_float_array, check_shape, common_dtype, contiguous
from ._results import SequenceGrads, SequenceResult

__all__ = [
    "rnn_forward",
    "rnn_backward",
    "lstm_forward",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
    "set_num_threads",
    "get_num_threads",
    "release_memory",
]

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
_GATE_SYMBOL = {1: "H", 3: "3*H", 4: "4*H"}


class Layer(NamedTuple):
    """Checked, contiguous arguments of one layer call (what backward needs again)."""

    cell: str
    x: np.ndarray  # (T, B, I)
    h0: Optional[np.ndarray]
    c0: Optional[np.ndarray]
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: Optional[np.ndarray]
    b_hh: Optional[np.ndarray]

    @property
    def steps(self) -> int:
        return self.x.shape[0]

    @property
    def batch(self) -> int:
        return self.x.shape[1]

    @property
    def hidden(self) -> int:
        return self.w_hh.shape[1]


def check_layer_args(cell: str, x: Any, h0: Any, c0: Any, w_ih: Any, w_hh: Any, b_ih: Any,
                     b_hh: Any) -> Layer:
    """Validate one layer's arguments; raise TypeError/ValueError naming the argument."""
    g = GATES[cell]
    gs = _GATE_SYMBOL[g]
    x = as_float_array("x", x)
    w_ih = as_float_array("w_ih", w_ih)
    w_hh = as_float_array("w_hh", w_hh)
    opt = {name: None if v is None else as_float_array(name, v)
           for name, v in (("h0", h0), ("c0", c0), ("b_ih", b_ih), ("b_hh", b_hh))}
    common_dtype({"x": x, "w_ih": w_ih, "w_hh": w_hh, **opt})

    if x.ndim != 3:
        raise ValueError(f"x must have shape (T, B, I), got {tuple(x.shape)}")
    steps, batch, inp = x.shape
    if inp < 1:
        raise ValueError(f"x must have shape (T, B, I) with I >= 1, got {tuple(x.shape)}")
    if w_hh.ndim != 2 or w_hh.shape[1] < 1:
        raise ValueError(f"w_hh must have shape ({gs}, H), got {tuple(w_hh.shape)}")
    hidden = w_hh.shape[1]
    check_shape("w_hh", w_hh, (g * hidden, hidden), f"({gs}, H) = ({g * hidden}, {hidden})")
    check_shape("w_ih", w_ih, (g * hidden, inp), f"({gs}, I) = ({g * hidden}, {inp})")
    if (opt["b_ih"] is None) != (opt["b_hh"] is None):
        raise ValueError("b_ih and b_hh must both be arrays or both be None")
    for name in ("b_ih", "b_hh"):
        if opt[name] is not None:
            check_shape(name, opt[name], (g * hidden,), f"({gs},) = ({g * hidden},)")
    for name in ("h0", "c0"):
        if opt[name] is not None:
            check_shape(name, opt[name], (batch, hidden), f"(B, H) = ({batch}, {hidden})")
    if cell != "lstm" and opt["c0"] is not None:
        raise ValueError("c0 is only used by the LSTM")
    return Layer(cell, contiguous(x), contiguous(opt["h0"]), contiguous(opt["c0"]),
                 contiguous(w_ih), contiguous(w_hh), contiguous(opt["b_ih"]),
                 contiguous(opt["b_hh"]))


def _forward(layer: Layer, training: bool) -> SequenceResult:
    t, b, i = layer.x.shape
    y, h_n, c_n, saved = _C.layer_forward(
        layer.cell, t, b, layer.x.reshape(t * b, i), layer.h0, layer.c0, layer.w_ih, layer.w_hh,
        layer.b_ih, layer.b_hh, None, None, bool(training))
    y = y.reshape(t, b, layer.hidden)
    if training:
        y.flags.writeable = False  # backward reads it as every step's h_prev
    return SequenceResult(y=y, h_n=h_n, c_n=c_n, training=bool(training),
                          _ctx=(layer, saved) if training else None)


def _run_forward(cell: str, training: bool, x: Any, h0: Any, c0: Any, w_ih: Any, w_hh: Any,
                 b_ih: Any, b_hh: Any) -> SequenceResult:
    if _gpu.is_gpu_array(x):  # GPU arrays run on the GPU (fastrnn.cuda)
        return _gpu.layer_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, training=training)
    return _forward(check_layer_args(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh), training)


def family(cell: str) -> str:
    """The public name of a cell kind: rnn, lstm or gru."""
    return "rnn" if cell.startswith("rnn") else cell


def _backward(name: str, result: Any, dy: Any, dh_n: Any, dc_n: Any) -> SequenceGrads:
    # _ctx is (Layer, saved) for kernel results; the reference's results keep a dict there
    if not isinstance(result, SequenceResult) or not isinstance(result._ctx, tuple):
        if isinstance(result, SequenceResult) and not result.training:
            raise ValueError(f"{name}_backward needs a result of {name}_forward(..., training=True); "
                             "this one was made with training=False and kept nothing for backward")
        raise TypeError(f"result must be the SequenceResult of {name}_forward(..., training=True)")
    gpu = isinstance(result._ctx, _gpu.GpuContext)
    cell = result._ctx.cell if gpu else result._ctx[0].cell
    if family(cell) != name:
        raise TypeError(f"result comes from {family(cell)}_forward, not from {name}_forward")
    if gpu:
        return _gpu.layer_backward(result, dy, dh_n, dc_n)
    layer, saved = result._ctx
    t, b, h = layer.steps, layer.batch, layer.hidden
    dtype = layer.x.dtype
    grads = {}
    for arg, value, shape, what in (("dy", dy, (t, b, h), f"(T, B, H) = ({t}, {b}, {h})"),
                                    ("dh_n", dh_n, (b, h), f"(B, H) = ({b}, {h})"),
                                    ("dc_n", dc_n, (b, h), f"(B, H) = ({b}, {h})")):
        if value is None:
            grads[arg] = None
            continue
        arr = as_float_array(arg, value)
        if arr.dtype != dtype:
            raise TypeError(f"{arg} must have the forward's dtype {dtype}, got {arr.dtype}")
        check_shape(arg, arr, shape, what)
        grads[arg] = contiguous(arr)
    dy2 = None if grads["dy"] is None else grads["dy"].reshape(t * b, h)
    dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, _ = _C.layer_backward(
        layer.cell, t, b, layer.x.reshape(t * b, layer.x.shape[2]), layer.h0, layer.c0, layer.w_ih,
        layer.w_hh, layer.b_ih, layer.b_hh, None, None, result.y.reshape(t * b, h), saved, dy2,
        grads["dh_n"], grads["dc_n"])
    return SequenceGrads(dx=dx.reshape(layer.x.shape), dh0=dh0, dw_ih=dw_ih, dw_hh=dw_hh,
                         db_ih=db_ih, db_hh=db_hh, dc0=dc0)


def _rnn_cell(nonlinearity: Any) -> str:
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return "rnn_" + nonlinearity


def rnn_forward(x: Any, h0: Any, w_ih: Any, w_hh: Any, b_ih: Any = None, b_hh: Any = None, *,
                nonlinearity: str = "tanh", training: bool = True) -> SequenceResult:
    """Elman RNN over a sequence: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).

    x: (T, B, I); h0: (B, H) or None for zeros; w_ih: (H, I); w_hh: (H, H); b_ih, b_hh: (H,) or
    None. Returns a SequenceResult with y (T, B, H) and h_n (B, H). With training=False nothing is
    kept for backward.
    """
    cell = _rnn_cell(nonlinearity)
    return _run_forward(cell, training, x, h0, None, w_ih, w_hh, b_ih, b_hh)


def lstm_forward(x: Any, h0: Any, c0: Any, w_ih: Any, w_hh: Any, b_ih: Any = None,
                 b_hh: Any = None, *, training: bool = True) -> SequenceResult:
    """LSTM over a sequence, gates i, f, g, o as in torch.nn.LSTM.

    x: (T, B, I); h0, c0: (B, H) or None for zeros; w_ih: (4H, I); w_hh: (4H, H); b_ih, b_hh:
    (4H,) or None. Returns a SequenceResult with y (T, B, H), h_n and c_n (B, H).
    """
    return _run_forward("lstm", training, x, h0, c0, w_ih, w_hh, b_ih, b_hh)


def gru_forward(x: Any, h0: Any, w_ih: Any, w_hh: Any, b_ih: Any = None, b_hh: Any = None, *,
                training: bool = True) -> SequenceResult:
    """GRU over a sequence, gates r, z, n as in torch.nn.GRU (b_hn inside r * (W_hn h + b_hn)).

    x: (T, B, I); h0: (B, H) or None for zeros; w_ih: (3H, I); w_hh: (3H, H); b_ih, b_hh: (3H,)
    or None. Returns a SequenceResult with y (T, B, H) and h_n (B, H).
    """
    return _run_forward("gru", training, x, h0, None, w_ih, w_hh, b_ih, b_hh)


def rnn_backward(result: SequenceResult, dy: Any, dh_n: Any = None) -> SequenceGrads:
    """Backward through time of rnn_forward(..., training=True).

    dy: (T, B, H) gradient on y, or None; dh_n: (B, H) gradient on h_n, or None. Returns
    SequenceGrads with dx (T, B, I), dh0 (B, H), dw_ih, dw_hh, db_ih, db_hh (None without bias).
    """
    return _backward("rnn", result, dy, dh_n, None)


def lstm_backward(result: SequenceResult, dy: Any, dh_n: Any = None,
                  dc_n: Any = None) -> SequenceGrads:
    """Backward through time of lstm_forward(..., training=True).

    dy: (T, B, H) or None; dh_n, dc_n: (B, H) or None. Returns SequenceGrads with dx (T, B, I),
    dh0, dc0 (B, H), dw_ih (4H, I), dw_hh (4H, H), db_ih, db_hh (4H,) (None without bias).
    """
    return _backward("lstm", result, dy, dh_n, dc_n)


def gru_backward(result: SequenceResult, dy: Any, dh_n: Any = None) -> SequenceGrads:
    """Backward through time of gru_forward(..., training=True).

    dy: (T, B, H) or None; dh_n: (B, H) or None. Returns SequenceGrads with dx (T, B, I),
    dh0 (B, H), dw_ih (3H, I), dw_hh (3H, H), db_ih, db_hh (3H,) (None without bias).
    """
    return _backward("gru", result, dy, dh_n, None)


def set_num_threads(n: int) -> None:
    """Threads used by the kernels and by the BLAS they call (n >= 1)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    _C.set_num_threads(int(n))


def get_num_threads() -> int:
    """Threads used by the kernels (by default the CPUs this process may run on)."""
    return _C.get_num_threads()


def release_memory() -> None:
    """Free the scratch memory and packed weights the CPU kernels keep between calls.

    Large scratch blocks (gradient buffers, work arrays, and the memory of large returned arrays
    once they die) and the weights repacked for the kernels (recognised again by their
    contents) are kept for the next call, each up to
    FASTRNN_SCRATCH_MB MiB (default 256; 0 keeps none); this hands them back to the system.
    """
    _C.release_scratch()
