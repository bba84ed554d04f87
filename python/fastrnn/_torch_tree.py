"""torch.nn.Module Tree-LSTM over fastrnn's kernels: autograd runs fastrnn's own backward.
Imports torch; use it as fastrnn.torch.TreeLSTM. CPU tensors only for now."""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from .tree import Forest, as_forest, check_arity, hh_shapes, tree_lstm_backward, tree_lstm_forward

__all__ = ["TreeLSTM"]


def _numpy(t: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    return None if t is None else t.detach().contiguous().numpy()


class _TreeLSTMFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_ih, w_hh, b_ih, b_hh, forest, arity,  # type: ignore[override]
                input_nodes):
        result = tree_lstm_forward(_numpy(x), forest, _numpy(w_ih), _numpy(w_hh), _numpy(b_ih),
                                   _numpy(b_hh), arity=arity, training=True,
                                   input_nodes=input_nodes)
        ctx.result = result
        return torch.from_numpy(result.h), torch.from_numpy(result.c)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dh, dc):  # type: ignore[override]
        g = tree_lstm_backward(ctx.result, _numpy(dh), _numpy(dc))
        wrap = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
        return (wrap(g.dx), wrap(g.dw_ih), wrap(g.dw_hh), wrap(g.db_ih), wrap(g.db_hh), None,
                None, None)


class TreeLSTM(nn.Module):
    """Tree-LSTM over a batch of trees (see fastrnn.tree): Child-Sum (arity=None) or N-ary.

    Parameters: weight_ih (4H, I), weight_hh (4H, H) or ((3+N)H, N*H), bias_ih (4H,),
    bias_hh (4H,) or ((3+N)H,), initialised U(-1/sqrt(H), 1/sqrt(H)) as in torch.nn.LSTM.
    forward(x, forest) with x (n_nodes, I) and forest a fastrnn.Forest or a parents array
    returns h, c (n_nodes, H); forward(x, forest, input_nodes) takes x (k, I), the rows of the k
    nodes listed (fastrnn.tree_lstm_forward's input_nodes).
    """

    def __init__(self, input_size: int, hidden_size: int, arity: Optional[int] = None,
                 bias: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), bias
        self.arity = check_arity(arity) or None
        kw = {"device": device, "dtype": dtype}
        hh, _, bh, _ = hh_shapes(self.hidden_size, self.arity or 0)
        self.weight_ih = nn.Parameter(torch.empty(4 * self.hidden_size, self.input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(*hh, **kw))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(4 * self.hidden_size, **kw))
            self.bias_hh = nn.Parameter(torch.empty(*bh, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, forest: Union[Forest, Any],
                input_nodes: Any = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """x (n_nodes, I), or (k, I) with input_nodes (k,); returns h, c (n_nodes, H)."""
        if x.device.type != "cpu" or self.weight_ih.device.type != "cpu":
            raise ValueError("fastrnn.torch.TreeLSTM runs on CPU tensors only, got x on "
                             f"{x.device} and parameters on {self.weight_ih.device}")
        if x.dtype != self.weight_ih.dtype:
            raise TypeError(f"x must have the parameters' dtype {self.weight_ih.dtype}, "
                            f"got {x.dtype}")
        forest = as_forest(forest)
        if isinstance(input_nodes, torch.Tensor):
            input_nodes = input_nodes.detach().cpu().numpy()
        params = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        if torch.is_grad_enabled() and (x.requires_grad or any(
                p is not None and p.requires_grad for p in params)):
            return _TreeLSTMFunction.apply(x, *params, forest, self.arity, input_nodes)
        r = tree_lstm_forward(_numpy(x), forest, *(_numpy(p) for p in params), arity=self.arity,
                              training=False, input_nodes=input_nodes)
        return torch.from_numpy(r.h), torch.from_numpy(r.c)

    def extra_repr(self) -> str:
        kind = "child-sum" if self.arity is None else f"arity={self.arity}"
        return f"{self.input_size}, {self.hidden_size}, {kind}, bias={self.bias}"
