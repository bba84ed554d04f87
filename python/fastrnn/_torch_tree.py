"""torch.nn.Module Tree-LSTM over fastrnn's kernels: autograd runs fastrnn's own backward.
Imports torch; use it as fastrnn.torch.TreeLSTM. CPU tensors run on the CPU kernels (as NumPy
views of the same memory), CUDA tensors on the CUDA kernels, results on the current stream."""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple, Union

import torch
from torch import nn

from ._torch_common import _array, _check_device, _tensor
from .tree import Forest, as_forest, check_arity, hh_shapes, tree_lstm_backward, tree_lstm_forward

__all__ = ["TreeLSTM"]


class _TreeLSTMFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_ih, w_hh, b_ih, b_hh, forest, arity,  # type: ignore[override]
                input_nodes):
        result = tree_lstm_forward(_array(x), forest, _array(w_ih), _array(w_hh), _array(b_ih),
                                   _array(b_hh), arity=arity, training=True,
                                   input_nodes=input_nodes)
        ctx.result = result
        return _tensor(result.h), _tensor(result.c)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dh, dc):  # type: ignore[override]
        g = tree_lstm_backward(ctx.result, _array(dh), _array(dc))
        return (_tensor(g.dx), _tensor(g.dw_ih), _tensor(g.dw_hh), _tensor(g.db_ih),
                _tensor(g.db_hh), None, None, None)


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
        """Every parameter uniform in +-1/sqrt(hidden_size), as torch.nn.LSTM initializes."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, forest: Union[Forest, Any],
                input_nodes: Any = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """x (n_nodes, I), or (k, I) with input_nodes (k,); returns h, c (n_nodes, H)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        _check_device("x", x, x.device)
        for name, p in self.named_parameters():
            _check_device(f"parameter {name}", p, x.device)
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
        r = tree_lstm_forward(_array(x), forest, *(_array(p) for p in params), arity=self.arity,
                              training=False, input_nodes=input_nodes)
        return _tensor(r.h), _tensor(r.c)

    def extra_repr(self) -> str:
        kind = "child-sum" if self.arity is None else f"arity={self.arity}"
        return f"{self.input_size}, {self.hidden_size}, {kind}, bias={self.bias}"
