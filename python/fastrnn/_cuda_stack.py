"""Whole networks on the GPU: what fastrnn.layers.stack_forward/stack_backward run for GPU arrays
(torch CUDA tensors, CuPy arrays, anything with ``__cuda_array_interface__`` or a CUDA
``__dlpack__``). One call into fastrnn._cuda runs every layer and direction (csrc/cuda/stack.h);
results are arrays of the caller's kind on its device, computed on its current stream.

Shapes as in fastrnn.layers. dtypes: float32, float64, float16, bfloat16; the 16-bit types compute
in float32, and every weight gradient is float32 (float64 for float64 inputs), as in fastrnn.cuda.
Dropout masks are those of the CPU path for the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

from . import cuda
from ._checks import check_shape
from .layers import (StackGrads, StackResult, _check_lengths, _check_weights, _suffixes)

__all__ = ["stack_forward", "stack_backward"]

_PARTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


@dataclass
class GpuStackContext:
    """What stack_backward needs of a training forward on the GPU."""

    lib: Any
    device: int
    dtype: str
    cell: str
    names: list  # flat, five per layer and direction; None where absent
    shapes: dict  # parameter name -> shape
    y_shape: tuple
    h_shape: tuple
    c_shape: Optional[tuple]
    x_shape: tuple
    keep: list  # x and the weights: the device state points into them
    state: Any  # fastrnn._cuda.StackState


def _names(num_layers: int, bidirectional: bool, bias: bool, proj_size: int) -> list:
    names = []
    for layer in range(num_layers):
        for suffix in _suffixes(bidirectional):
            key = f"_l{layer}{suffix}"
            names += [p + key if (bias or not p.startswith("bias")) and
                      (proj_size or p != "weight_hr") else None for p in _PARTS]
    return names


def stack_forward(cell: str, x: Any, h0: Any, c0: Any, weights: Optional[Mapping[str, Any]], *,
                  num_layers: int, bidirectional: bool, proj_size: int, lengths: Any,
                  dropout: float, seed: int, training: Any) -> StackResult:
    """fastrnn.layers.stack_forward for GPU arrays; the options are checked already, but for
    training and lengths. x: (T, B, I); h0 (L*D, B, S), c0 (L*D, B, H) or None; weights: torch's
    state-dict names to GPU arrays; lengths: (B,) host integers or None."""
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be a bool, got {type(training).__name__}")
    module = cuda._require()
    args = cuda._Args(cuda._library_of(x))
    x = args.take("x", x)
    if x.ndim != 3 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must have shape (T, B, I) with T, B >= 1, got {tuple(x.shape)}")
    steps, batch, inp = x.shape
    if weights is None:
        raise TypeError("stack_forward needs weights: a mapping of torch's parameter names")
    hidden, bias, w = _check_weights(cell, weights, inp, num_layers, bidirectional, proj_size,
                                     take=args.take)
    if cell != "lstm" and c0 is not None:
        raise ValueError("c0 is only used by the LSTM")
    d = 2 if bidirectional else 1
    s = proj_size if proj_size > 0 else hidden
    ld = num_layers * d
    h0, c0 = args.take("h0", h0), args.take("c0", c0)
    if h0 is not None:
        check_shape("h0", h0, (ld, batch, s), f"(L*D, B, S) = ({ld}, {batch}, {s})")
    if c0 is not None:
        check_shape("c0", c0, (ld, batch, hidden), f"(L*D, B, H) = ({ld}, {batch}, {hidden})")
    if cuda.is_gpu_array(lengths):
        raise TypeError("lengths must be on the host (a list, NumPy array or CPU tensor), as "
                        "torch's pack_padded_sequence wants them; got a GPU array")
    lengths = _check_lengths(lengths, steps, batch)

    lib, dev, dt = args.lib, args.device, args.dtype
    y = lib.empty((steps, batch, d * s), dt, dev)
    h_n = lib.empty((ld, batch, s), dt, dev)
    c_n = lib.empty((ld, batch, hidden), dt, dev) if cell == "lstm" else None
    names = _names(num_layers, bidirectional, bias, proj_size)
    ptrs = {k: lib.pointer(v) for k, v in
            (("x", x), ("h0", h0), ("c0", c0), ("y", y), ("h_n", h_n), ("c_n", c_n))
            if v is not None}
    flat = [0 if n is None else lib.pointer(w[n]) for n in names]
    state = module.stack_forward(dt, cell, steps, batch, inp, hidden, proj_size, num_layers, d,
                                 lengths, dropout, seed, bool(training), ptrs, flat, dev,
                                 lib.stream(dev))
    ctx = None
    if training:
        ctx = GpuStackContext(lib, dev, dt, cell, names, {n: tuple(a.shape) for n, a in w.items()},
                              tuple(y.shape), tuple(h_n.shape),
                              None if c_n is None else tuple(c_n.shape), tuple(x.shape),
                              [x] + list(w.values()), state)
    return StackResult(y=y, h_n=h_n, c_n=c_n, training=bool(training), _ctx=ctx)


def stack_backward(result: StackResult, dy: Any, dh_n: Any = None, dc_n: Any = None) -> StackGrads:
    """fastrnn.layers.stack_backward of a GPU forward. dy (T, B, D*S), dh_n (L*D, B, S), dc_n
    (L*D, B, H): GPU arrays of the forward's dtype and device, or None. Returns StackGrads of
    arrays of the forward's kind; the weight gradients in float32 (float64 for float64)."""
    ctx = result._ctx
    if not isinstance(ctx, GpuStackContext):
        raise TypeError("result must be the StackResult of stack_forward(..., training=True)")
    if ctx.c_shape is None and dc_n is not None:
        raise ValueError("dc_n is only used by the LSTM")
    module = cuda._require()
    args = cuda._Args(ctx.lib)
    args.first, args.dtype, args.device = "the forward's arrays", ctx.dtype, ctx.device
    ptrs = {}
    for name, value, shape in (("dy", dy, ctx.y_shape), ("dh_n", dh_n, ctx.h_shape),
                               ("dc_n", dc_n, ctx.c_shape)):
        arr = args.take(name, value)
        if arr is not None:
            check_shape(name, arr, shape, str(shape))
            ptrs[name] = ctx.lib.pointer(arr)
    lib, dev, dt = ctx.lib, ctx.device, ctx.dtype
    dx = lib.empty(ctx.x_shape, dt, dev)
    dh0 = lib.empty(ctx.h_shape, dt, dev)
    dc0 = lib.empty(ctx.c_shape, dt, dev) if ctx.c_shape is not None else None
    ptrs.update({k: lib.pointer(v) for k, v in (("dx", dx), ("dh0", dh0), ("dc0", dc0))
                 if v is not None})
    grads = {n: lib.empty(ctx.shapes[n], cuda._arith(dt), dev) for n in ctx.names if n is not None}
    flat = [0 if n is None else lib.pointer(grads[n]) for n in ctx.names]
    module.stack_backward(dt, ctx.state, ptrs, flat, dev, lib.stream(dev))
    return StackGrads(dx=dx, dh0=dh0, dc0=dc0, grads=grads)
