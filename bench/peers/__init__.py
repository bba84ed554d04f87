"""The backends, one small module each, all with the same few names:

    NAME, TITLE         the name options and JSON use, the name the table shows
    COMPARE             True for the peers a user would pick instead of fastrnn (the ratio's pool)
    available()         None, or a note saying why the backend cannot run here (a missing package)
    configure(threads)  set the backend's thread count; returns a dict of what it runs with
    supports(case, mode) None, or a note saying why this row has no figure for the backend
    prepare(case, mode, inputs) -> harness.Prepared
    EXCLUDE_ON_MISMATCH  optional, True: a mismatch with the reference is a note on the row and
                        the backend is not timed there, instead of stopping the run (DyNet only)

A new backend is a new module listed in PEERS. The Tree-LSTM peers (tree_*) run the tree rows only.
"""

from __future__ import annotations

import importlib

PEERS = {
    "fastrnn": "peers.fastrnn_peer",
    "reference": "peers.reference_peer",
    "torch": "peers.torch_peer",
    "onnx": "peers.onnx_peer",
    "jax": "peers.jax_peer",
    "torch_node": "peers.tree_torch_pernode",
    "torch_level": "peers.tree_torch_levels",
    "dynet": "peers.tree_dynet",
}


def load(name: str):
    """The module of a backend; a peer whose package is missing imports fine and says so in
    available()."""
    return importlib.import_module(PEERS[name])
