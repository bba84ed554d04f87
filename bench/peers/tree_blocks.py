"""Tree-LSTM weights as hand-written Tree-LSTM code keeps them, shared by the tree peers.

Child-Sum code keeps separate layers for the i, u, o gates (applied to x and to the children's sum
h~) and for the forget gate (applied to x and to each child), so fastrnn's w_ih (4H, I), w_hh
(4H, H), b_ih, b_hh (4H,), rows i f u o, are split into blocks iuo (3H rows) and f (H rows), and
the peers' gradients are joined back. N-ary weights are used as they are. Also the children of
every node and each input node's row of x, as a dataset's tree objects would hold them.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np


def tree_rows_only(case, mode):
    """`supports` of a peer that runs the Tree-LSTM rows only."""
    return None if case.kind == "tree" else "Tree-LSTM rows only"


def iuo_rows(hidden: int) -> np.ndarray:
    return np.r_[0:hidden, 2 * hidden:4 * hidden]


def split_childsum(a: Dict[str, np.ndarray], hidden: int) -> Dict[str, np.ndarray]:
    """w_iuo (3H, I), w_f (H, I), b_iuo, b_f (x side); u_iuo (3H, H), u_f (H, H), c_iuo, c_f
    (h side); contiguous copies."""
    iuo, f = iuo_rows(hidden), slice(hidden, 2 * hidden)
    out = {}
    for x_side, h_side, (w, b) in (("w", "b", ("w_ih", "b_ih")), ("u", "c", ("w_hh", "b_hh"))):
        out[f"{x_side}_iuo"] = np.ascontiguousarray(a[w][iuo])
        out[f"{x_side}_f"] = np.ascontiguousarray(a[w][f])
        out[f"{h_side}_iuo"] = np.ascontiguousarray(a[b][iuo])
        out[f"{h_side}_f"] = np.ascontiguousarray(a[b][f])
    return out


def join_childsum(iuo: np.ndarray, f: np.ndarray, hidden: int) -> np.ndarray:
    """Rows i f u o from a block iuo (3H, ...) and a block f (H, ...)."""
    return np.concatenate([iuo[:hidden], f, iuo[hidden:]])


def join_grads(g: Dict[str, np.ndarray], hidden: int) -> Dict[str, np.ndarray]:
    """dw_ih, dw_hh, db_ih, db_hh from the gradients of split_childsum's blocks."""
    return {"dw_ih": join_childsum(g["w_iuo"], g["w_f"], hidden),
            "dw_hh": join_childsum(g["u_iuo"], g["u_f"], hidden),
            "db_ih": join_childsum(g["b_iuo"], g["b_f"], hidden),
            "db_hh": join_childsum(g["c_iuo"], g["c_f"], hidden)}


def children(parents: np.ndarray) -> List[List[int]]:
    """The children of every node in increasing index (the N-ary positions 1..N)."""
    kids: List[List[int]] = [[] for _ in range(parents.shape[0])]
    for j, p in enumerate(parents.tolist()):
        if p >= 0:
            kids[p].append(j)
    return kids


def input_row(case) -> np.ndarray:
    """(n_nodes,) the row of each node in x[case.input_nodes], -1 for a node without input."""
    row = np.full(case.n_nodes, -1, np.int64)
    row[case.input_nodes] = np.arange(case.input_nodes.size)
    return row
