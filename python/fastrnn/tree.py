"""Tree-LSTMs over a batch of trees (Tai, Socher & Manning 2015), gates i, f, u, o.

All nodes of one height, across all trees, go through one GEMM and one fused pointwise pass, in
forward and backward. A batch of trees is a `Forest`, given by parent indices and scheduled once.

Child-Sum (arity=None): w_ih (4H, I), w_hh (4H, H), b_ih, b_hh (4H,), row blocks [i; f; u; o].
    h~ = sum_k h_k, i = σ(W_i x + U_i h~ + b_i), f_k = σ(W_f x + U_f h_k + b_f) per child,
    u = tanh(W_u x + U_u h~ + b_u), o = σ(W_o x + U_o h~ + b_o), b = b_ih + b_hh.
N-ary (arity=N): w_ih (4H, I), b_ih (4H,) as above; w_hh ((3+N)H, N*H), b_hh ((3+N)H,) with row
    blocks [i; f_1; ...; f_N; u; o] applied to [h_1; ...; h_N] (a node's children fill positions
    1..N in increasing node index; a missing one has h = c = 0); W_f and b_ih's f block are shared.
Both: c = i*u + sum_k f_k*c_k, h = o*tanh(c); a leaf has no children.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from . import _C
from . import cuda as _gpu
from ._checks import as_float_array, check_shape, common_dtype, contiguous
from ._tree_results import TreeGrads, TreeResult

__all__ = ["Forest", "TreeLSTM", "TreeGrads", "TreeResult", "tree_lstm_backward",
           "tree_lstm_forward"]


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


class Forest:
    """A batch of trees given by parent indices, and its schedule for the Tree-LSTM kernels.

    parents: (n_nodes,) integers; parents[j] is the index of node j's parent, or -1 for a root.
    Nodes may come in any order. The constructor checks that every index is in range and that
    there is no cycle (ValueError naming the node), then computes once, in O(n_nodes), each node's
    height (0 for a leaf), the nodes of each level and each node's children.
    """

    def __init__(self, parents: Any) -> None:
        arr = np.asarray(parents)
        if arr.ndim != 1:
            raise ValueError(f"parents must be a 1-D array of node indices, got shape {arr.shape}")
        if arr.size and arr.dtype.kind not in "iu":
            raise TypeError(f"parents must be an array of integers, got dtype {arr.dtype}")
        p = arr.astype(np.int64)  # a copy: the caller's array is never touched
        n = p.shape[0]
        bad = np.flatnonzero((p < -1) | (p >= n))
        if bad.size:
            j = int(bad[0])
            raise ValueError(f"parents[{j}] = {int(p[j])} is out of range: expected a node index "
                             f"in [0, {n}) or -1 for a root")
        self._c = _C.Forest(p)  # ValueError naming a node on a cycle
        self._parents = _readonly(p)
        self._heights = _readonly(self._c.heights)
        self._roots = _readonly(self._c.roots)
        self._n_children = _readonly(np.bincount(p[p >= 0], minlength=n).astype(np.int64))
        self._order = self._c.order
        self._level_offsets = self._c.level_offsets
        self._arrays: Optional[Tuple[np.ndarray, ...]] = None  # _schedule(), on first use

    @classmethod
    def from_trees(cls, trees: Sequence[Any]) -> "Forest":
        """One forest from several trees, each a parent array numbered from 0 (-1 for its root).
        Tree t's nodes become nodes offset_t .. offset_t + len(trees[t]) - 1, in that order."""
        parts, offset = [], 0
        for t, tree in enumerate(trees):
            arr = np.asarray(tree)
            if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
                raise ValueError(f"trees[{t}] must be a 1-D integer array of parent indices, got "
                                 f"shape {arr.shape} and dtype {arr.dtype}")
            p = arr.astype(np.int64)
            bad = np.flatnonzero((p < -1) | (p >= p.shape[0]))
            if bad.size:
                j = int(bad[0])
                raise ValueError(f"trees[{t}]: parents[{j}] = {int(p[j])} is out of range: "
                                 f"expected a node index in [0, {p.shape[0]}) or -1 for a root")
            parts.append(np.where(p >= 0, p + offset, -1))
            offset += p.shape[0]
        return cls(np.concatenate(parts) if parts else np.zeros(0, np.int64))

    @property
    def n_nodes(self) -> int:
        """Number of nodes over all trees."""
        return self._c.n_nodes

    @property
    def n_trees(self) -> int:
        """Number of trees (roots)."""
        return self._c.n_trees

    @property
    def n_levels(self) -> int:
        """Number of heights: 1 + the largest height (0 for an empty forest)."""
        return self._c.n_levels

    @property
    def parents(self) -> np.ndarray:
        """(n_nodes,) int64 parent of each node, -1 for a root (read-only)."""
        return self._parents

    @property
    def roots(self) -> np.ndarray:
        """(n_trees,) int64 root nodes in increasing order (read-only)."""
        return self._roots

    @property
    def heights(self) -> np.ndarray:
        """(n_nodes,) int64 height of each node: 0 for a leaf, else 1 + its highest child's."""
        return self._heights

    @property
    def n_children(self) -> np.ndarray:
        """(n_nodes,) int64 number of children of each node (read-only)."""
        return self._n_children

    @property
    def max_children(self) -> int:
        """The most children any node has."""
        return self._c.max_children

    def level(self, height: int) -> np.ndarray:
        """The nodes of one height, in increasing node index."""
        if not 0 <= height < self.n_levels:
            raise ValueError(f"height must be in [0, {self.n_levels}), got {height}")
        return self._order[self._level_offsets[height]:self._level_offsets[height + 1]].copy()

    def children(self, node: int) -> np.ndarray:
        """The children of `node`, in increasing node index (the N-ary positions 1..N)."""
        if not 0 <= node < self.n_nodes:
            raise ValueError(f"node must be in [0, {self.n_nodes}), got {node}")
        return np.flatnonzero(self._parents == node)

    def _schedule(self) -> Tuple[np.ndarray, ...]:
        """order, level_offsets, child_offsets, child_rows: the arrays the GPU kernels read."""
        if self._arrays is None:
            c = self._c
            self._arrays = (c.order, c.level_offsets, c.child_offsets, c.child_rows)
        return self._arrays

    def __len__(self) -> int:
        return self.n_nodes

    def __repr__(self) -> str:
        return f"Forest(n_nodes={self.n_nodes}, n_trees={self.n_trees}, n_levels={self.n_levels})"


def as_forest(forest: Any) -> Forest:
    """A Forest from a Forest or a parents array."""
    return forest if isinstance(forest, Forest) else Forest(forest)


def check_arity(arity: Any) -> int:
    """0 for Child-Sum (arity None), else the checked N."""
    if arity is None:
        return 0
    if isinstance(arity, bool) or not isinstance(arity, (int, np.integer)):
        raise TypeError(f"arity must be None (Child-Sum) or an int N >= 1 (N-ary), got {arity!r}")
    if arity < 1:
        raise ValueError(f"arity must be None (Child-Sum) or an int N >= 1 (N-ary), got {arity}")
    return int(arity)


def hh_shapes(hidden: int, arity: int) -> Tuple[Tuple[int, int], str, Tuple[int], str]:
    """Shape of w_hh and b_hh for Child-Sum (arity 0) or N-ary, with their symbols."""
    if arity == 0:
        return ((4 * hidden, hidden), f"(4*H, H) = ({4 * hidden}, {hidden})",
                (4 * hidden,), f"(4*H,) = ({4 * hidden},)")
    g = 3 + arity
    return ((g * hidden, arity * hidden),
            f"((3+N)*H, N*H) = ({g * hidden}, {arity * hidden}) for N = {arity}",
            (g * hidden,), f"((3+N)*H,) = ({g * hidden},) for N = {arity}")


def check_input_nodes(input_nodes: Any, n_nodes: int) -> Optional[np.ndarray]:
    """None, or `input_nodes` as a new int64 array of distinct node indices in [0, n_nodes)."""
    if input_nodes is None:
        return None
    arr = np.asarray(input_nodes)
    if arr.ndim != 1 or (arr.dtype.kind not in "iu" and arr.size > 0):
        raise ValueError(f"input_nodes must be a 1-D array of node indices, got shape "
                         f"{arr.shape} and dtype {arr.dtype}")
    arr = arr.astype(np.int64)  # a copy: the kernels keep it
    bad = np.flatnonzero((arr < 0) | (arr >= n_nodes))
    if bad.size:
        raise ValueError(f"input_nodes[{bad[0]}] = {arr[bad[0]]} is not a node index in "
                         f"[0, {n_nodes})")
    seen = np.bincount(arr, minlength=n_nodes)
    if seen.max(initial=0) > 1:
        node = int(np.flatnonzero(seen > 1)[0])
        raise ValueError(f"input_nodes lists node {node} more than once")
    return arr


def check_x_rows(shape: tuple, n_nodes: int, input_nodes: Optional[np.ndarray]) -> None:
    """x's shape: (n_nodes, I), or (k, I) for the k nodes of input_nodes."""
    if input_nodes is not None:
        k = input_nodes.shape[0]
        if len(shape) != 2 or shape[0] != k:
            raise ValueError(f"x must have shape (len(input_nodes), I) = ({k}, I), one row "
                             f"per input node, got {tuple(shape)}")
    elif len(shape) != 2 or shape[0] != n_nodes:
        raise ValueError(f"x must have shape (n_nodes, I) = ({n_nodes}, I), one row per node of "
                         f"the forest, got {tuple(shape)}")


class TreeArgs:
    """Checked, contiguous arguments of one Tree-LSTM call (what backward needs again)."""

    def __init__(self, x: Any, forest: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any,
                 arity: Any, input_nodes: Any = None) -> None:
        self.arity = check_arity(arity)
        self.forest = as_forest(forest)
        self.input_nodes = check_input_nodes(input_nodes, self.forest.n_nodes)
        x = as_float_array("x", x)
        w_ih = as_float_array("w_ih", w_ih)
        w_hh = as_float_array("w_hh", w_hh)
        opt = {name: None if v is None else as_float_array(name, v)
               for name, v in (("b_ih", b_ih), ("b_hh", b_hh))}
        common_dtype({"x": x, "w_ih": w_ih, "w_hh": w_hh, **opt})
        check_x_rows(x.shape, self.forest.n_nodes, self.input_nodes)
        inp = x.shape[1]
        if w_ih.ndim != 2 or w_ih.shape[0] % 4 or w_ih.shape[0] == 0:
            raise ValueError(f"w_ih must have shape (4*H, I) with H >= 1, got {tuple(w_ih.shape)}")
        hidden = w_ih.shape[0] // 4
        check_shape("w_ih", w_ih, (4 * hidden, inp), f"(4*H, I) = ({4 * hidden}, {inp})")
        hh, hh_what, bh, bh_what = hh_shapes(hidden, self.arity)
        check_shape("w_hh", w_hh, hh, hh_what)
        if (opt["b_ih"] is None) != (opt["b_hh"] is None):
            raise ValueError("b_ih and b_hh must both be arrays or both be None")
        if opt["b_ih"] is not None:
            check_shape("b_ih", opt["b_ih"], (4 * hidden,), f"(4*H,) = ({4 * hidden},)")
            check_shape("b_hh", opt["b_hh"], bh, bh_what)
        if self.arity and self.forest.max_children > self.arity:
            counts = self.forest.n_children
            j = int(np.flatnonzero(counts > self.arity)[0])
            raise ValueError(f"node {j} has {int(counts[j])} children, more than arity "
                             f"N = {self.arity} allows")
        self.hidden = hidden
        self.x, self.w_ih, self.w_hh = contiguous(x), contiguous(w_ih), contiguous(w_hh)
        self.b_ih, self.b_hh = contiguous(opt["b_ih"]), contiguous(opt["b_hh"])

    def kernel_args(self) -> tuple:
        return (self.forest._c, self.arity, self.x, self.input_nodes, self.w_ih, self.w_hh,
                self.b_ih, self.b_hh)


def tree_lstm_forward(x: Any, forest: Union[Forest, Any], w_ih: Any, w_hh: Any, b_ih: Any = None,
                      b_hh: Any = None, *, arity: Optional[int] = None,
                      training: bool = True, input_nodes: Any = None) -> TreeResult:
    """Tree-LSTM over every node of a forest, leaves first (see the module's docstring).

    x: (n_nodes, I), one row per node (zeros where a node has no input); forest: a Forest or a
    parents array; w_ih: (4H, I); w_hh: (4H, H) Child-Sum or ((3+N)H, N*H) N-ary; b_ih: (4H,);
    b_hh: (4H,) or ((3+N)H,); both biases or neither. arity: None for Child-Sum, N for N-ary
    (a node with more than N children is a ValueError). Returns a TreeResult with h and c
    (n_nodes, H); with training=False nothing is kept for backward.

    input_nodes: (k,) distinct node indices, for inputs on some nodes only (the words of a
    constituency tree's leaves): then x is (k, I), row j the input of node input_nodes[j], every
    other node has none (as a zero row), and backward's dx is (k, I): on the CPU no work is spent
    on the rows without input; on the GPU x is spread into a zero (n_nodes, I) array on the
    device, and dx gathered back.

    GPU arrays (x and the weights; torch CUDA tensors, CuPy arrays, anything with
    ``__cuda_array_interface__`` or a CUDA ``__dlpack__``) run on the GPU (fastrnn.cuda), with the
    forest's schedule computed on the host; h and c are arrays of x's kind, and float16 and
    bfloat16 are accepted there too.
    """
    if _gpu.is_gpu_array(x):
        from ._cuda_tree import tree_forward as gpu_forward

        return gpu_forward(x, forest, w_ih, w_hh, b_ih, b_hh, arity, training, input_nodes)
    args = TreeArgs(x, forest, w_ih, w_hh, b_ih, b_hh, arity, input_nodes)
    h, c, saved = _C.tree_forward(*args.kernel_args(), bool(training))
    return TreeResult(h=h, c=c, training=bool(training),
                      _ctx=(args, saved) if training else None)


def tree_lstm_backward(result: TreeResult, dh: Any, dc: Any = None) -> TreeGrads:
    """Backward of tree_lstm_forward(..., training=True).

    dh, dc: (n_nodes, H) gradients on result.h and result.c, or None for zeros. Returns TreeGrads
    (dx, dw_ih, dw_hh, db_ih, db_hh), each shaped as its input (dx as the forward's x: (n_nodes,
    I), or (k, I) with input_nodes), biases None without bias.
    Of a GPU forward: dh, dc GPU arrays, and the gradients arrays of its kind, the weight and bias
    gradients in float32 (float64 for float64).
    """
    if isinstance(result, TreeResult) and result._ctx is not None and \
            not isinstance(result._ctx, tuple):
        from ._cuda_tree import tree_backward as gpu_backward

        return gpu_backward(result, dh, dc)
    if not isinstance(result, TreeResult) or not isinstance(result._ctx, tuple):
        if isinstance(result, TreeResult) and not result.training:
            raise ValueError("tree_lstm_backward needs a result of tree_lstm_forward(..., "
                             "training=True); this one was made with training=False")
        raise TypeError("result must be the TreeResult of tree_lstm_forward(..., training=True)")
    args, saved = result._ctx
    n, hidden, dtype = args.forest.n_nodes, args.hidden, args.x.dtype
    grads = {}
    for name, value in (("dh", dh), ("dc", dc)):
        if value is None:
            grads[name] = None
            continue
        arr = as_float_array(name, value)
        if arr.dtype != dtype:
            raise TypeError(f"{name} must have the forward's dtype {dtype}, got {arr.dtype}")
        check_shape(name, arr, (n, hidden), f"(n_nodes, H) = ({n}, {hidden})")
        grads[name] = contiguous(arr)
    dx, dw_ih, dw_hh, db_ih, db_hh = _C.tree_backward(*args.kernel_args(), saved, grads["dh"],
                                                      grads["dc"])
    return TreeGrads(dx=dx, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih, db_hh=db_hh)


class TreeLSTM:
    """A Tree-LSTM layer on NumPy arrays: parameters, forward, backward, accumulated gradients.

    Parameters (PyTorch's layout, initialised U(-1/sqrt(H), 1/sqrt(H)) as torch does):
    weight_ih (4H, I), weight_hh (4H, H) Child-Sum or ((3+N)H, N*H) N-ary, bias_ih (4H,),
    bias_hh (4H,) or ((3+N)H,). `grads` holds the gradients of the same names, summed over
    backward calls until zero_grad().
    """

    def __init__(self, input_size: int, hidden_size: int, arity: Optional[int] = None,
                 bias: bool = True, dtype: Any = np.float32, seed: Optional[int] = None) -> None:
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        self.arity = None if check_arity(arity) == 0 else int(arity)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), bool(bias)
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(hidden_size)
        self.params: Dict[str, np.ndarray] = {
            name: rng.uniform(-bound, bound, shape).astype(self.dtype)
            for name, shape in self._shapes().items()}
        self.grads: Dict[str, np.ndarray] = {}
        self.zero_grad()
        self._result: Optional[TreeResult] = None

    def _shapes(self) -> Dict[str, Tuple[int, ...]]:
        h = self.hidden_size
        hh, _, bh, _ = hh_shapes(h, self.arity or 0)
        shapes = {"weight_ih": (4 * h, self.input_size), "weight_hh": hh}
        if self.bias:
            shapes.update(bias_ih=(4 * h,), bias_hh=bh)
        return shapes

    def forward(self, x: Any, forest: Union[Forest, Any], training: bool = True,
                input_nodes: Any = None) -> Tuple[np.ndarray, np.ndarray]:
        """x: (n_nodes, I), or (k, I) for the k nodes of input_nodes (see tree_lstm_forward);
        forest: a Forest or parents array. Returns h, c (n_nodes, H)."""
        p = self.params
        result = tree_lstm_forward(x, forest, p["weight_ih"], p["weight_hh"], p.get("bias_ih"),
                                   p.get("bias_hh"), arity=self.arity, training=training,
                                   input_nodes=input_nodes)
        self._result = result if training else None
        return result.h, result.c

    __call__ = forward

    def backward(self, dh: Any, dc: Any = None) -> np.ndarray:
        """Gradients of the last training forward: dh, dc (n_nodes, H) or None. Adds the
        parameter gradients into `grads` and returns dx, shaped as the forward's x."""
        if self._result is None:
            raise ValueError("backward needs a forward(..., training=True) first")
        g = tree_lstm_backward(self._result, dh, dc)
        for name, value in (("weight_ih", g.dw_ih), ("weight_hh", g.dw_hh),
                            ("bias_ih", g.db_ih), ("bias_hh", g.db_hh)):
            if value is not None:
                self.grads[name] += value
        return g.dx

    def zero_grad(self) -> None:
        """Set every gradient in `grads` to zero."""
        self.grads = {name: np.zeros_like(v) for name, v in self.params.items()}

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Copies of the parameters, by name."""
        return {name: v.copy() for name, v in self.params.items()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Load parameters by name (copies, cast to this layer's dtype); names and shapes must
        match exactly."""
        shapes = self._shapes()
        if set(state) != set(shapes):
            raise ValueError(f"state must have exactly the keys {sorted(shapes)}, "
                             f"got {sorted(state)}")
        loaded = {}
        for name, shape in shapes.items():
            arr = np.asarray(state[name])
            if arr.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
            loaded[name] = arr.astype(self.dtype, copy=True)
        self.params = loaded

    def __repr__(self) -> str:
        kind = "child-sum" if self.arity is None else f"arity={self.arity}"
        return (f"TreeLSTM({self.input_size}, {self.hidden_size}, {kind}, bias={self.bias}, "
                f"dtype={self.dtype})")
