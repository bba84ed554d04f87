"""PyTorch, level by level, as graph libraries batch trees: nodes grouped by height, one matmul
per level for the children's term, children gathered with index_select and summed into their
parent with index_add_.

Inside every timed call: the schedule (each node's height from the parent array, the nodes of
each level, the edges into each level, the N-ary child slots), then the input projection of every
input node in one matmul, then the levels, leaves first, each writing its h and c into the
(n_nodes, H) state with index_copy_. Child-Sum keeps the gates' weights in blocks iuo and f
(peers/tree_blocks.py); N-ary gathers [h_1, ..., h_N] from a state with one extra zero row for a
missing child. Training: loss = h.sum(), gradients to the input rows and every weight.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple

import numpy as np

import forests
from harness import Prepared
from peers import torch_peer, tree_blocks

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # an optional peer: skipped with a note
    torch = None

NAME = "torch_level"
TITLE = "PyTorch, by level"
COMPARE = True


# The peer interface: torch's availability and thread settings, the tree rows.
available, configure = torch_peer.available, torch_peer.configure
supports = tree_blocks.tree_rows_only


class Level(NamedTuple):
    nodes: "torch.Tensor"     # (m,) the level's nodes
    children: "torch.Tensor"  # Child-Sum (e,) the children of those nodes; N-ary (m*N,) slots
    parent: "torch.Tensor"    # Child-Sum (e,) each child's parent's position in `nodes`


def schedule(parents: np.ndarray, arity) -> List[Level]:
    """The levels of a forest, leaves first (what a graph library's topological batching does)."""
    n = parents.shape[0]
    height = forests.heights(parents)
    order = np.argsort(height, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(height))])
    position = np.empty(n, np.int64)  # a node's position within its level
    position[order] = np.arange(n) - offsets[height[order]]
    child = np.flatnonzero(parents >= 0)
    if arity is None:
        child = child[np.argsort(height[parents[child]], kind="stable")]
        edge_offsets = np.searchsorted(height[parents[child]], np.arange(offsets.size))
    else:  # slot p of node j: its p-th child in increasing index, else n (the zero row)
        by_parent = child[np.argsort(parents[child], kind="stable")]
        first = np.searchsorted(parents[by_parent], parents[by_parent])
        slots = np.full((n, arity), n, np.int64)
        slots[parents[by_parent], np.arange(by_parent.size) - first] = by_parent
    levels = []
    for lv in range(offsets.size - 1):
        nodes = order[offsets[lv]:offsets[lv + 1]]
        if arity is None:
            kids = child[edge_offsets[lv]:edge_offsets[lv + 1]]
            levels.append(Level(torch.from_numpy(nodes), torch.from_numpy(kids),
                                torch.from_numpy(position[parents[kids]])))
        else:
            levels.append(Level(torch.from_numpy(nodes), torch.from_numpy(slots[nodes].ravel()),
                                None))
    return levels


def childsum_forward(p, x, levels: List[Level], n: int, H: int):
    """x (n, I): every node has input. Returns h, c (n, H)."""
    wx_iuo = F.linear(x, p["w_iuo"], p["b_iuo"])
    wx_f = F.linear(x, p["w_f"], p["b_f"])
    h_all, c_all = x.new_zeros(n, H), x.new_zeros(n, H)
    for lv, level in enumerate(levels):
        m = level.nodes.numel()
        iuo = wx_iuo.index_select(0, level.nodes)
        if lv == 0:
            iuo = iuo + p["c_iuo"]
        else:
            child_h = h_all.index_select(0, level.children)
            child_c = c_all.index_select(0, level.children)
            h_sum = x.new_zeros(m, H).index_add_(0, level.parent, child_h)
            iuo = iuo + F.linear(h_sum, p["u_iuo"], p["c_iuo"])
            f = torch.sigmoid(wx_f.index_select(0, level.nodes).index_select(0, level.parent)
                              + F.linear(child_h, p["u_f"], p["c_f"]))
            fc = x.new_zeros(m, H).index_add_(0, level.parent, f * child_c)
        i, u, o = iuo.chunk(3, 1)
        c = torch.sigmoid(i) * torch.tanh(u)
        if lv > 0:
            c = c + fc
        h_all.index_copy_(0, level.nodes, torch.sigmoid(o) * torch.tanh(c))
        c_all.index_copy_(0, level.nodes, c)
    return h_all, c_all


def nary_forward(p, x_in, input_nodes, levels: List[Level], n: int, H: int, N: int):
    """x_in (n_in, I): the input nodes' rows. Returns h, c (n, H)."""
    wx = x_in.new_zeros(n, 4 * H).index_copy(0, input_nodes, F.linear(x_in, p["w_ih"]))
    wx = wx + p["b_ih"]
    h_all, c_all = x_in.new_zeros(n + 1, H), x_in.new_zeros(n + 1, H)  # row n: a missing child
    for lv, level in enumerate(levels):
        m = level.nodes.numel()
        x_i, x_f, x_u, x_o = wx.index_select(0, level.nodes).split(H, 1)
        if lv == 0:
            gh = p["b_hh"].unsqueeze(0)
        else:
            gh = F.linear(h_all.index_select(0, level.children).view(m, N * H), p["w_hh"],
                          p["b_hh"])
        h_i, h_f, h_u, h_o = gh.split((H, N * H, H, H), 1)
        c = torch.sigmoid(x_i + h_i) * torch.tanh(x_u + h_u)
        if lv > 0:
            f = torch.sigmoid(x_f.unsqueeze(1) + h_f.view(m, N, H))
            c = c + (f * c_all.index_select(0, level.children).view(m, N, H)).sum(1)
        h_all.index_copy_(0, level.nodes, torch.sigmoid(x_o + h_o) * torch.tanh(c))
        c_all.index_copy_(0, level.nodes, c)
    return h_all[:n], c_all[:n]


def prepare(case, mode: str, a: Dict[str, np.ndarray]) -> Prepared:
    training = mode == "train"
    H, N, n = case.H, case.arity, case.n_nodes
    names = tree_blocks.split_childsum(a, H) if N is None else {
        k: a[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh")}
    params = {k: torch.from_numpy(v.copy()).requires_grad_(training) for k, v in names.items()}
    x_in = torch.from_numpy(a["x"][case.input_nodes]).requires_grad_(training)
    input_nodes = torch.from_numpy(case.input_nodes)
    parents = case.parents

    def forward():
        levels = schedule(parents, N)
        if N is None:
            return childsum_forward(params, x_in, levels, n, H)
        return nary_forward(params, x_in, input_nodes, levels, n, H, N)

    def run():
        if not training:
            with torch.inference_mode():
                return forward()
        for t in list(params.values()) + [x_in]:
            t.grad = None
        h, c = forward()
        h.sum().backward()
        return h, c

    def fetch(out) -> Dict[str, np.ndarray]:
        h, c = out
        got = {"h": h.detach().numpy(), "c": c.detach().numpy()}
        if training:
            got["dx"] = x_in.grad.numpy()
            grads = {k: t.grad.numpy() for k, t in params.items()}
            got.update(tree_blocks.join_grads(grads, H) if N is None
                       else {"d" + k: v for k, v in grads.items()})
        return got

    return Prepared(run, fetch)
