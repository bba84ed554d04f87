"""Whole recurrent networks as torch.nn.RNN/LSTM/GRU compute them: every layer and both directions
in one call into the compiled stack driver; weights named as torch's state-dict keys.

Shapes: x (T, B, I) time-major, padded; lengths (B,) or None (every sequence T steps);
D = 2 if bidirectional else 1; H the hidden size; S = proj_size if > 0 (LSTM) else H;
h0, h_n (L*D, B, S); c0, c_n (L*D, B, H); y (T, B, D*S). Weights of layer l, direction suffix
"" or "_reverse": weight_ih_l{l} (G*H, I or D*S), weight_hh_l{l} (G*H, S), bias_ih_l{l} and
bias_hh_l{l} (G*H,), weight_hr_l{l} (P, H) with G = 1 (RNN), 4 (LSTM, i f g o), 3 (GRU, r z n).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import numpy as np

from . import _C
from . import cuda as _gpu
from ._checks import as_float_array, check_shape, contiguous
from .functional import GATES

__all__ = ["StackGrads", "StackResult", "stack_backward", "stack_forward", "weight_shapes"]


@dataclass
class StackResult:
    """Output of stack_forward: y (T, B, D*S), zeros past each length; h_n (L*D, B, S), each
    sequence's state at its last valid step; c_n (L*D, B, H) for the LSTM, else None.
    ``training`` says whether stack_backward can be run on it."""

    y: np.ndarray
    h_n: np.ndarray
    c_n: Optional[np.ndarray] = None
    training: bool = True
    _ctx: Any = field(default=None, repr=False)


@dataclass
class StackGrads:
    """Output of stack_backward: dx (T, B, I), zeros past each length; dh0 (L*D, B, S);
    dc0 (L*D, B, H) for the LSTM, else None; grads: parameter name -> gradient, shaped as the
    weight (torch's state-dict names)."""

    dx: np.ndarray
    dh0: np.ndarray
    dc0: Optional[np.ndarray]
    grads: dict


@dataclass
class _Context:
    cell: str
    dtype: np.dtype
    names: list  # flat, five per layer and direction: w_ih, w_hh, b_ih, b_hh, w_hr; None absent
    y_shape: tuple
    h_shape: tuple
    c_shape: Optional[tuple]
    stack: Any  # the compiled module's state


def _suffixes(bidirectional: bool) -> list:
    return ["", "_reverse"] if bidirectional else [""]


def weight_shapes(cell: str, input_size: int, hidden_size: int, *, num_layers: int,
                  bidirectional: bool, bias: bool = True, proj_size: int = 0) -> dict:
    """Parameter name -> shape, in torch's order (layer, direction, then w_ih w_hh b_ih b_hh w_hr)."""
    g = GATES[cell] * hidden_size
    d = 2 if bidirectional else 1
    s = proj_size if proj_size > 0 else hidden_size
    shapes = {}
    for layer in range(num_layers):
        inp = input_size if layer == 0 else d * s
        for suffix in _suffixes(bidirectional):
            key = f"_l{layer}{suffix}"
            shapes["weight_ih" + key] = (g, inp)
            shapes["weight_hh" + key] = (g, s)
            if bias:
                shapes["bias_ih" + key] = (g,)
                shapes["bias_hh" + key] = (g,)
            if proj_size > 0:
                shapes["weight_hr" + key] = (proj_size, hidden_size)
    return shapes


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_lengths(lengths: Any, steps: int, batch: int) -> Optional[np.ndarray]:
    if lengths is None:
        return None
    arr = np.asarray(lengths)
    if arr.dtype == bool or arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers, got dtype {arr.dtype}")
    check_shape("lengths", arr, (batch,), f"(B,) = ({batch},)")
    if arr.min() < 1 or arr.max() > steps:
        raise ValueError(f"lengths must lie in [1, T] = [1, {steps}], got values from "
                         f"{arr.min()} to {arr.max()}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _check_dropout(dropout: Any) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout <= 1:
        raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
    return float(dropout)


def _check_seed(seed: Any) -> int:
    if seed is None:
        return int(np.random.default_rng().integers(2**63))
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be None or an int in [0, 2**64), got {seed!r}")
    return int(seed)


def _check_weights(cell: str, weights: Any, input_size: int, num_layers: int, bidirectional: bool,
                   proj_size: int, take: Callable[[str, Any], Any] = as_float_array) -> tuple:
    """(hidden size, bias, {name: array}) of a checked weight mapping; take(name, value) turns each
    value into an array (host arrays here, GPU arrays for the CUDA path)."""
    if not isinstance(weights, Mapping):
        raise TypeError(f"weights must be a mapping from torch's parameter names to arrays, got "
                        f"{type(weights).__name__}")
    g = GATES[cell]
    if "weight_hh_l0" not in weights:
        raise ValueError("weights has no 'weight_hh_l0'")
    w_hh = take("weights['weight_hh_l0']", weights["weight_hh_l0"])
    if w_hh.ndim != 2 or w_hh.shape[0] < g or w_hh.shape[0] % g:
        raise ValueError(f"weights['weight_hh_l0'] must have shape ({g}*H, S), got "
                         f"{tuple(w_hh.shape)}")
    hidden = w_hh.shape[0] // g
    if proj_size >= hidden:
        raise ValueError(f"proj_size must be smaller than the hidden size H = {hidden}, got "
                         f"{proj_size}")
    bias = "bias_ih_l0" in weights
    expected = weight_shapes(cell, input_size, hidden, num_layers=num_layers,
                             bidirectional=bidirectional, bias=bias, proj_size=proj_size)
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    if missing or unexpected:
        raise ValueError(f"weights do not fit a {num_layers}-layer "
                         f"{'bidirectional ' if bidirectional else ''}{cell} with "
                         f"{'' if bias else 'no '}bias and proj_size {proj_size}: missing "
                         f"{missing}, unexpected {unexpected}")
    arrays = {}
    for name, shape in expected.items():
        arr = take(f"weights['{name}']", weights[name])
        check_shape(f"weights['{name}']", arr, shape, f"{_symbols(name)} = {shape}")
        arrays[name] = arr
    return hidden, bias, arrays


def _symbols(name: str) -> str:
    """The shape of a parameter in symbols, for error messages."""
    if name.startswith("weight_ih"):
        return "(G*H, I)" if name.startswith("weight_ih_l0") else "(G*H, D*S)"
    return {"weight_hh": "(G*H, S)", "bias_ih": "(G*H,)", "bias_hh": "(G*H,)",
            "weight_hr": "(P, H)"}[name[:name.index("_l")]]


def stack_forward(cell: str, x: Any, h0: Any = None, c0: Any = None,
                  weights: Optional[Mapping[str, Any]] = None, *, num_layers: int,
                  bidirectional: bool, proj_size: int = 0, lengths: Any = None,
                  dropout: float = 0.0, seed: Optional[int] = None,
                  training: bool = True) -> StackResult:
    """A torch.nn.RNN/LSTM/GRU network over padded, time-major sequences.

    cell: "rnn_tanh", "rnn_relu", "lstm" or "gru". x: (T, B, I); h0: (L*D, B, S) or None for
    zeros; c0: (L*D, B, H) or None (LSTM only); weights: torch's state-dict names to arrays (no
    bias_* keys: no biases); lengths: (B,) ints in [1, T], any order, or None. Steps past a
    sequence's length do no work; the reverse direction starts at each sequence's last step.
    dropout applies to each layer's output but the last's, in training only; seed fixes its masks
    (None: a random seed). training=False keeps nothing for backward. Returns a StackResult with
    y (T, B, D*S), h_n (L*D, B, S), c_n (L*D, B, H) or None.

    GPU arrays (x, h0, c0 and the weights on one CUDA device; see fastrnn.cuda) run on the GPU
    and come back as arrays of x's kind, with the CPU path's dropout masks for the same seed;
    lengths stay on the host. float16 and bfloat16 are accepted there too.
    """
    if cell not in GATES:
        raise ValueError(f"cell must be one of {sorted(GATES)}, got {cell!r}")
    num_layers = _check_int("num_layers", num_layers, 1)
    if not isinstance(bidirectional, (bool, np.bool_)):
        raise TypeError(f"bidirectional must be a bool, got {type(bidirectional).__name__}")
    proj_size = _check_int("proj_size", proj_size, 0)
    if proj_size > 0 and cell != "lstm":
        raise ValueError(f"proj_size is only supported by the LSTM, got proj_size={proj_size} "
                         f"for {cell}")
    dropout = _check_dropout(dropout)
    seed = _check_seed(seed)
    if _gpu.is_gpu_array(x):  # GPU arrays run on the GPU, results of the caller's kind
        from ._cuda_stack import stack_forward as gpu_forward

        return gpu_forward(cell, x, h0, c0, weights, num_layers=num_layers,
                           bidirectional=bool(bidirectional), proj_size=proj_size, lengths=lengths,
                           dropout=dropout, seed=seed, training=training)
    x = as_float_array("x", x)
    if x.ndim != 3 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must have shape (T, B, I) with T, B >= 1, got {tuple(x.shape)}")
    steps, batch, inp = x.shape
    if weights is None:
        raise TypeError("stack_forward needs weights: a mapping of torch's parameter names")
    hidden, bias, w = _check_weights(cell, weights, inp, num_layers, bool(bidirectional), proj_size)
    if cell != "lstm" and c0 is not None:
        raise ValueError("c0 is only used by the LSTM")
    h0 = None if h0 is None else as_float_array("h0", h0)
    c0 = None if c0 is None else as_float_array("c0", c0)
    dtype = x.dtype
    for name, arr in [("h0", h0), ("c0", c0)] + [(f"weights['{k}']", v) for k, v in w.items()]:
        if arr is not None and arr.dtype != dtype:
            raise TypeError(f"{name} must have the dtype of x, {dtype}, got {arr.dtype}")
    d = 2 if bidirectional else 1
    s = proj_size if proj_size > 0 else hidden
    ld = num_layers * d
    if h0 is not None:
        check_shape("h0", h0, (ld, batch, s), f"(L*D, B, S) = ({ld}, {batch}, {s})")
    if c0 is not None:
        check_shape("c0", c0, (ld, batch, hidden), f"(L*D, B, H) = ({ld}, {batch}, {hidden})")
    lengths = _check_lengths(lengths, steps, batch)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be a bool, got {type(training).__name__}")

    names = []
    for layer in range(num_layers):
        for suffix in _suffixes(bool(bidirectional)):
            key = f"_l{layer}{suffix}"
            names += ["weight_ih" + key, "weight_hh" + key, "bias_ih" + key if bias else None,
                      "bias_hh" + key if bias else None, "weight_hr" + key if proj_size else None]
    flat = [None if n is None else contiguous(w[n]) for n in names]
    y, h_n, c_n, stack = _C.stack_forward(
        cell, contiguous(x), contiguous(h0), contiguous(c0), flat, hidden, num_layers, d,
        proj_size, lengths, dropout, seed, bool(training))
    ctx = None
    if training:
        ctx = _Context(cell, dtype, names, y.shape, h_n.shape,
                       None if c_n is None else c_n.shape, stack)
    return StackResult(y=y, h_n=h_n, c_n=c_n, training=bool(training), _ctx=ctx)


def _grad_arg(name: str, value: Any, shape: tuple, dtype: np.dtype) -> Optional[np.ndarray]:
    if value is None:
        return None
    arr = as_float_array(name, value)
    if arr.dtype != dtype:
        raise TypeError(f"{name} must have the forward's dtype {dtype}, got {arr.dtype}")
    check_shape(name, arr, shape, str(shape))
    return contiguous(arr)


def stack_backward(result: StackResult, dy: Any, dh_n: Any = None,
                   dc_n: Any = None) -> StackGrads:
    """Backward of stack_forward(..., training=True).

    dy: (T, B, D*S) gradient on y (values past each length are ignored), or None; dh_n:
    (L*D, B, S) or None; dc_n: (L*D, B, H) or None (LSTM only). Returns StackGrads with
    dx (T, B, I), dh0, dc0 (LSTM, else None) and grads, a dict keyed by torch's parameter names.
    The weights passed to the forward must not have been changed in place since. For a GPU
    forward, dy, dh_n and dc_n are GPU arrays and the weight gradients come back in float32
    (float64 for float64).
    """
    if not isinstance(result, StackResult):
        raise TypeError(f"result must be the StackResult of stack_forward, got "
                        f"{type(result).__name__}")
    if result._ctx is None:
        raise ValueError("stack_backward needs a result of stack_forward(..., training=True); this "
                         "one was made with training=False and kept nothing for backward")
    ctx = result._ctx
    if not isinstance(ctx, _Context):  # a forward on the GPU
        from ._cuda_stack import stack_backward as gpu_backward

        return gpu_backward(result, dy, dh_n, dc_n)
    if ctx.c_shape is None and dc_n is not None:
        raise ValueError("dc_n is only used by the LSTM")
    dy = _grad_arg("dy", dy, ctx.y_shape, ctx.dtype)
    dh_n = _grad_arg("dh_n", dh_n, ctx.h_shape, ctx.dtype)
    dc_n = _grad_arg("dc_n", dc_n, ctx.c_shape, ctx.dtype)
    dx, dh0, dc0, flat = _C.stack_backward(ctx.stack, dy, dh_n, dc_n)
    grads = {name: g for name, g in zip(ctx.names, flat) if name is not None}  # torch's order
    return StackGrads(dx=dx, dh0=dh0, dc0=dc0, grads=grads)
