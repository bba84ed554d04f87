"""DyNet with autobatching (the `dynet38` wheels on PyPI; optional): the Tree-LSTM written node
by node as DyNet code is written, DyNet batching the nodes' operations itself.

Per call: dy.renew_cg(), then every tree walked recursively from its root, each node's
expressions built after its children's (Child-Sum: affine_transform of x and h~ for the i, u, o
gates, U_f on each child; N-ary: one affine_transform of [h_1; ...; h_N], zeros for a missing
child); h and c of every node concatenated (H, n_nodes). Inference: forward of both. Training:
loss = sum of h, forward, backward. The input rows are a LookupParameters of the input nodes (an
embedding table), read with dy.lookup; the weights are Parameters (Child-Sum in blocks iuo and f,
peers/tree_blocks.py). DyNet adds gradients into its parameters; the checked call is the first
on fresh parameters, and the timed calls leave them to accumulate (no update step is measured).

DyNet runs on one thread (its CPU build uses Eigen without a thread pool) whatever the count.
Its memory is allocated when it loads (FASTRNN_BENCH_DYNET_MEM MiB, default 1536): a larger
forest than the suite's may need more, and then fails with a note.
Its autobatching is known to give wrong gradients for some graph shapes: a mismatch is reported
in the row's notes and DyNet is not timed on that row (EXCLUDE_ON_MISMATCH); the run goes on.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from typing import Dict

import numpy as np

from harness import Prepared
from peers import tree_blocks

# Autobatching needs DyNet's memory allocated, and touched, when it loads (its pools cannot grow
# then): MiB, about twice what the 256-tree N-ary training graph needs (768 is enough, 640 not).
# DyNet is loaded by the first prepare(), so that a run without tree rows does not hold it.
MEMORY_MB = os.environ.get("FASTRNN_BENCH_DYNET_MEM", "1536")

NAME = "dynet"
TITLE = "DyNet, autobatching"
COMPARE = True
EXCLUDE_ON_MISMATCH = True

dy = None


def _load():
    global dy
    if dy is None:
        import dynet_config

        dynet_config.set(mem=MEMORY_MB, random_seed=1, autobatch=1)  # read when dynet loads
        import dynet

        dy = dynet
    return dy


def available():
    if importlib.util.find_spec("dynet") is None or importlib.util.find_spec("dynet_config") is None:
        return "dynet not installed (pip install dynet38)"
    return None


def configure(threads: int) -> dict:
    try:
        version = importlib.metadata.version("dynet38")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return {"version": version, "threads": 1, "autobatch": 1, "mem_mb": MEMORY_MB}


def supports(case, mode):
    return None if case.kind == "tree" else "Tree-LSTM rows only"


def _childsum_node(p, x, kids_h, kids_c, H):
    """Expressions h, c of one Child-Sum node; kids_h/kids_c lists (empty for a leaf)."""
    if kids_h:
        iuo = dy.affine_transform([p["b_iuo"], p["w_iuo"], x, p["u_iuo"], dy.esum(kids_h)])
        fx = dy.affine_transform([p["b_f"], p["w_f"], x]) + p["c_f"]
    else:
        iuo = dy.affine_transform([p["b_iuo"], p["w_iuo"], x])
    iuo = iuo + p["c_iuo"]
    c = dy.cmult(dy.logistic(dy.pick_range(iuo, 0, H)), dy.tanh(dy.pick_range(iuo, H, 2 * H)))
    if kids_h:
        c = c + dy.esum([dy.cmult(dy.logistic(fx + p["u_f"] * h_k), c_k)
                         for h_k, c_k in zip(kids_h, kids_c)])
    return dy.cmult(dy.logistic(dy.pick_range(iuo, 2 * H, 3 * H)), dy.tanh(c)), c


def _nary_node(p, x, kids_h, kids_c, H, N, zero):
    """Expressions h, c of one N-ary node; x None without input; kids empty for a leaf."""
    gx = p["b_ih"] if x is None else dy.affine_transform([p["b_ih"], p["w_ih"], x])
    if kids_h:
        pad = [zero] * (N - len(kids_h))
        gh = dy.affine_transform([p["b_hh"], p["w_hh"], dy.concatenate(kids_h + pad)])
    else:
        gh = p["b_hh"]

    def gate(k_x, k_h):
        return dy.pick_range(gx, k_x * H, (k_x + 1) * H) + dy.pick_range(gh, k_h * H,
                                                                          (k_h + 1) * H)

    c = dy.cmult(dy.logistic(gate(0, 0)), dy.tanh(gate(2, 1 + N)))
    if kids_h:
        c = c + dy.esum([dy.cmult(dy.logistic(gate(1, 1 + pos)), c_k)
                         for pos, c_k in enumerate(kids_c)])
    return dy.cmult(dy.logistic(gate(3, 2 + N)), dy.tanh(c)), c


def prepare(case, mode: str, a: Dict[str, np.ndarray]) -> Prepared:
    _load()
    training = mode == "train"
    H, N, n = case.H, case.arity, case.n_nodes
    model = dy.ParameterCollection()
    names = tree_blocks.split_childsum(a, H) if N is None else {
        k: a[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh")}
    params = {k: model.parameters_from_numpy(v.astype(np.float64)) for k, v in names.items()}
    table = model.lookup_parameters_from_numpy(a["x"][case.input_nodes].astype(np.float64))
    kids = tree_blocks.children(case.parents)
    row = tree_blocks.input_row(case).tolist()
    roots = np.flatnonzero(case.parents < 0).tolist()

    def run():
        assert model is not None  # the collection owns the parameters' memory: keep it alive
        dy.renew_cg()
        p = params  # a Parameters object joins the graph where it is used
        zero = dy.zeros(H)
        hs, cs = [None] * n, [None] * n

        def visit(j):
            for k in kids[j]:
                visit(k)
            x = dy.lookup(table, row[j]) if row[j] >= 0 else None
            kh, kc = [hs[k] for k in kids[j]], [cs[k] for k in kids[j]]
            hs[j], cs[j] = (_childsum_node(p, x, kh, kc, H) if N is None
                            else _nary_node(p, x, kh, kc, H, N, zero))

        for r in roots:
            visit(r)
        h, c = dy.concatenate_cols(hs), dy.concatenate_cols(cs)
        if training:
            loss = dy.sum_elems(h)
            loss.forward()
            loss.backward()
        else:
            h.forward()
            c.forward()
        return h, c

    def fetch(out) -> Dict[str, np.ndarray]:
        h, c = out
        got = {"h": h.npvalue().T, "c": c.npvalue().T}
        if training:
            got["dx"] = table.grad_as_array()
            grads = {k: v.grad_as_array() for k, v in params.items()}
            got.update(tree_blocks.join_grads(grads, H) if N is None
                       else {"d" + k: v for k, v in grads.items()})
        return got

    return Prepared(run, fetch)
