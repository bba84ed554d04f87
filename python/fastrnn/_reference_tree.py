"""NumPy reference of the Tree-LSTM: node by node in recursion order (children before their
parent), the equations of Tai, Socher & Manning (2015) as written in fastrnn.tree's docstring.
Independent of the kernels' schedule: it reads only the parent array. Arithmetic in the inputs'
dtype (pass float64 for the exact answer).
"""

from __future__ import annotations

from typing import Any, List, Optional

import numpy as np

from ._tree_results import TreeGrads, TreeResult

__all__ = ["tree_lstm_forward", "tree_lstm_backward"]


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def _children_and_order(parents: np.ndarray):
    """Each node's children in increasing index, and all nodes in post-order (a loop, not
    recursion, so that deep trees work)."""
    n = parents.shape[0]
    children: List[List[int]] = [[] for _ in range(n)]
    for j in range(n):
        if parents[j] >= 0:
            children[parents[j]].append(j)
    order: List[int] = []
    for root in np.flatnonzero(parents < 0):
        stack = [(int(root), False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
            else:
                stack.append((node, True))
                stack.extend((k, False) for k in reversed(children[node]))
    return children, order


def tree_lstm_forward(x: Any, forest: Any, w_ih: Any, w_hh: Any, b_ih: Any = None,
                      b_hh: Any = None, *, arity: Optional[int] = None,
                      training: bool = True, input_nodes: Any = None) -> TreeResult:
    """Same arguments and result as fastrnn.tree_lstm_forward (forest: a Forest or parents)."""
    parents = np.asarray(getattr(forest, "parents", forest), dtype=np.int64)
    x, w_ih, w_hh = np.asarray(x), np.asarray(w_ih), np.asarray(w_hh)
    if input_nodes is not None:  # x's rows are these nodes'; every other node's input is zero
        input_nodes = np.asarray(input_nodes, dtype=np.int64)
        full = np.zeros((parents.shape[0], x.shape[1]), x.dtype)
        full[input_nodes] = x
        x = full
    hid = w_ih.shape[0] // 4
    has_bias = b_ih is not None
    b_ih = np.zeros(w_ih.shape[0], x.dtype) if b_ih is None else np.asarray(b_ih)
    b_hh = np.zeros(w_hh.shape[0], x.dtype) if b_hh is None else np.asarray(b_hh)
    children, order = _children_and_order(parents)
    n = parents.shape[0]
    h = np.zeros((n, hid), x.dtype)
    c = np.zeros((n, hid), x.dtype)
    nodes = {}
    blk = lambda v, k: v[k * hid:(k + 1) * hid]  # noqa: E731  block k of a gate vector
    for j in order:
        kids = children[j]
        wx = w_ih @ x[j] + b_ih
        if arity is None:
            h_in = sum((h[k] for k in kids), np.zeros(hid, x.dtype))  # h~
            uh = w_hh @ h_in + b_hh
            i = sigmoid(blk(wx, 0) + blk(uh, 0))
            fs = [sigmoid(blk(wx, 1) + blk(w_hh, 1) @ h[k] + blk(b_hh, 1)) for k in kids]
            u = np.tanh(blk(wx, 2) + blk(uh, 2))
            o = sigmoid(blk(wx, 3) + blk(uh, 3))
        else:
            h_in = np.zeros(arity * hid, x.dtype)  # [h_1; ...; h_N]
            for pos, k in enumerate(kids):
                h_in[pos * hid:(pos + 1) * hid] = h[k]
            uh = w_hh @ h_in + b_hh  # blocks i, f_1 .. f_N, u, o
            i = sigmoid(blk(wx, 0) + blk(uh, 0))
            fs = [sigmoid(blk(wx, 1) + blk(uh, 1 + pos)) for pos in range(len(kids))]
            u = np.tanh(blk(wx, 2) + blk(uh, 1 + arity))
            o = sigmoid(blk(wx, 3) + blk(uh, 2 + arity))
        c[j] = i * u + sum((f * c[k] for f, k in zip(fs, kids)), np.zeros(hid, x.dtype))
        h[j] = o * np.tanh(c[j])
        nodes[j] = (i, fs, u, o, h_in)
    ctx = dict(x=x, w_ih=w_ih, w_hh=w_hh, arity=arity, children=children, order=order, h=h, c=c,
               nodes=nodes, has_bias=has_bias, input_nodes=input_nodes)
    return TreeResult(h=h.copy(), c=c.copy(), training=training, _ctx=ctx)


def tree_lstm_backward(result: TreeResult, dh: Any, dc: Any = None) -> TreeGrads:
    """Same arguments and result as fastrnn.tree_lstm_backward."""
    ctx = result._ctx
    x, w_ih, w_hh, arity = ctx["x"], ctx["w_ih"], ctx["w_hh"], ctx["arity"]
    h, c, children = ctx["h"], ctx["c"], ctx["children"]
    hid = h.shape[1]
    dh = np.zeros_like(h) if dh is None else np.array(dh, dtype=h.dtype)  # copies: += below
    dc = np.zeros_like(c) if dc is None else np.array(dc, dtype=c.dtype)
    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db_ih = np.zeros(w_ih.shape[0], x.dtype)
    db_hh = np.zeros(w_hh.shape[0], x.dtype)
    blk = lambda v, k: v[k * hid:(k + 1) * hid]  # noqa: E731
    for j in reversed(ctx["order"]):  # parents before children
        i, fs, u, o, h_in = ctx["nodes"][j]
        kids = children[j]
        tc = np.tanh(c[j])
        dc_j = dc[j] + dh[j] * o * (1 - tc ** 2)
        do = dh[j] * tc * o * (1 - o)
        di = dc_j * u * i * (1 - i)
        du = dc_j * i * (1 - u ** 2)
        dfs = [dc_j * c[k] * f * (1 - f) for f, k in zip(fs, kids)]
        for f, k in zip(fs, kids):
            dc[k] += dc_j * f
        d_x_side = np.concatenate([di, sum(dfs, np.zeros(hid, x.dtype)), du, do])
        dx[j] = w_ih.T @ d_x_side
        dw_ih += np.outer(d_x_side, x[j])
        db_ih += d_x_side
        if arity is None:
            d_iuo = np.concatenate([di, np.zeros(hid, x.dtype), du, do])
            dw_hh += np.outer(d_iuo, h_in)
            db_hh += d_x_side
            dh_sum = w_hh.T @ d_iuo
            for df, k in zip(dfs, kids):
                dw_hh[hid:2 * hid] += np.outer(df, h[k])
                dh[k] += dh_sum + blk(w_hh, 1).T @ df
        else:
            d_h_side = np.concatenate([di] + dfs + [np.zeros(hid, x.dtype)] * (arity - len(kids))
                                      + [du, do])
            dw_hh += np.outer(d_h_side, h_in)
            db_hh += d_h_side
            d_in = w_hh.T @ d_h_side
            for pos, k in enumerate(kids):
                dh[k] += d_in[pos * hid:(pos + 1) * hid]
    has_bias = ctx["has_bias"]
    if ctx["input_nodes"] is not None:
        dx = dx[ctx["input_nodes"]]
    return TreeGrads(dx=dx, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih if has_bias else None,
                     db_hh=db_hh if has_bias else None)
