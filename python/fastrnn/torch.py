"""PyTorch drop-in: fastrnn.torch.RNN, LSTM and GRU are torch.nn.Modules with torch.nn's
constructor, forward signature, parameter names and initialisation, computed by fastrnn's stack.

    import fastrnn.torch as frt
    lstm = frt.LSTM(32, 64, num_layers=2, batch_first=True)
    lstm.load_state_dict(torch_lstm.state_dict())      # and the other way round
    out, (h_n, c_n) = lstm(x)                           # x: (B, T, 32) or a PackedSequence

Autograd goes through fastrnn's backward (one torch.autograd.Function around
fastrnn.layers.stack_forward/stack_backward). CPU tensors reach the CPU kernels as NumPy views of
the same memory (copied only where the kernels need a contiguous time-major layout); CUDA
tensors go to fastrnn's CUDA kernels as they are, results coming back as CUDA tensors on the
current stream. Dropout follows torch.nn's semantics (between layers, not after the last, only
in training mode), with masks drawn by fastrnn from a seed taken from torch's random generator:
torch.manual_seed makes it reproducible, but the masks differ from torch.nn's.

This module imports torch; `import fastrnn` never imports it.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import layers
from ._torch_common import _array, _check_device, _tensor
from ._torch_tree import TreeLSTM

__all__ = ["RNN", "LSTM", "GRU", "TreeLSTM"]

_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
_DTYPES = (torch.float32, torch.float64)


class _StackFunction(torch.autograd.Function):
    """(x, h0, c0, *weights) -> (y, h_n[, c_n]) through fastrnn.layers, padded time-major."""

    @staticmethod
    def forward(ctx: Any, spec: dict, x: Tensor, h0: Optional[Tensor], c0: Optional[Tensor],
                *weights: Tensor) -> tuple[Tensor, ...]:
        result = layers.stack_forward(
            spec["cell"], _array(x), h0=_array(h0), c0=_array(c0),
            weights={name: _array(w) for name, w in zip(spec["names"], weights)},
            num_layers=spec["num_layers"], bidirectional=spec["bidirectional"],
            proj_size=spec["proj_size"], lengths=spec["lengths"], dropout=spec["dropout"],
            seed=spec["seed"], training=spec["training"])
        outputs = (_tensor(result.y), _tensor(result.h_n))
        if spec["cell"] == "lstm":
            outputs += (_tensor(result.c_n),)
        ctx.set_materialize_grads(False)
        ctx.result = result
        ctx.spec = spec
        ctx.has_state = (h0 is not None, c0 is not None)
        ctx.outputs = len(outputs)
        # The stack's context holds views of the inputs and weights and the outputs themselves:
        # saving them lets autograd refuse a backward after any of them changed in place.
        ctx.save_for_backward(x, h0, c0, *weights, *outputs)
        return outputs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, dy: Optional[Tensor], dh_n: Optional[Tensor],
                 dc_n: Optional[Tensor] = None) -> tuple[Optional[Tensor], ...]:
        saved = ctx.saved_tensors  # raises if an input, weight or output was changed in place
        if dy is None:
            dy = torch.zeros_like(saved[-ctx.outputs])  # the saved y
        g = layers.stack_backward(ctx.result, _array(dy), dh_n=_array(dh_n), dc_n=_array(dc_n))
        has_h0, has_c0 = ctx.has_state
        weight_grads = [_tensor(g.grads[name]) for name in ctx.spec["names"]]
        return (None, _tensor(g.dx), _tensor(g.dh0) if has_h0 else None,
                _tensor(g.dc0) if has_c0 else None, *weight_grads)


class _RNNBase(torch.nn.Module):
    """Shared parameters and forward of RNN, LSTM and GRU (torch.nn.RNNBase's layout)."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers), ("proj_size", proj_size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        for name, value in (("bias", bias), ("batch_first", batch_first),
                            ("bidirectional", bidirectional)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
        if input_size < 1 or hidden_size < 1 or num_layers < 1:
            raise ValueError("input_size, hidden_size and num_layers must be >= 1, got "
                             f"{input_size}, {hidden_size}, {num_layers}")
        if not 0 <= proj_size < hidden_size:
            raise ValueError(f"proj_size must be 0 (no projection) or in [1, hidden_size) = "
                             f"[1, {hidden_size}), got {proj_size}")
        if (isinstance(dropout, bool) or not isinstance(dropout, numbers.Real)
                or not 0 <= dropout <= 1):
            raise ValueError(f"dropout must be a probability in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout is applied between recurrent layers (not after the last), so "
                          f"dropout={dropout} has no effect with num_layers=1", stacklevel=3)
        self.cell = cell
        self.mode = {"rnn_tanh": "RNN_TANH", "rnn_relu": "RNN_RELU"}.get(cell, cell.upper())
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size

        factory = {"device": device, "dtype": dtype}
        gates = _GATES[cell] * hidden_size
        out_size = proj_size or hidden_size
        directions = 2 if bidirectional else 1
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else out_size * directions
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                shapes = {"weight_ih": (gates, layer_input), "weight_hh": (gates, out_size)}
                if bias:
                    shapes.update(bias_ih=(gates,), bias_hh=(gates,))
                if proj_size:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                names = []
                for kind, shape in shapes.items():
                    self.register_parameter(kind + suffix,
                                            torch.nn.Parameter(torch.empty(shape, **factory)))
                    names.append(kind + suffix)
                self._flat_weights_names += names
                self._all_weights.append(names)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every parameter uniform in [-1/sqrt(hidden_size), 1/sqrt(hidden_size)], as torch.nn."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for weight in self.parameters():
                weight.uniform_(-bound, bound)

    @property
    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[torch.nn.Parameter]]:
        """Parameters per layer and direction, in torch.nn's order."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """No-op, for code written for torch.nn (it matters only for cuDNN)."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False),
                              ("dropout", 0.0), ("bidirectional", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s

    # ---- forward -------------------------------------------------------------------------

    def _run(self, input: Union[Tensor, PackedSequence], hx: Sequence[Optional[Tensor]]):
        """Shared forward; hx = (h0,) or (h0, c0), entries None for zeros."""
        packed = isinstance(input, PackedSequence)
        if packed:
            x, lengths = pad_packed_sequence(input)  # (T, B, I), original batch order
            batched = True
        else:
            if not isinstance(input, Tensor):
                raise TypeError(f"input must be a torch.Tensor or a PackedSequence, got "
                                f"{type(input).__name__}")
            if input.dim() not in (2, 3):
                raise ValueError(f"input must have shape (T, B, I), (B, T, I) with batch_first "
                                 f"or (T, I) unbatched, got {tuple(input.shape)}")
            batched = input.dim() == 3
            x = input if batched else input.unsqueeze(1)
            if batched and self.batch_first:
                x = x.transpose(0, 1)
            lengths = None
        weights = self._flat_weights
        self._check_tensors(x, hx, weights, batched)
        if not batched:
            hx = [None if h is None else h.unsqueeze(1) for h in hx]

        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(h is not None and h.requires_grad for h in hx)
            or any(w.requires_grad for w in weights))
        drop = self.dropout if self.training and self.num_layers > 1 else 0.0
        seed = int(torch.randint(0, 2 ** 62, ()).item()) if drop > 0 else None
        spec = dict(cell=self.cell, names=self._flat_weights_names, num_layers=self.num_layers,
                    bidirectional=self.bidirectional, proj_size=self.proj_size,
                    lengths=None if lengths is None else lengths.numpy(), dropout=drop,
                    seed=seed, training=bool(needs_grad or drop > 0))
        h0 = hx[0]
        c0 = hx[1] if len(hx) > 1 else None
        outputs = _StackFunction.apply(spec, x, h0, c0, *weights)
        y, states = outputs[0], outputs[1:]

        if packed:
            y = _pack_like(y, lengths, input)
        elif not batched:
            y = y.squeeze(1)
            states = tuple(s.squeeze(1) for s in states)
        elif self.batch_first:
            y = y.transpose(0, 1)
        return y, states

    def _check_tensors(self, x: Tensor, hx: Sequence[Optional[Tensor]], weights: list[Tensor],
                       batched: bool) -> None:
        _check_device("input", x, x.device)
        for i, w in enumerate(weights):
            _check_device(f"parameter {self._flat_weights_names[i]}", w, x.device)
        dtype = weights[0].dtype
        if dtype not in _DTYPES:
            raise TypeError(f"the module's parameters must be float32 or float64, got {dtype}")
        if x.dtype != dtype:
            raise TypeError(f"input must have the parameters' dtype {dtype}, got {x.dtype}; "
                            f"convert the input (input.to({dtype})) or the module")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"input's last dimension must be input_size = {self.input_size}, "
                             f"got {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"input must have at least one time step, got shape {tuple(x.shape)}")
        layers_dirs = self.num_layers * (2 if self.bidirectional else 1)
        batch = (x.shape[1],) if batched else ()
        for name, h, size, what in (("h0", hx[0], self.proj_size or self.hidden_size, "H_out"),
                                    ("c0", hx[1] if len(hx) > 1 else None, self.hidden_size,
                                     "hidden_size")):
            if h is None:
                continue
            if not isinstance(h, Tensor):
                raise TypeError(f"hx's {name} must be a torch.Tensor, got {type(h).__name__}")
            _check_device(f"hx's {name}", h, x.device)
            if h.dtype != dtype:
                raise TypeError(f"hx's {name} must have the parameters' dtype {dtype}, "
                                f"got {h.dtype}")
            shape = (layers_dirs, *batch, size)
            symbols = "(num_layers * num_directions, " + ("B, " if batched else "") + what + ")"
            if tuple(h.shape) != shape:
                raise ValueError(f"hx's {name} must have shape {symbols} = {shape}, "
                                 f"got {tuple(h.shape)}")


def _pack_like(y: Tensor, lengths: Tensor, like: PackedSequence) -> PackedSequence:
    """Padded (T, B, F) in original batch order -> a PackedSequence with `like`'s batch order."""
    order = like.sorted_indices
    if order is not None:
        y, lengths = y.index_select(1, order), lengths.index_select(0, order)
    data = pack_padded_sequence(y, lengths, enforce_sorted=True).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


class RNN(_RNNBase):
    """Elman RNN, h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act tanh or relu.

    RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None), as
    torch.nn.RNN. forward(input, hx=None) -> (output, h_n): input (T, B, I), (B, T, I) with
    batch_first, (T, I) unbatched, or a PackedSequence; hx (num_layers * D, B, H);
    output (T, B, D * H) (or batch-first / packed like the input); h_n (num_layers * D, B, H).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device: Any = None,
                 dtype: Any = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, 0, device, dtype)

    def forward(self, input: Union[Tensor, PackedSequence],
                hx: Optional[Tensor] = None) -> tuple[Union[Tensor, PackedSequence], Tensor]:
        """See the class docstring; returns (output, h_n)."""
        y, (h_n,) = self._run(input, (hx,))
        return y, h_n


class LSTM(_RNNBase):
    """LSTM with gates i, f, g, o and optional projection h_t = W_hr (o * tanh(c_t)).

    LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, proj_size=0, device=None, dtype=None), as torch.nn.LSTM.
    forward(input, hx=None) -> (output, (h_n, c_n)): input (T, B, I), (B, T, I) with
    batch_first, (T, I) unbatched, or a PackedSequence; hx = (h0, c0) with h0
    (num_layers * D, B, H_out), c0 (num_layers * D, B, H), H_out = proj_size or hidden_size;
    output (T, B, D * H_out).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device: Any = None, dtype: Any = None) -> None:
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, device, dtype)

    def forward(self, input: Union[Tensor, PackedSequence],
                hx: Optional[tuple[Tensor, Tensor]] = None
                ) -> tuple[Union[Tensor, PackedSequence], tuple[Tensor, Tensor]]:
        """See the class docstring; returns (output, (h_n, c_n))."""
        if hx is None:
            hx = (None, None)
        elif not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError("hx must be a tuple (h0, c0) of tensors for the LSTM, got "
                            f"{type(hx).__name__}")
        y, (h_n, c_n) = self._run(input, tuple(hx))
        return y, (h_n, c_n)


class GRU(_RNNBase):
    """GRU with gates r, z, n as torch.nn.GRU (b_hn inside r * (W_hn h + b_hn)).

    GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, device=None, dtype=None). forward(input, hx=None) -> (output, h_n),
    shapes as RNN.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype)

    def forward(self, input: Union[Tensor, PackedSequence],
                hx: Optional[Tensor] = None) -> tuple[Union[Tensor, PackedSequence], Tensor]:
        """See the class docstring; returns (output, h_n)."""
        y, (h_n,) = self._run(input, (hx,))
        return y, h_n
