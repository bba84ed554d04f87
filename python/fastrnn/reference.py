"""NumPy reference implementations: the oracle every kernel is tested against.

Written for reading: one loop over time, the equations of the PyTorch documentation, no fusion,
no cleverness. Same signatures and result objects as the kernels in fastrnn.functional; the
arithmetic is done in the inputs' dtype (pass float64 for the exact answer).

Shapes: x (T, B, I); h0, c0 (B, H); w_ih (G*H, I); w_hh (G*H, H); b_ih, b_hh (G*H,).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike

from ._reference_tree import tree_lstm_backward, tree_lstm_forward  # noqa: F401
from ._results import SequenceGrads, SequenceResult

__all__ = ["rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward",
           "gru_backward"]
__all__ += ["tree_lstm_forward", "tree_lstm_backward"]


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def _setup(x, h0, w_ih, w_hh, b_ih, b_hh, gates):
    x = np.asarray(x)
    w_ih, w_hh = np.asarray(w_ih), np.asarray(w_hh)
    dtype = x.dtype
    hidden = w_hh.shape[1]
    b_ih = np.zeros(gates * hidden, dtype) if b_ih is None else np.asarray(b_ih)
    b_hh = np.zeros(gates * hidden, dtype) if b_hh is None else np.asarray(b_hh)
    h0 = np.zeros((x.shape[1], hidden), dtype) if h0 is None else np.asarray(h0)
    return x, h0, w_ih, w_hh, b_ih, b_hh


def _grads(ctx, dx, dh0, dw_ih, dw_hh, db, db_hh=None, dc0=None) -> SequenceGrads:
    has_bias = ctx["has_bias"]
    return SequenceGrads(dx=dx, dh0=dh0, dw_ih=dw_ih, dw_hh=dw_hh,
                         db_ih=db if has_bias else None,
                         db_hh=(db if db_hh is None else db_hh) if has_bias else None, dc0=dc0)


def _zeros_if_none(value: Optional[Any], like: np.ndarray) -> np.ndarray:
    return np.zeros_like(like) if value is None else np.asarray(value)


# ---- Elman RNN: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) --------------------------------

def rnn_forward(x: ArrayLike, h0: Optional[ArrayLike], w_ih: ArrayLike, w_hh: ArrayLike,
                b_ih: Optional[ArrayLike] = None, b_hh: Optional[ArrayLike] = None, *,
                nonlinearity: str = "tanh", training: bool = True) -> SequenceResult:
    """Elman RNN, step by step. x (T, B, I), h0 (B, H) or None, w_ih (H, I), w_hh (H, H),
    b_ih, b_hh (H,); returns .y (T, B, H), .h_n (B, H)."""
    x, h0, w_ih, w_hh, bi, bh = _setup(x, h0, w_ih, w_hh, b_ih, b_hh, 1)
    act = np.tanh if nonlinearity == "tanh" else (lambda v: np.maximum(v, 0))
    h = h0
    ys = []
    for t in range(x.shape[0]):
        h = act(x[t] @ w_ih.T + bi + h @ w_hh.T + bh)
        ys.append(h)
    y = np.stack(ys) if ys else np.zeros((0,) + h0.shape, x.dtype)
    ctx = dict(x=x, h0=h0, w_ih=w_ih, w_hh=w_hh, y=y, nonlinearity=nonlinearity,
               has_bias=b_ih is not None)
    return SequenceResult(y=y, h_n=h.copy(), training=training, _ctx=ctx)


def rnn_backward(result: SequenceResult, dy: Optional[ArrayLike],
                 dh_n: Optional[ArrayLike] = None) -> SequenceGrads:
    """Backward through time of rnn_forward: dy (T, B, H), dh_n (B, H), None for zeros."""
    c = result._ctx
    x, h0, w_ih, w_hh, y = c["x"], c["h0"], c["w_ih"], c["w_hh"], c["y"]
    dy = _zeros_if_none(dy, y)
    dh = _zeros_if_none(dh_n, h0).copy()
    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db = np.zeros(w_hh.shape[0], x.dtype)
    for t in reversed(range(x.shape[0])):
        dh = dh + dy[t]
        h_prev = y[t - 1] if t > 0 else h0
        if c["nonlinearity"] == "tanh":
            dpre = dh * (1 - y[t] ** 2)
        else:
            dpre = dh * (y[t] > 0)
        dx[t] = dpre @ w_ih
        dw_ih += dpre.T @ x[t]
        dw_hh += dpre.T @ h_prev
        db += dpre.sum(0)
        dh = dpre @ w_hh
    return _grads(c, dx, dh, dw_ih, dw_hh, db)


# ---- LSTM ------------------------------------------------------------------------------------
#   i = σ(W_ii x + b_ii + W_hi h + b_hi)   f = σ(...)   g = tanh(...)   o = σ(...)
#   c_t = f * c_{t-1} + i * g              h_t = o * tanh(c_t)

def lstm_forward(x: ArrayLike, h0: Optional[ArrayLike], c0: Optional[ArrayLike],
                 w_ih: ArrayLike, w_hh: ArrayLike, b_ih: Optional[ArrayLike] = None,
                 b_hh: Optional[ArrayLike] = None, *, training: bool = True) -> SequenceResult:
    """LSTM, step by step, gates i, f, g, o. x (T, B, I), h0, c0 (B, H) or None, w_ih (4H, I),
    w_hh (4H, H), b_ih, b_hh (4H,); returns .y (T, B, H), .h_n, .c_n (B, H)."""
    x, h0, w_ih, w_hh, bi, bh = _setup(x, h0, w_ih, w_hh, b_ih, b_hh, 4)
    c0 = np.zeros_like(h0) if c0 is None else np.asarray(c0)
    hid = h0.shape[1]
    h, cell = h0, c0
    ys, steps = [], []
    for t in range(x.shape[0]):
        pre = x[t] @ w_ih.T + bi + h @ w_hh.T + bh
        i = sigmoid(pre[:, 0 * hid:1 * hid])
        f = sigmoid(pre[:, 1 * hid:2 * hid])
        g = np.tanh(pre[:, 2 * hid:3 * hid])
        o = sigmoid(pre[:, 3 * hid:4 * hid])
        c_prev, h_prev = cell, h
        cell = f * c_prev + i * g
        h = o * np.tanh(cell)
        ys.append(h)
        steps.append((i, f, g, o, c_prev, cell, h_prev))
    y = np.stack(ys) if ys else np.zeros((0,) + h0.shape, x.dtype)
    ctx = dict(x=x, w_ih=w_ih, w_hh=w_hh, h0=h0, c0=c0, steps=steps, has_bias=b_ih is not None)
    return SequenceResult(y=y, h_n=h.copy(), c_n=cell.copy(), training=training, _ctx=ctx)


def lstm_backward(result: SequenceResult, dy: Optional[ArrayLike],
                  dh_n: Optional[ArrayLike] = None,
                  dc_n: Optional[ArrayLike] = None) -> SequenceGrads:
    """Backward through time of lstm_forward: dy (T, B, H), dh_n, dc_n (B, H), None for zeros."""
    c = result._ctx
    x, w_ih, w_hh, h0 = c["x"], c["w_ih"], c["w_hh"], c["h0"]
    dy = _zeros_if_none(dy, result.y)
    dh = _zeros_if_none(dh_n, h0).copy()
    dc = _zeros_if_none(dc_n, h0).copy()
    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db = np.zeros(w_hh.shape[0], x.dtype)
    for t in reversed(range(x.shape[0])):
        i, f, g, o, c_prev, cell, h_prev = c["steps"][t]
        dh = dh + dy[t]
        tc = np.tanh(cell)
        dc = dc + dh * o * (1 - tc ** 2)
        dpre = np.concatenate([dc * g * i * (1 - i),
                               dc * c_prev * f * (1 - f),
                               dc * i * (1 - g ** 2),
                               dh * tc * o * (1 - o)], axis=1)
        dx[t] = dpre @ w_ih
        dw_ih += dpre.T @ x[t]
        dw_hh += dpre.T @ h_prev
        db += dpre.sum(0)
        dh = dpre @ w_hh
        dc = dc * f
    return _grads(c, dx, dh, dw_ih, dw_hh, db, dc0=dc)


# ---- GRU -------------------------------------------------------------------------------------
#   r = σ(W_ir x + b_ir + W_hr h + b_hr)   z = σ(W_iz x + b_iz + W_hz h + b_hz)
#   n = tanh(W_in x + b_in + r * (W_hn h + b_hn))   h_t = (1 - z) * n + z * h_{t-1}

def gru_forward(x: ArrayLike, h0: Optional[ArrayLike], w_ih: ArrayLike, w_hh: ArrayLike,
                b_ih: Optional[ArrayLike] = None, b_hh: Optional[ArrayLike] = None, *,
                training: bool = True) -> SequenceResult:
    """GRU, step by step, gates r, z, n (b_hn inside r * (...)). x (T, B, I), h0 (B, H) or None,
    w_ih (3H, I), w_hh (3H, H), b_ih, b_hh (3H,); returns .y (T, B, H), .h_n (B, H)."""
    x, h0, w_ih, w_hh, bi, bh = _setup(x, h0, w_ih, w_hh, b_ih, b_hh, 3)
    hid = h0.shape[1]
    h = h0
    ys, steps = [], []
    for t in range(x.shape[0]):
        gx = x[t] @ w_ih.T + bi
        gh = h @ w_hh.T + bh
        r = sigmoid(gx[:, :hid] + gh[:, :hid])
        z = sigmoid(gx[:, hid:2 * hid] + gh[:, hid:2 * hid])
        hn = gh[:, 2 * hid:]
        n = np.tanh(gx[:, 2 * hid:] + r * hn)
        h_prev = h
        h = (1 - z) * n + z * h_prev
        ys.append(h)
        steps.append((r, z, n, hn, h_prev))
    y = np.stack(ys) if ys else np.zeros((0,) + h0.shape, x.dtype)
    ctx = dict(x=x, w_ih=w_ih, w_hh=w_hh, h0=h0, steps=steps, has_bias=b_ih is not None)
    return SequenceResult(y=y, h_n=h.copy(), training=training, _ctx=ctx)


def gru_backward(result: SequenceResult, dy: Optional[ArrayLike],
                 dh_n: Optional[ArrayLike] = None) -> SequenceGrads:
    """Backward through time of gru_forward: dy (T, B, H), dh_n (B, H), None for zeros."""
    c = result._ctx
    x, w_ih, w_hh, h0 = c["x"], c["w_ih"], c["w_hh"], c["h0"]
    dy = _zeros_if_none(dy, result.y)
    dh = _zeros_if_none(dh_n, h0).copy()
    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db_ih = np.zeros(w_hh.shape[0], x.dtype)
    db_hh = np.zeros(w_hh.shape[0], x.dtype)
    for t in reversed(range(x.shape[0])):
        r, z, n, hn, h_prev = c["steps"][t]
        dh = dh + dy[t]
        dn = dh * (1 - z) * (1 - n ** 2)        # d(pre-activation of n)
        dz = dh * (h_prev - n) * z * (1 - z)
        dr = dn * hn * r * (1 - r)
        d_x_side = np.concatenate([dr, dz, dn], axis=1)
        d_h_side = np.concatenate([dr, dz, dn * r], axis=1)
        dx[t] = d_x_side @ w_ih
        dw_ih += d_x_side.T @ x[t]
        dw_hh += d_h_side.T @ h_prev
        db_ih += d_x_side.sum(0)
        db_hh += d_h_side.sum(0)
        dh = dh * z + d_h_side @ w_hh
    return _grads(c, dx, dh, dw_ih, dw_hh, db_ih, db_hh)
