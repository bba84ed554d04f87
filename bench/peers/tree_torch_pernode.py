"""PyTorch, one module call per node: the style of the widely used public Tree-LSTM code.

Each tree is walked recursively from its root; a node's cell (a torch.nn.Module) runs after its
children's, with their h and c stacked by torch.cat: Child-Sum (k, H) rows, the cell summing them
for h~ and applying U_f to each; N-ary [h_1, ..., h_N] (1, N*H), zeros for a missing child. The
Child-Sum cell keeps the gates' weights in blocks iuo and f (peers/tree_blocks.py), as such code
does. A leaf has no child term; a node without input (N-ary inner nodes) no W x term.

x holds the input nodes' rows only, split into one row per node by unbind (one autograd node, so
that backward gathers dx in one stack); h and c of every node are concatenated in node order at
the end: the forward's outputs, and loss = h.sum() in training mode. Inference runs under
torch.inference_mode(). The children lists are the dataset's tree objects, built in prepare.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from harness import Prepared
from peers import torch_peer, tree_blocks

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:  # an optional peer: skipped with a note
    torch = None

NAME = "torch_node"
TITLE = "PyTorch, per node"
COMPARE = True


# The peer interface: torch's availability and thread settings, the tree rows.
available, configure = torch_peer.available, torch_peer.configure
supports = tree_blocks.tree_rows_only


if torch is not None:
    class ChildSumCell(nn.Module):
        def __init__(self, blocks: Dict[str, np.ndarray]) -> None:
            super().__init__()
            for name, value in blocks.items():
                setattr(self, name, nn.Parameter(torch.from_numpy(value.copy())))

        def forward(self, x, child_h, child_c):
            """x (1, I); child_h, child_c (k, H), None for a leaf. Returns h, c (1, H)."""
            iuo = F.linear(x, self.w_iuo, self.b_iuo)
            if child_h is None:
                iuo = iuo + self.c_iuo
            else:
                iuo = iuo + F.linear(child_h.sum(0, keepdim=True), self.u_iuo, self.c_iuo)
                f = torch.sigmoid(F.linear(x, self.w_f, self.b_f)
                                  + F.linear(child_h, self.u_f, self.c_f))
            i, u, o = iuo.chunk(3, 1)
            c = torch.sigmoid(i) * torch.tanh(u)
            if child_h is not None:
                c = c + (f * child_c).sum(0, keepdim=True)
            return torch.sigmoid(o) * torch.tanh(c), c

    class NaryCell(nn.Module):
        def __init__(self, a: Dict[str, np.ndarray], arity: int) -> None:
            super().__init__()
            self.arity = arity
            for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
                setattr(self, name, nn.Parameter(torch.from_numpy(a[name].copy())))

        def forward(self, x, child_h, child_c):
            """x (1, I) or None (no input); child_h (1, N*H), child_c (N, H), None for a leaf."""
            H = self.w_hh.shape[1] // self.arity
            gx = self.b_ih.unsqueeze(0) if x is None else F.linear(x, self.w_ih, self.b_ih)
            gh = (self.b_hh.unsqueeze(0) if child_h is None
                  else F.linear(child_h, self.w_hh, self.b_hh))
            x_i, x_f, x_u, x_o = gx.split(H, 1)
            h_i, h_f, h_u, h_o = gh.split((H, self.arity * H, H, H), 1)
            c = torch.sigmoid(x_i + h_i) * torch.tanh(x_u + h_u)
            if child_h is not None:
                f = torch.sigmoid(x_f + h_f.view(self.arity, H))
                c = c + (f * child_c).sum(0, keepdim=True)
            return torch.sigmoid(x_o + h_o) * torch.tanh(c), c


def prepare(case, mode: str, a: Dict[str, np.ndarray]) -> Prepared:
    training = mode == "train"
    H, N, n = case.H, case.arity, case.n_nodes
    childsum = N is None
    cell = ChildSumCell(tree_blocks.split_childsum(a, H)) if childsum else NaryCell(a, N)
    kids = tree_blocks.children(case.parents)
    row = tree_blocks.input_row(case).tolist()
    roots = np.flatnonzero(case.parents < 0).tolist()
    x_in = torch.from_numpy(a["x"][case.input_nodes])
    if training:
        x_in.requires_grad_()
    zeros = torch.zeros(1, H)

    def forward():
        rows = x_in.unbind(0)
        hs, cs = [None] * n, [None] * n

        def visit(j):
            for k in kids[j]:
                visit(k)
            x = rows[row[j]].unsqueeze(0) if row[j] >= 0 else None
            if not kids[j]:
                hs[j], cs[j] = cell(x, None, None)
            elif childsum:
                hs[j], cs[j] = cell(x, torch.cat([hs[k] for k in kids[j]], 0),
                                    torch.cat([cs[k] for k in kids[j]], 0))
            else:
                pad = [zeros] * (N - len(kids[j]))
                hs[j], cs[j] = cell(x, torch.cat([hs[k] for k in kids[j]] + pad, 1),
                                    torch.cat([cs[k] for k in kids[j]] + pad, 0))

        for r in roots:
            visit(r)
        return torch.cat(hs, 0), torch.cat(cs, 0)

    def run():
        if not training:
            with torch.inference_mode():
                return forward()
        cell.zero_grad(set_to_none=True)
        x_in.grad = None
        h, c = forward()
        h.sum().backward()
        return h, c

    def fetch(out) -> Dict[str, np.ndarray]:
        h, c = out
        got = {"h": h.detach().numpy(), "c": c.detach().numpy()}
        if training:
            got["dx"] = x_in.grad.numpy()
            grads = {name: p.grad.numpy() for name, p in cell.named_parameters()}
            got.update(tree_blocks.join_grads(grads, H) if childsum
                       else {"d" + k: v for k, v in grads.items()})
        return got

    return Prepared(run, fetch)
