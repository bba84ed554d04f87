"""RNN, LSTM and GRU modules with torch.nn's arguments, parameters and results, on NumPy arrays.

A module holds its parameters in ``params`` and their gradients in ``grads``, both dicts keyed by
torch's state-dict names. ``module(x)`` runs in inference mode; ``module.forward(x)`` keeps what
``module.backward(dy)`` needs, which accumulates into ``grads``.

Shapes: x (T, B, I), or (B, T, I) with batch_first, or (T, I) unbatched; y likewise with D*S
features; h (L*D, B, S), c (L*D, B, H) (no B when unbatched); D = 2 if bidirectional else 1;
S = proj_size if > 0 else H.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Mapping, Optional, Union

import numpy as np

from ._checks import FLOAT_DTYPES, as_float_array, check_shape
from .layers import StackResult, stack_backward, stack_forward, weight_shapes

__all__ = ["GRU", "LSTM", "RNN", "clip_grad_norm"]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


class _RecurrentModule:
    """The shared body of RNN, LSTM and GRU."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int, bias: bool,
                 batch_first: bool, dropout: float, bidirectional: bool, proj_size: int,
                 dtype: Any, seed: Optional[int]) -> None:
        self.input_size = _positive_int("input_size", input_size)
        self.hidden_size = _positive_int("hidden_size", hidden_size)
        self.num_layers = _positive_int("num_layers", num_layers)
        for name, flag in (("bias", bias), ("batch_first", batch_first),
                           ("bidirectional", bidirectional)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        if (isinstance(dropout, bool) or not isinstance(dropout, numbers.Real)
                or not 0 <= dropout <= 1):
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        if isinstance(proj_size, bool) or not isinstance(proj_size, numbers.Integral) or proj_size < 0:
            raise ValueError(f"proj_size must be an int >= 0, got {proj_size!r}")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size = {hidden_size}, got "
                             f"{proj_size}")
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
        if self.dtype not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.cell = cell
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.proj_size = int(proj_size)
        self._rng = np.random.default_rng(seed)
        self._result: Optional[StackResult] = None
        self._unbatched = False
        # torch's initialisation: every parameter U(-1/sqrt(H), 1/sqrt(H)).
        bound = 1.0 / math.sqrt(self.hidden_size)
        self.params = {name: self._rng.uniform(-bound, bound, shape).astype(self.dtype)
                       for name, shape in self._shapes().items()}
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    def _shapes(self) -> dict:
        return weight_shapes(self.cell, self.input_size, self.hidden_size,
                             num_layers=self.num_layers, bidirectional=self.bidirectional,
                             bias=self.bias, proj_size=self.proj_size)

    @property
    def _is_lstm(self) -> bool:
        return self.cell == "lstm"

    def __repr__(self) -> str:
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in
                        ("num_layers", "bias", "batch_first", "dropout", "bidirectional",
                         "proj_size") if getattr(self, k) != _DEFAULTS[k])
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra}, "
                f"dtype={self.dtype.name})")

    # ---- parameters -----------------------------------------------------------------------

    def state_dict(self) -> dict:
        """A copy of the parameters, keyed by torch's state-dict names, in torch's order."""
        return {name: p.copy() for name, p in self.params.items()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load parameters from a mapping of torch's names to anything np.asarray takes (a torch
        state dict loads as is). Every name must be present and no other; shapes must match."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        shapes = self._shapes()
        missing = [k for k in shapes if k not in state_dict]
        unexpected = [k for k in state_dict if k not in shapes]
        if missing or unexpected:
            raise ValueError(f"state_dict does not fit {self!r}: missing keys {missing}, "
                             f"unexpected keys {unexpected}")
        loaded = {}
        for name, shape in shapes.items():
            arr = np.asarray(state_dict[name]).astype(self.dtype)  # a copy
            if arr.shape != shape:
                raise ValueError(f"state_dict['{name}'] must have shape {shape}, got "
                                 f"{tuple(arr.shape)}")
            loaded[name] = arr
        self.params = loaded
        self.grads = {name: np.zeros_like(p) for name, p in loaded.items()}
        self._result = None

    def zero_grad(self) -> None:
        """Set every gradient in ``grads`` to zero."""
        for g in self.grads.values():
            g.fill(0)

    # ---- forward and backward -------------------------------------------------------------

    def __call__(self, x: Any, hx: Any = None, lengths: Any = None) -> tuple:
        """Inference: ``forward(x, hx, lengths, training=False)``, without touching what a
        training forward kept for backward."""
        return self._run(x, hx, lengths, training=False)[0]

    def forward(self, x: Any, hx: Any = None, lengths: Any = None,
                training: bool = True) -> tuple:
        """Run the network; in training mode (dropout active) keep what backward needs.

        x: (T, B, I), (B, T, I) with batch_first, or (T, I); hx: h0 (L*D, B, S), for the LSTM
        (h0, c0) with c0 (L*D, B, H), or None for zeros; lengths: (B,) ints in [1, T], any order,
        or None. Returns (y, h_n), or (y, (h_n, c_n)) for the LSTM, as torch.nn does; y is zero
        past each length and h_n is taken at each sequence's last valid step.
        """
        out, result = self._run(x, hx, lengths, training)
        self._result = result if training else None
        y, h = out
        h_n, c_n = h if self._is_lstm else (h, None)
        self._unbatched = y.ndim == 2
        self._out_shapes = {"dy": y.shape, "dh_n": h_n.shape,
                            "dc_n": None if c_n is None else c_n.shape}
        return out

    def _run(self, x: Any, hx: Any, lengths: Any, training: bool) -> tuple:
        x = self._as_input("x", x)
        if x.ndim not in (2, 3):
            raise ValueError(f"x must have shape (T, B, I), (B, T, I) with batch_first, or "
                             f"(T, I) unbatched, got {tuple(x.shape)}")
        unbatched = x.ndim == 2
        if unbatched:
            if lengths is not None:
                raise ValueError("lengths needs batched input x (3-D), got unbatched (T, I)")
            x = x[:, None, :]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        h0, c0 = self._split_hx(hx, unbatched)
        result = stack_forward(
            self.cell, x, h0, c0, self.params, num_layers=self.num_layers,
            bidirectional=self.bidirectional, proj_size=self.proj_size, lengths=lengths,
            dropout=self.dropout, seed=int(self._rng.integers(2**63)) if training else 0,
            training=bool(training))
        y, h_n, c_n = result.y, result.h_n, result.c_n
        if unbatched:
            y, h_n = y[:, 0], h_n[:, 0]
            c_n = None if c_n is None else c_n[:, 0]
        elif self.batch_first:
            y = np.ascontiguousarray(y.transpose(1, 0, 2))
        return (y, (h_n, c_n) if self._is_lstm else h_n), result

    def _as_input(self, name: str, value: Any) -> np.ndarray:
        if not isinstance(value, np.ndarray):
            value = np.asarray(value, dtype=self.dtype)
        arr = as_float_array(name, value)
        if arr.dtype != self.dtype:
            raise TypeError(f"{name} must have the module's dtype {self.dtype}, got {arr.dtype}")
        return arr

    def _split_hx(self, hx: Any, unbatched: bool) -> tuple:
        if hx is None:
            return None, None
        if self._is_lstm:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("hx of an LSTM must be a tuple (h0, c0) or None")
            h0, c0 = (self._as_input(n, v) for n, v in zip(("h0", "c0"), hx))
        else:
            if isinstance(hx, (tuple, list)):
                raise TypeError(f"hx of {type(self).__name__} must be one array h0 or None, got "
                                f"a {type(hx).__name__}")
            h0, c0 = self._as_input("hx", hx), None
        if unbatched:
            for name, v in (("h0", h0), ("c0", c0)):
                if v is not None and v.ndim != 2:
                    raise ValueError(f"{name} must be 2-D (L*D, S) for unbatched input, got "
                                     f"shape {tuple(v.shape)}")
            h0 = h0[:, None, :]
            c0 = None if c0 is None else c0[:, None, :]
        return h0, c0

    def backward(self, dy: Any, dh_n: Any = None, dc_n: Any = None) -> tuple:
        """Backward of the last training ``forward``; accumulates into ``grads``.

        dy: gradient on y, shaped as y (or None); dh_n, dc_n: on h_n, c_n (or None; dc_n LSTM
        only). Returns (dx, dhx): dx shaped as x, dhx = dh0, or (dh0, dc0) for the LSTM.
        The parameters must not have been changed in place since that forward.
        """
        if self._result is None:
            raise ValueError("backward needs a preceding forward(..., training=True)")
        if not self._is_lstm and dc_n is not None:
            raise ValueError("dc_n is only used by the LSTM")
        given = {}
        for name, value in (("dy", dy), ("dh_n", dh_n), ("dc_n", dc_n)):
            if value is not None:
                given[name] = self._as_input(name, value)
                shape = self._out_shapes[name]
                check_shape(name, given[name], shape, f"{shape}, as the forward's output")
        dy, dh_n, dc_n = (given.get(n) for n in ("dy", "dh_n", "dc_n"))
        if self._unbatched:
            dy, dh_n, dc_n = (None if a is None else a[:, None, :] for a in (dy, dh_n, dc_n))
        elif self.batch_first and dy is not None:
            dy = dy.transpose(1, 0, 2)
        grads = stack_backward(self._result, dy, dh_n, dc_n)
        for name, g in grads.grads.items():
            self.grads[name] += g
        dx, dh0, dc0 = grads.dx, grads.dh0, grads.dc0
        if self._unbatched:
            dx, dh0 = dx[:, 0], dh0[:, 0]
            dc0 = None if dc0 is None else dc0[:, 0]
        elif self.batch_first:
            dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
        return dx, ((dh0, dc0) if self._is_lstm else dh0)


_DEFAULTS = {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0,
             "bidirectional": False, "proj_size": 0}


class RNN(_RecurrentModule):
    """Elman RNN as torch.nn.RNN: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act tanh or
    relu. Parameters U(-1/sqrt(H), 1/sqrt(H)) from ``seed``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, *, dtype: Any = np.float32,
                 seed: Optional[int] = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, 0, dtype, seed)


class LSTM(_RecurrentModule):
    """LSTM as torch.nn.LSTM (gates i, f, g, o; with proj_size P > 0, h = W_hr (o*tanh(c))).
    Parameters U(-1/sqrt(H), 1/sqrt(H)) from ``seed``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, *, dtype: Any = np.float32,
                 seed: Optional[int] = None) -> None:
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, dtype, seed)


class GRU(_RecurrentModule):
    """GRU as torch.nn.GRU (gates r, z, n; b_hn inside r * (W_hn h + b_hn)). Parameters
    U(-1/sqrt(H), 1/sqrt(H)) from ``seed``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, *,
                 dtype: Any = np.float32, seed: Optional[int] = None) -> None:
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, dtype, seed)


def clip_grad_norm(grads: Union[Mapping[str, np.ndarray], Iterable[np.ndarray]],
                   max_norm: float) -> float:
    """Scale the gradients in place so that their global 2-norm is at most max_norm, as
    torch.nn.utils.clip_grad_norm_ (factor max_norm / (norm + 1e-6) when below 1). grads: a dict
    of arrays (e.g. ``module.grads``) or an iterable of arrays. Returns the norm before clipping."""
    arrays = list(grads.values()) if isinstance(grads, Mapping) else list(grads)
    for i, g in enumerate(arrays):
        if not isinstance(g, np.ndarray) or g.dtype not in FLOAT_DTYPES:
            raise TypeError(f"grads must hold float32 or float64 ndarrays, got "
                            f"{type(g).__name__ if not isinstance(g, np.ndarray) else g.dtype} "
                            f"at position {i}")
    if (isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real)
            or not max_norm >= 0 or not math.isfinite(max_norm)):
        raise ValueError(f"max_norm must be a finite number >= 0, got {max_norm!r}")
    total = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in arrays))
    coef = float(max_norm) / (total + 1e-6)
    if coef < 1:
        for g in arrays:
            g *= g.dtype.type(coef)
    return total
