"""Tree-LSTMs on the GPU: what fastrnn.tree_lstm_forward/backward run when x is a GPU array (torch
CUDA tensors, CuPy arrays, anything with ``__cuda_array_interface__`` or a CUDA ``__dlpack__``).
The forest's schedule is computed on the host (fastrnn.Forest) and uploaded by each forward; one
call into fastrnn._cuda runs every level (csrc/cuda/tree.h). Results are arrays of the caller's
kind on its device, computed on its current stream.

Shapes and equations as in fastrnn.tree. dtypes: float32, float64, float16, bfloat16; the 16-bit
types compute in float32, and the weight and bias gradients are float32 (float64 for float64), as
in fastrnn.cuda.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from . import cuda
from ._checks import check_shape
from ._tree_results import TreeGrads, TreeResult
from .tree import as_forest, check_arity, check_input_nodes, check_x_rows, hh_shapes

__all__ = ["tree_forward", "tree_backward"]


@dataclass
class GpuTreeContext:
    """What tree_backward needs of a training forward on the GPU."""

    lib: Any
    device: int
    dtype: str
    n_nodes: int
    hidden: int
    shapes: dict  # x (every node's row), w_ih, w_hh, b_ih, b_hh -> shape (biases only with bias)
    keep: list  # x and the weights: the device state points into them
    state: Any  # fastrnn._cuda.TreeState
    input_nodes: Optional[np.ndarray]  # the nodes whose rows of dx the caller gets, or None


def tree_forward(x: Any, forest: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, arity: Any,
                 training: Any, input_nodes: Any = None) -> TreeResult:
    """fastrnn.tree_lstm_forward for GPU arrays: x (n_nodes, I), or (k, I) with input_nodes (k,)
    on the host; w_ih (4H, I), w_hh (4H, H) or ((3+N)H, N*H), b_ih (4H,), b_hh (4H,) or
    ((3+N)H,) or both None; forest on the host. With input_nodes, x's rows are spread into a zero
    (n_nodes, I) array on the device, which the kernels read."""
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be a bool, got {type(training).__name__}")
    n_ary = check_arity(arity)
    if cuda.is_gpu_array(forest):
        raise TypeError("forest must be a Forest or a host array of parent indices (the schedule "
                        "is computed on the host), got a GPU array")
    forest = as_forest(forest)
    module = cuda._require()
    args = cuda._Args(cuda._library_of(x))
    a = {"x": args.take("x", x)}
    for name, value in (("w_ih", w_ih), ("w_hh", w_hh)):
        if value is None:
            raise TypeError(f"{name} must be a GPU array like x, got None")
        a[name] = args.take(name, value)
    a["b_ih"], a["b_hh"] = args.take("b_ih", b_ih), args.take("b_hh", b_hh)
    n = forest.n_nodes
    nodes = check_input_nodes(input_nodes, n)
    check_x_rows(tuple(a["x"].shape), n, nodes)
    inp = a["x"].shape[1]
    w = a["w_ih"]
    if w.ndim != 2 or w.shape[0] % 4 or w.shape[0] == 0:
        raise ValueError(f"w_ih must have shape (4*H, I) with H >= 1, got {tuple(w.shape)}")
    hidden = w.shape[0] // 4
    check_shape("w_ih", w, (4 * hidden, inp), f"(4*H, I) = ({4 * hidden}, {inp})")
    hh, hh_what, bh, bh_what = hh_shapes(hidden, n_ary)
    check_shape("w_hh", a["w_hh"], hh, hh_what)
    if (a["b_ih"] is None) != (a["b_hh"] is None):
        raise ValueError("b_ih and b_hh must both be arrays or both be None")
    if a["b_ih"] is not None:
        check_shape("b_ih", a["b_ih"], (4 * hidden,), f"(4*H,) = ({4 * hidden},)")
        check_shape("b_hh", a["b_hh"], bh, bh_what)
    if n_ary and forest.max_children > n_ary:
        counts = forest.n_children
        j = int(np.flatnonzero(counts > n_ary)[0])
        raise ValueError(f"node {j} has {int(counts[j])} children, more than arity "
                         f"N = {n_ary} allows")

    lib, dev, dt = args.lib, args.device, args.dtype
    if nodes is not None:
        a["x"] = lib.scatter_rows(a["x"], nodes, n)
    a["h"] = lib.empty((n, hidden), dt, dev)
    a["c"] = lib.empty((n, hidden), dt, dev)
    ptrs = {k: lib.pointer(v) for k, v in a.items() if v is not None}
    state = module.tree_forward(dt, n_ary, inp, hidden, *forest._schedule(), bool(training), ptrs,
                                dev, lib.stream(dev))
    ctx = None
    if training:
        inputs = {k: a[k] for k in ("x", "w_ih", "w_hh", "b_ih", "b_hh") if a[k] is not None}
        shapes = {k: tuple(v.shape) for k, v in inputs.items()}
        ctx = GpuTreeContext(lib, dev, dt, n, hidden, shapes, list(inputs.values()), state, nodes)
    return TreeResult(h=a["h"], c=a["c"], training=bool(training), _ctx=ctx)


def tree_backward(result: TreeResult, dh: Any, dc: Any = None) -> TreeGrads:
    """fastrnn.tree_lstm_backward of a GPU forward. dh, dc: (n_nodes, H) GPU arrays of the
    forward's dtype and device, or None. Returns TreeGrads of arrays of the forward's kind: dx of
    its dtype and x's shape (the input nodes' rows with input_nodes), the weight and bias
    gradients in float32 (float64 for float64)."""
    ctx = result._ctx
    if not isinstance(ctx, GpuTreeContext):
        raise TypeError("result must be the TreeResult of tree_lstm_forward(..., training=True)")
    module = cuda._require()
    args = cuda._Args(ctx.lib)
    args.first, args.dtype, args.device = "the forward's arrays", ctx.dtype, ctx.device
    ptrs = {}
    shape = (ctx.n_nodes, ctx.hidden)
    for name, value in (("dh", dh), ("dc", dc)):
        arr = args.take(name, value)
        if arr is not None:
            check_shape(name, arr, shape, f"(n_nodes, H) = {shape}")
            ptrs[name] = ctx.lib.pointer(arr)
    lib, dev, dt, arith = ctx.lib, ctx.device, ctx.dtype, cuda._arith(ctx.dtype)
    out = {"dx": lib.empty(ctx.shapes["x"], dt, dev)}
    for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
        out["d" + name] = lib.empty(ctx.shapes[name], arith, dev) if name in ctx.shapes else None
    ptrs.update({k: lib.pointer(v) for k, v in out.items() if v is not None})
    module.tree_backward(dt, ctx.state, ptrs, dev, lib.stream(dev))
    if ctx.input_nodes is not None:
        out["dx"] = lib.gather_rows(out["dx"], ctx.input_nodes)
    return TreeGrads(**out)
