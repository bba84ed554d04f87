"""The NumPy reference (fastrnn.reference): timed in float32 like every backend, and run in
float64 as the oracle every backend is checked against.

The loss of training mode is y.sum() + h_n.sum(): dy = 1, dh_n = 1, dc_n = 0; for the Tree-LSTM
rows h.sum() over every node: dh = 1, dc = 0, and dx is compared on the input nodes only.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from harness import Prepared, numpy_kept_bytes

NAME = "reference"
TITLE = "NumPy reference"
COMPARE = False  # shown, but not one of the peers a user would pick instead of fastrnn


def available():
    try:
        import fastrnn.reference  # noqa: F401
    except ImportError as e:
        return f"fastrnn.reference not importable ({e})"
    return None


def configure(threads: int) -> dict:
    return {"version": np.__version__, "threads": threads,
            "blas": "numpy's BLAS (OPENBLAS_NUM_THREADS/OMP_NUM_THREADS set by the runner)"}


def supports(case, mode):
    return None


def _cast(inputs: Dict[str, np.ndarray], dtype) -> Dict[str, np.ndarray]:
    return {k: v.astype(dtype) for k, v in inputs.items()}


def _sequence(case, mode: str, a: Dict[str, np.ndarray]) -> Tuple[Any, Dict[str, np.ndarray]]:
    from fastrnn import reference as ref

    training = mode == "train"
    weights = (a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    if case.cell == "lstm":
        res = ref.lstm_forward(a["x"], a["h0"], a["c0"], *weights, training=training)
    elif case.cell == "gru":
        res = ref.gru_forward(a["x"], a["h0"], *weights, training=training)
    else:
        res = ref.rnn_forward(a["x"], a["h0"], *weights, nonlinearity=case.cell[4:],
                              training=training)
    out = {"y": res.y, "h_n": res.h_n}
    if case.cell == "lstm":
        out["c_n"] = res.c_n
    if not training:
        return res, out
    ones_y, ones_h = np.ones_like(res.y), np.ones_like(res.h_n)
    if case.cell == "lstm":
        g = ref.lstm_backward(res, ones_y, ones_h, None)
    elif case.cell == "gru":
        g = ref.gru_backward(res, ones_y, ones_h)
    else:
        g = ref.rnn_backward(res, ones_y, ones_h)
    out.update(dx=g.dx, dw_ih=g.dw_ih, dw_hh=g.dw_hh, db_ih=g.db_ih, db_hh=g.db_hh)
    return res, out


def _stacked(case, mode: str, a: Dict[str, np.ndarray]) -> Tuple[Any, Dict[str, np.ndarray]]:
    """Layer by layer, direction by direction: the reverse direction runs on x[::-1]."""
    from fastrnn import reference as ref

    training = mode == "train"
    layer_in, results, h_n, c_n = a["x"], [], [], []
    for layer in range(case.layers):
        ys = []
        for d in range(case.directions):
            idx = layer * case.directions + d
            names = case.param_names(layer, d)
            x_d = layer_in if d == 0 else np.ascontiguousarray(layer_in[::-1])
            res = ref.lstm_forward(x_d, a["h0"][idx], a["c0"][idx], *(a[n] for n in names),
                                   training=training)
            results.append(res)
            ys.append(res.y if d == 0 else res.y[::-1])
            h_n.append(res.h_n)
            c_n.append(res.c_n)
        layer_in = np.concatenate(ys, axis=2)
    out = {"y": layer_in, "h_n": np.stack(h_n), "c_n": np.stack(c_n)}
    if not training:
        return results, out
    H = case.H
    dy = np.ones_like(layer_in)
    for layer in reversed(range(case.layers)):
        dx = None
        for d in range(case.directions):
            res = results[layer * case.directions + d]
            dy_d = dy[:, :, d * H:(d + 1) * H]
            dy_d = np.ascontiguousarray(dy_d if d == 0 else dy_d[::-1])
            g = ref.lstm_backward(res, dy_d, np.ones_like(res.h_n), None)
            gx = g.dx if d == 0 else g.dx[::-1]
            dx = gx if dx is None else dx + gx
            for name, grad in zip(case.param_names(layer, d), (g.dw_ih, g.dw_hh, g.db_ih, g.db_hh)):
                out["d" + name] = grad
        dy = dx
    out["dx"] = dy
    return results, out


def _tree(case, mode: str, a: Dict[str, np.ndarray]) -> Tuple[Any, Dict[str, np.ndarray]]:
    """Node by node over the case's forest (fastrnn.reference.tree_lstm_forward/_backward)."""
    from fastrnn import reference as ref

    res = ref.tree_lstm_forward(a["x"], case.parents, a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"],
                                arity=case.arity, training=mode == "train")
    out = {"h": res.h, "c": res.c}
    if mode != "train":
        return res, out
    g = ref.tree_lstm_backward(res, np.ones_like(res.h), None)
    out.update(dx=g.dx[case.input_nodes], dw_ih=g.dw_ih, dw_hh=g.dw_hh, db_ih=g.db_ih,
               db_hh=g.db_hh)
    return res, out


_KINDS = {"sequence": _sequence, "stacked": _stacked, "tree": _tree}


def compute(case, mode: str, inputs: Dict[str, np.ndarray], dtype=np.float64):
    """(what is held, the named outputs) of the reference on a case, in `dtype`."""
    return _KINDS[case.kind](case, mode, _cast(inputs, dtype))


def expected(case, mode: str, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The oracle: the reference in float64 on the float32 inputs."""
    return compute(case, mode, inputs, np.float64)[1]


def prepare(case, mode: str, inputs: Dict[str, np.ndarray]) -> Prepared:
    a = _cast(inputs, np.float32)
    fn = _KINDS[case.kind]

    def kept():
        held, _ = fn(case, "train", a)
        return numpy_kept_bytes(held, a.values())

    return Prepared(run=lambda: fn(case, mode, a), fetch=lambda out: out[1],
                    kept=kept if mode == "train" else None)
