"""JAX: the cell written in jax.numpy, the input projection hoisted out of the time loop into one
matmul, lax.scan over time, jax.jit. Forward is the jitted forward; training mode is
jax.value_and_grad of loss = y.sum() + h_n.sum() with respect to x and every weight. Both are
compiled (lower().compile()) before any timed call.

XLA sizes its CPU thread pool from the CPUs the process may use; the runner restricts each worker
process to `threads` CPUs with os.sched_setaffinity, so nothing is set here. The memory training
mode keeps is the residuals of jax.vjp under jit, leaving out buffers that are the inputs.
"""

from __future__ import annotations

import os
from typing import Dict

import numpy as np

from harness import Prepared

try:
    import jax
    import jax.numpy as jnp
    from jax import lax
except ImportError:  # an optional peer: skipped with a note
    jax = None

NAME = "jax"
TITLE = "JAX"
COMPARE = True

_ARGS = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")
_DIFF = (0, 1, 2, 3, 4)  # gradients to x and every weight


def available():
    return None if jax is not None else "jax not installed (pip install fastrnn[bench])"


def configure(threads: int) -> dict:
    return {"version": jax.__version__, "threads": len(os.sched_getaffinity(0)),
            "devices": [str(d) for d in jax.devices("cpu")],
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}


def supports(case, mode):
    return None if case.kind == "sequence" else f"no JAX backend for {case.kind} cases"


def _step(cell: str, w_hh, b_hh):
    """One time step on the hoisted input projection xw_t (B, G*H); gates in torch's order."""
    def rnn(h, xw_t):
        pre = xw_t + h @ w_hh.T + b_hh
        h = jnp.tanh(pre) if cell == "rnn_tanh" else jnp.maximum(pre, 0)
        return h, h

    def lstm(carry, xw_t):
        h, c = carry
        i, f, g, o = jnp.split(xw_t + h @ w_hh.T + b_hh, 4, axis=1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    def gru(h, xw_t):
        xr, xz, xn = jnp.split(xw_t, 3, axis=1)
        hr, hz, hn = jnp.split(h @ w_hh.T + b_hh, 3, axis=1)
        r = jax.nn.sigmoid(xr + hr)
        z = jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        return h, h

    return {"lstm": lstm, "gru": gru}.get(cell, rnn)


def forward_fn(cell: str):
    """(x, w_ih, w_hh, b_ih, b_hh, h0, c0) -> (y, h_n, c_n); c0, c_n: LSTM only (else unused,
    None)."""
    def forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0):
        T, B, I = x.shape
        xw = (x.reshape(T * B, I) @ w_ih.T + b_ih).reshape(T, B, -1)  # all steps in one matmul
        carry = (h0, c0) if cell == "lstm" else h0
        carry, y = lax.scan(_step(cell, w_hh, b_hh), carry, xw)
        h_n, c_n = carry if cell == "lstm" else (carry, None)
        return y, h_n, c_n
    return forward


def loss_fn(cell: str):
    forward = forward_fn(cell)

    def loss(*args):
        y, h_n, c_n = forward(*args)
        return y.sum() + h_n.sum(), (y, h_n, c_n)
    return loss


def prepare(case, mode: str, a: Dict[str, np.ndarray]) -> Prepared:
    c0 = a.get("c0", np.zeros_like(a["h0"]))
    args = tuple(jnp.asarray(a[k] if k != "c0" else c0) for k in _ARGS)
    training = mode == "train"
    if training:
        fn = jax.jit(jax.value_and_grad(loss_fn(case.cell), argnums=_DIFF, has_aux=True))
    else:
        fn = jax.jit(forward_fn(case.cell))
    compiled = fn.lower(*args).compile()

    def run():
        return jax.block_until_ready(compiled(*args))

    def fetch(out) -> Dict[str, np.ndarray]:
        if not training:
            y, h_n, c_n = out
            return {"y": np.asarray(y), "h_n": np.asarray(h_n),
                    "c_n": None if case.cell != "lstm" else np.asarray(c_n)}
        (_, (y, h_n, c_n)), grads = out
        got = {"y": np.asarray(y), "h_n": np.asarray(h_n),
               "c_n": None if case.cell != "lstm" else np.asarray(c_n)}
        got.update(zip(("dx", "dw_ih", "dw_hh", "db_ih", "db_hh"), map(np.asarray, grads)))
        return got

    def kept():
        loss = loss_fn(case.cell)
        residuals = jax.jit(lambda *xs: jax.vjp(loss, *xs, has_aux=True)[1])(*args)
        leaves = jax.block_until_ready(jax.tree_util.tree_leaves(residuals))
        owned = {arg.unsafe_buffer_pointer() for arg in args}
        seen = {}
        for leaf in leaves:
            if hasattr(leaf, "unsafe_buffer_pointer") and leaf.unsafe_buffer_pointer() not in owned:
                seen[leaf.unsafe_buffer_pointer()] = leaf.nbytes
        return int(sum(seen.values()))

    return Prepared(run, fetch, kept if training else None)
