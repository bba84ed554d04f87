"""fastrnn: the functional kernels for one layer, fastrnn.LSTM for the stacked module.

Training mode is forward(training=True) then backward with dy = 1, dh_n = 1 (loss y.sum() +
h_n.sum()); inference is forward(training=False). The memory training mode keeps is what the
forward's result holds for backward beyond the caller's inputs (y and the saved gates).

Tree-LSTM rows: fastrnn.Forest(parents) (the schedule, built inside every timed call), then
tree_lstm_forward, and in training mode tree_lstm_backward with dh = 1 (loss h.sum()). Inputs on
the leaves only (N-ary rows): x of the leaves and input_nodes, so that dx is theirs alone, as the
peers compute it.
"""

from __future__ import annotations

import os
from typing import Dict

import numpy as np

from harness import Prepared, numpy_kept_bytes

NAME = "fastrnn"
TITLE = "fastrnn"
COMPARE = False  # the subject, not a peer


def available():
    try:
        import fastrnn  # noqa: F401
    except ImportError as e:
        return f"fastrnn not importable ({e}); build it, or run with PYTHONPATH=python"
    return None


def configure(threads: int) -> dict:
    import fastrnn

    fastrnn.set_num_threads(threads)
    return {"version": fastrnn.__version__, "path": os.path.dirname(fastrnn.__file__),
            "threads": fastrnn.get_num_threads(),
            "isa": fastrnn._C.isa(), "blas": fastrnn._C.blas_info()}


def supports(case, mode):
    if case.kind == "sequence":
        return None
    if case.kind == "stacked":
        import fastrnn

        if not hasattr(fastrnn, "LSTM"):
            return "fastrnn.LSTM does not exist yet"
        return None
    if case.kind == "tree":
        return None
    return f"no fastrnn backend for {case.kind} cases"


def _sequence(case, mode: str, a: Dict[str, np.ndarray]) -> Prepared:
    import fastrnn

    training = mode == "train"
    w = (a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    if case.cell == "lstm":
        def forward(tr):
            return fastrnn.lstm_forward(a["x"], a["h0"], a["c0"], *w, training=tr)
    elif case.cell == "gru":
        def forward(tr):
            return fastrnn.gru_forward(a["x"], a["h0"], *w, training=tr)
    else:
        def forward(tr):
            return fastrnn.rnn_forward(a["x"], a["h0"], *w, nonlinearity=case.cell[4:],
                                       training=tr)
    backward = getattr(fastrnn, ("rnn" if case.cell.startswith("rnn") else case.cell) + "_backward")
    dy = np.ones((case.T, case.B, case.H), np.float32)
    dh_n = np.ones((case.B, case.H), np.float32)

    def run():
        res = forward(training)
        return (res, backward(res, dy, dh_n)) if training else (res, None)

    def fetch(out) -> Dict[str, np.ndarray]:
        res, g = out
        got = {"y": res.y, "h_n": res.h_n, "c_n": res.c_n}
        if g is not None:
            got.update(dx=g.dx, dw_ih=g.dw_ih, dw_hh=g.dw_hh, db_ih=g.db_ih, db_hh=g.db_hh)
        return got

    def kept():
        res = forward(True)
        return numpy_kept_bytes((res.y, res._ctx), a.values())

    return Prepared(run, fetch, kept if training else None)


def _stacked(case, mode: str, a: Dict[str, np.ndarray]) -> Prepared:
    """fastrnn.LSTM(I, H, num_layers, bidirectional, dtype=float32) loaded with torch.nn.LSTM's
    state dict: forward(x, training=...) from zero states returns (y, (h_n, c_n)); backward(dy,
    dh_n, dc_n) returns (dx, (dh0, dc0)) and accumulates into module.grads (torch's names)."""
    import fastrnn

    def new_module():
        m = fastrnn.LSTM(case.I, case.H, num_layers=case.layers,
                         bidirectional=case.bidirectional, dtype=np.float32)
        m.load_state_dict(case.state_dict(a))
        return m

    module = new_module()
    training = mode == "train"
    dy = np.ones((case.T, case.B, case.directions * case.H), np.float32)
    dh_n = np.ones_like(a["h0"])

    def run():
        if not training:
            return module.forward(a["x"], training=False), None
        module.zero_grad()
        out = module.forward(a["x"], training=True)
        return out, module.backward(dy, dh_n, None)

    def fetch(result) -> Dict[str, np.ndarray]:
        (y, (h_n, c_n)), back = result
        got = {"y": y, "h_n": h_n, "c_n": c_n}
        if back is not None:
            got["dx"] = back[0]
            got.update({"d" + name: g for name, g in module.grads.items()})
        return got

    def kept():  # what a fresh module holds after a training forward, beyond its parameters
        fresh = new_module()
        before = numpy_kept_bytes(fresh, a.values())
        out = fresh.forward(a["x"], training=True)  # noqa: F841 (alive while counted)
        after = numpy_kept_bytes(fresh, a.values())
        return None if before is None or after is None else after - before

    return Prepared(run, fetch, kept if training else None)


def _tree(case, mode: str, a: Dict[str, np.ndarray]) -> Prepared:
    import fastrnn

    training = mode == "train"
    parents = case.parents
    w = (a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    dh = np.ones((case.n_nodes, case.H), np.float32)
    # Inputs on some nodes only (the N-ary rows' leaves): their rows of x and input_nodes, as the
    # level-batched torch peer takes them; on every node: x as it is.
    every = case.input_nodes.size == case.n_nodes
    x = a["x"] if every else a["x"][case.input_nodes]
    nodes = None if every else case.input_nodes

    def run():
        forest = fastrnn.Forest(parents)
        res = fastrnn.tree_lstm_forward(x, forest, *w, arity=case.arity, training=training,
                                        input_nodes=nodes)
        return res, (fastrnn.tree_lstm_backward(res, dh) if training else None)

    def fetch(out) -> Dict[str, np.ndarray]:
        res, g = out
        got = {"h": res.h, "c": res.c}
        if g is not None:
            got.update(dx=g.dx, dw_ih=g.dw_ih, dw_hh=g.dw_hh, db_ih=g.db_ih,
                       db_hh=g.db_hh)
        return got

    return Prepared(run, fetch)  # what backward keeps is a compiled object: not counted


def prepare(case, mode: str, inputs: Dict[str, np.ndarray]) -> Prepared:
    fn = {"stacked": _stacked, "tree": _tree}.get(case.kind, _sequence)
    return fn(case, mode, inputs)
