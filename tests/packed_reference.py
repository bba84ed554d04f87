"""The NumPy reference over packed, variable-length sequences in either direction, for the tests of
the CUDA layer driver (host and GPU): each sequence is run through fastrnn.reference on its own.

Packed layout as torch's PackedSequence: lengths sorted longest first, step t holds the first
batch_sizes[t] sequences, row of (t, b) = sum(batch_sizes[:t]) + b.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from fastrnn import reference as ref

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def batch_sizes_of(lengths: np.ndarray) -> np.ndarray:
    steps = int(lengths.max(initial=0))
    return np.array([(lengths > t).sum() for t in range(steps)], dtype=np.int64)


def pack(padded: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(T, B, F) padded -> (rows, F) packed."""
    return np.concatenate([padded[t, :n] for t, n in enumerate(batch_sizes_of(lengths))]
                          + [padded[:0, 0]], axis=0)


def unpack(packed: np.ndarray, lengths: np.ndarray, steps: int) -> np.ndarray:
    """(rows, F) packed -> (T, B, F) with zeros past each sequence's end."""
    out = np.zeros((steps, len(lengths), packed.shape[1]), packed.dtype)
    row = 0
    for t, n in enumerate(batch_sizes_of(lengths)):
        out[t, :n] = packed[row:row + n]
        row += n
    return out


def random_layer(rng: np.random.Generator, cell: str, steps: int, batch: int, inp: int,
                 hidden: int, dtype, bias: bool = True, states: bool = True) -> dict:
    g = GATES[cell]
    s = 1 / np.sqrt(hidden)

    def u(*shape):
        return rng.uniform(-1, 1, shape).astype(dtype)

    return dict(x=u(steps, batch, inp), h0=u(batch, hidden) if states else None,
                c0=u(batch, hidden) if states and cell == "lstm" else None,
                w_ih=(u(g * hidden, inp) * s * 2).astype(dtype),
                w_hh=(u(g * hidden, hidden) * s * 2).astype(dtype),
                b_ih=u(g * hidden) if bias else None, b_hh=u(g * hidden) if bias else None)


def _forward(cell, x, h0, c0, p):
    w = (p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    if cell == "lstm":
        return ref.lstm_forward(x, h0, c0, *w)
    if cell == "gru":
        return ref.gru_forward(x, h0, *w)
    return ref.rnn_forward(x, h0, *w, nonlinearity=cell[4:])


def _backward(cell, res, dy, dh_n, dc_n):
    if cell == "lstm":
        return ref.lstm_backward(res, dy, dh_n, dc_n)
    if cell == "gru":
        return ref.gru_backward(res, dy, dh_n)
    return ref.rnn_backward(res, dy, dh_n)


def layer(cell: str, p: dict, lengths: np.ndarray, reverse: bool, dy: Optional[np.ndarray],
          dh_n: Optional[np.ndarray], dc_n: Optional[np.ndarray]) -> dict:
    """Forward and backward of every sequence alone; padded (T, B, .) outputs, summed weight grads."""
    x = p["x"]
    steps, batch, _ = x.shape
    hidden = p["w_hh"].shape[1]
    dt = x.dtype
    out = dict(y=np.zeros((steps, batch, hidden), dt), h_n=np.zeros((batch, hidden), dt),
               c_n=np.zeros((batch, hidden), dt), dx=np.zeros_like(x),
               dh0=np.zeros((batch, hidden), dt), dc0=np.zeros((batch, hidden), dt),
               dw_ih=np.zeros_like(p["w_ih"]), dw_hh=np.zeros_like(p["w_hh"]),
               db_ih=np.zeros(p["w_hh"].shape[0], dt), db_hh=np.zeros(p["w_hh"].shape[0], dt))
    for b, n in enumerate(lengths):
        order = np.arange(n)[::-1] if reverse else np.arange(n)  # the steps it visits
        one = (lambda a: None if a is None else a[b:b + 1])
        res = _forward(cell, x[order, b:b + 1], one(p["h0"]), one(p["c0"]), p)
        out["y"][order, b] = res.y[:, 0]
        out["h_n"][b] = res.h_n[0]
        if res.c_n is not None:
            out["c_n"][b] = res.c_n[0]
        d_y = None if dy is None else dy[order, b:b + 1]
        grads = _backward(cell, res, d_y, one(dh_n), one(dc_n))
        out["dx"][order, b] = grads.dx[:, 0]
        out["dh0"][b] = grads.dh0[0]
        if grads.dc0 is not None:
            out["dc0"][b] = grads.dc0[0]
        for name in ("dw_ih", "dw_hh", "db_ih", "db_hh"):
            if getattr(grads, name) is not None:
                out[name] += getattr(grads, name)
    return out
