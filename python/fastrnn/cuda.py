"""fastrnn on NVIDIA GPUs: the sequence and Tree-LSTM kernels for arrays on a CUDA device.

The fastrnn functions route here when given GPU arrays (torch CUDA tensors, CuPy arrays, or
anything with ``__cuda_array_interface__`` or a CUDA ``__dlpack__``); the results are arrays of the
caller's kind (torch or CuPy; other kinds come back as CuPy arrays, or torch tensors where CuPy is
not installed), on the same device, computed on the caller's current stream.

dtypes: float32, float64, float16 and bfloat16; the last two compute in float32 and return the
weight and bias gradients in float32.

The compiled module ``fastrnn._cuda`` is loaded on first use only, so ``import fastrnn`` and the CPU
path never depend on a driver or on cuBLAS. Build it with ``FASTRNN_CUDA=ON pip install '.[cuda]'``.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from typing import Any, NamedTuple, Optional

import numpy as np

from ._checks import check_shape
from ._results import SequenceGrads, SequenceResult

__all__ = ["is_built", "is_available", "unavailable_reason", "is_gpu_array", "layer_forward",
           "layer_backward"]

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
DTYPES = ("float32", "float64", "float16", "bfloat16")
_KDL_CUDA, _KDL_CUDA_MANAGED = 2, 13  # DLPack device types of CUDA memory

_module: Any = None
_load_error: Optional[str] = None


def is_built() -> bool:
    """Whether this installation of fastrnn contains the CUDA module."""
    return importlib.util.find_spec("fastrnn._cuda") is not None


def _load() -> Any:
    """fastrnn._cuda, imported once; None with _load_error set when it cannot be."""
    global _module, _load_error
    if _module is not None or _load_error is not None:
        return _module
    if not is_built():
        _load_error = ("fastrnn was built without CUDA support; build it with "
                       "FASTRNN_CUDA=ON pip install '.[cuda]' on a machine with nvcc")
        return None
    try:
        import nvidia.cu13  # the nvidia-cublas wheel: load cuBLAS wherever it is installed

        lib = os.path.join(list(nvidia.cu13.__path__)[0], "lib")
        for name in ("libcublasLt.so.13", "libcublas.so.13"):
            if os.path.exists(os.path.join(lib, name)):
                ctypes.CDLL(os.path.join(lib, name), mode=ctypes.RTLD_GLOBAL)
    except ImportError:  # a cuBLAS found at build time by other means
        pass
    try:
        from . import _cuda
    except ImportError as e:
        _load_error = (f"fastrnn._cuda could not be loaded ({e}); "
                       "is cuBLAS installed (pip install 'fastrnn[cuda]')?")
        return None
    _module = _cuda
    return _module


def unavailable_reason() -> Optional[str]:
    """Why the GPU kernels cannot run here (no CUDA build, no cuBLAS, no driver, no device), or None."""
    module = _load()
    if module is None:
        return _load_error
    count, why = module.probe()
    return None if count > 0 else f"no usable CUDA device: {why}"


def is_available() -> bool:
    """Whether the GPU kernels can run here: the CUDA module loads and a CUDA device is present."""
    return unavailable_reason() is None


def _require() -> Any:
    why = unavailable_reason()
    if why is not None:
        raise RuntimeError(f"fastrnn was given GPU arrays but cannot run on the GPU: {why}")
    return _module


# ---- array adapters -----------------------------------------------------------------------------

def is_gpu_array(value: Any) -> bool:
    """Whether `value` is an array in CUDA device memory (never imports torch or CuPy)."""
    if value is None or isinstance(value, np.ndarray):
        return False
    try:
        if getattr(value, "__cuda_array_interface__", None) is not None:
            return True
    except Exception:  # e.g. torch raises for CPU tensors
        pass
    device = getattr(value, "__dlpack_device__", None)
    if device is None:
        return False
    try:
        return int(device()[0]) in (_KDL_CUDA, _KDL_CUDA_MANAGED)
    except Exception:
        return False


class _Torch:
    """torch CUDA tensors."""

    def __init__(self) -> None:
        import torch

        self.torch = torch

    def owns(self, value: Any) -> bool:
        return isinstance(value, self.torch.Tensor)

    def adopt(self, value: Any) -> Any:
        return self.torch.from_dlpack(value) if hasattr(value, "__dlpack__") else \
            self.torch.as_tensor(value, device="cuda")

    def dtype(self, a: Any) -> str:
        return str(a.dtype).replace("torch.", "")

    def device(self, a: Any) -> int:
        return a.device.index

    def contiguous(self, a: Any) -> Any:
        return a.contiguous()

    def pointer(self, a: Any) -> int:
        return a.data_ptr()

    def empty(self, shape: tuple, dtype: str, device: int) -> Any:
        return self.torch.empty(shape, dtype=getattr(self.torch, dtype), device=f"cuda:{device}")

    def stream(self, device: int) -> int:
        return self.torch.cuda.current_stream(device).cuda_stream

    def scatter_rows(self, src: Any, rows: np.ndarray, n: int) -> Any:
        out = self.torch.zeros((n,) + tuple(src.shape[1:]), dtype=src.dtype, device=src.device)
        out[self.torch.as_tensor(rows, device=src.device)] = src
        return out

    def gather_rows(self, a: Any, rows: np.ndarray) -> Any:
        return a[self.torch.as_tensor(rows, device=a.device)].contiguous()


class _Cupy:
    """CuPy arrays."""

    def __init__(self) -> None:
        import cupy

        self.cupy = cupy

    def owns(self, value: Any) -> bool:
        return isinstance(value, self.cupy.ndarray)

    def adopt(self, value: Any) -> Any:
        return self.cupy.asarray(value) if hasattr(value, "__cuda_array_interface__") else \
            self.cupy.from_dlpack(value)

    def dtype(self, a: Any) -> str:
        return a.dtype.name

    def device(self, a: Any) -> int:
        return a.device.id

    def contiguous(self, a: Any) -> Any:
        return self.cupy.ascontiguousarray(a)

    def pointer(self, a: Any) -> int:
        return a.data.ptr

    def empty(self, shape: tuple, dtype: str, device: int) -> Any:
        with self.cupy.cuda.Device(device):
            return self.cupy.empty(shape, dtype=dtype)

    def stream(self, device: int) -> int:
        with self.cupy.cuda.Device(device):
            return self.cupy.cuda.get_current_stream().ptr

    def scatter_rows(self, src: Any, rows: np.ndarray, n: int) -> Any:
        with self.cupy.cuda.Device(src.device.id):
            out = self.cupy.zeros((n,) + tuple(src.shape[1:]), dtype=src.dtype)
            out[self.cupy.asarray(rows)] = src
            return out

    def gather_rows(self, a: Any, rows: np.ndarray) -> Any:
        with self.cupy.cuda.Device(a.device.id):
            return self.cupy.ascontiguousarray(a[self.cupy.asarray(rows)])


def _library_of(value: Any) -> Any:
    """The adapter of the library that owns `value`: torch or CuPy when it is theirs (both are
    imported already then); for other GPU arrays CuPy, else torch, which view them without a copy."""
    for name, adapter in (("torch", _Torch), ("cupy", _Cupy)):
        module = sys.modules.get(name)
        if module is not None and adapter().owns(value):
            return adapter()
    for adapter in (_Cupy, _Torch):
        try:
            return adapter()
        except ImportError:
            continue
    raise TypeError(f"{type(value).__name__} is a GPU array, but reading it needs CuPy or torch, "
                    "and neither is installed")


class _Args:
    """Checked GPU arrays of one call: one library, one device, one dtype, all contiguous."""

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        self.dtype: Optional[str] = None
        self.device: Optional[int] = None
        self.first: Optional[str] = None

    def take(self, name: str, value: Any) -> Any:
        if value is None:
            return None
        if not is_gpu_array(value):
            raise TypeError(f"{name} must be a GPU array like {self.first}, got {type(value).__name__}")
        arr = value if self.lib.owns(value) else self.lib.adopt(value)
        kind, device = self.lib.dtype(arr), self.lib.device(arr)
        if kind not in DTYPES:
            raise TypeError(f"{name} must have dtype float32, float64, float16 or bfloat16, got {kind}")
        if self.dtype is not None and kind != self.dtype:
            raise TypeError(f"{name} must have dtype {self.dtype} like {self.first}, got {kind}")
        if self.device is not None and device != self.device:
            raise ValueError(f"{name} is on cuda:{device}, but {self.first} is on cuda:{self.device}")
        if self.first is None:
            self.first, self.dtype, self.device = name, kind, device
        return self.lib.contiguous(arr)


def _arith(dtype: str) -> str:
    """The dtype of the arithmetic, the saved buffers and the weight gradients."""
    return "float64" if dtype == "float64" else "float32"


class GpuContext(NamedTuple):
    """What backward needs of a forward on the GPU."""

    cell: str
    lib: Any
    device: int
    dtype: str
    steps: int
    batch: int
    batch_sizes: Optional[np.ndarray]
    reverse: bool
    arrays: dict  # x (rows, I), h0, c0, w_ih, w_hh, b_ih, b_hh, y (rows, H), saved


def _check_batch_sizes(batch_sizes: Any, rows: int) -> np.ndarray:
    sizes = np.ascontiguousarray(np.asarray(batch_sizes), dtype=np.int64)
    if sizes.ndim != 1 or sizes.size == 0 or (np.diff(sizes) > 0).any() or sizes[-1] < 1:
        raise ValueError("batch_sizes must be a nonincreasing 1-D array of ints >= 1 "
                         f"(steps,), got {np.asarray(batch_sizes)!r}")
    if int(sizes.sum()) != rows:
        raise ValueError(f"x must have sum(batch_sizes) = {int(sizes.sum())} rows, got {rows}")
    return sizes


def layer_forward(cell: str, x: Any, h0: Any, c0: Any, w_ih: Any, w_hh: Any, b_ih: Any = None,
                  b_hh: Any = None, *, training: bool = True, batch_sizes: Any = None,
                  reverse: bool = False) -> SequenceResult:
    """One layer in one direction on the GPU (what the fastrnn functions call for GPU arrays).

    cell: 'rnn_tanh', 'rnn_relu', 'lstm' or 'gru'. x: (T, B, I), or packed (rows, I) with
    batch_sizes (T,) on the host as torch's PackedSequence (nonincreasing; batch B = batch_sizes[0]);
    h0, c0: (B, H) or None; w_ih: (G*H, I); w_hh: (G*H, H); b_ih, b_hh: (G*H,) or None.
    reverse: run every sequence from its last step to its first. Returns a SequenceResult with y
    shaped as x ((T, B, H) or (rows, H)), h_n and c_n (B, H), arrays of x's kind. With
    training=True backward reads y again: change it only after backward.
    """
    if cell not in GATES:
        raise ValueError(f"cell must be one of {sorted(GATES)}, got {cell!r}")
    module = _require()
    args = _Args(_library_of(x))
    a = {"x": args.take("x", x)}
    for name, value in (("w_ih", w_ih), ("w_hh", w_hh), ("h0", h0), ("c0", c0), ("b_ih", b_ih),
                        ("b_hh", b_hh)):
        a[name] = args.take(name, value)
    g, gs = GATES[cell], {1: "H", 3: "3*H", 4: "4*H"}[GATES[cell]]
    if batch_sizes is None:
        if a["x"].ndim != 3:
            raise ValueError(f"x must have shape (T, B, I), got {tuple(a['x'].shape)}")
        steps, batch, inp = a["x"].shape
        sizes = None
        a["x"] = a["x"].reshape(steps * batch, inp)
    else:
        if a["x"].ndim != 2:
            raise ValueError(f"x must have shape (rows, I) with batch_sizes, got {tuple(a['x'].shape)}")
        sizes = _check_batch_sizes(batch_sizes, a["x"].shape[0])
        steps, batch, inp = len(sizes), int(sizes[0]), a["x"].shape[1]
    w = a["w_hh"]
    if w.ndim != 2 or w.shape[1] < 1:
        raise ValueError(f"w_hh must have shape ({gs}, H), got {tuple(w.shape)}")
    hidden = w.shape[1]
    check_shape("w_hh", w, (g * hidden, hidden), f"({gs}, H) = ({g * hidden}, {hidden})")
    check_shape("w_ih", a["w_ih"], (g * hidden, inp), f"({gs}, I) = ({g * hidden}, {inp})")
    if (a["b_ih"] is None) != (a["b_hh"] is None):
        raise ValueError("b_ih and b_hh must both be arrays or both be None")
    for name in ("b_ih", "b_hh"):
        if a[name] is not None:
            check_shape(name, a[name], (g * hidden,), f"({gs},) = ({g * hidden},)")
    for name in ("h0", "c0"):
        if a[name] is not None:
            check_shape(name, a[name], (batch, hidden), f"(B, H) = ({batch}, {hidden})")
    if cell != "lstm" and a["c0"] is not None:
        raise ValueError("c0 is only used by the LSTM")

    lib, dev, rows = args.lib, args.device, a["x"].shape[0]
    a["y"] = lib.empty((rows, hidden), args.dtype, dev)
    a["h_n"] = lib.empty((batch, hidden), args.dtype, dev)
    a["c_n"] = lib.empty((batch, hidden), args.dtype, dev) if cell == "lstm" else None
    cols = {"lstm": 5, "gru": 4}.get(cell, 0) * hidden
    a["saved"] = lib.empty((rows, cols), _arith(args.dtype), dev) if training and cols else None
    ptrs = {k: lib.pointer(v) for k, v in a.items() if v is not None}
    module.layer_forward(args.dtype, cell, steps, batch, inp, hidden, sizes, bool(reverse), ptrs,
                         dev, lib.stream(dev))
    y = a["y"] if sizes is not None else a["y"].reshape(steps, batch, hidden)
    ctx = None
    if training:
        kept = {k: a[k] for k in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "y", "saved")}
        ctx = GpuContext(cell, lib, dev, args.dtype, steps, batch, sizes, bool(reverse), kept)
    return SequenceResult(y=y, h_n=a["h_n"], c_n=a["c_n"], training=bool(training), _ctx=ctx)


def layer_backward(result: SequenceResult, dy: Any, dh_n: Any = None,
                   dc_n: Any = None) -> SequenceGrads:
    """Backward through time of layer_forward(..., training=True) on the GPU.

    dy: shaped as the forward's y, or None; dh_n, dc_n: (B, H) or None. Returns SequenceGrads with
    dx shaped as x, dh0, dc0 (B, H) of the forward's dtype, and dw_ih, dw_hh, db_ih, db_hh in
    float32 (float64 for float64 inputs).
    """
    ctx = result._ctx
    if not isinstance(ctx, GpuContext):
        raise TypeError("result must be the SequenceResult of a GPU forward with training=True")
    module = _require()
    a = dict(ctx.arrays)
    rows, hidden = a["y"].shape
    inp = a["x"].shape[1]
    args = _Args(ctx.lib)
    args.first, args.dtype, args.device = "the forward's arrays", ctx.dtype, ctx.device
    packed = ctx.batch_sizes is not None
    dy_shape = (rows, hidden) if packed else (ctx.steps, ctx.batch, hidden)
    dy_what = f"(rows, H) = {dy_shape}" if packed else f"(T, B, H) = {dy_shape}"
    for name, value, shape, what in (
            ("dy", dy, dy_shape, dy_what),
            ("dh_n", dh_n, (ctx.batch, hidden), f"(B, H) = ({ctx.batch}, {hidden})"),
            ("dc_n", dc_n, (ctx.batch, hidden), f"(B, H) = ({ctx.batch}, {hidden})")):
        a[name] = args.take(name, value)
        if a[name] is not None:
            check_shape(name, a[name], shape, what)
    if a["dc_n"] is not None and ctx.cell != "lstm":
        raise ValueError("dc_n is only used by the LSTM")
    if a["dy"] is not None:
        a["dy"] = a["dy"].reshape(rows, hidden)

    lib, dev, dt, g = ctx.lib, ctx.device, ctx.dtype, a["w_hh"].shape[0]
    a["dx"] = lib.empty((rows, inp), dt, dev)
    a["dh0"] = lib.empty((ctx.batch, hidden), dt, dev)
    a["dc0"] = lib.empty((ctx.batch, hidden), dt, dev) if ctx.cell == "lstm" else None
    a["dw_ih"] = lib.empty((g, inp), _arith(dt), dev)
    a["dw_hh"] = lib.empty((g, hidden), _arith(dt), dev)
    bias = a["b_ih"] is not None
    a["db_ih"] = lib.empty((g,), _arith(dt), dev) if bias else None
    a["db_hh"] = lib.empty((g,), _arith(dt), dev) if bias else None
    ptrs = {k: lib.pointer(v) for k, v in a.items() if v is not None}
    module.layer_backward(dt, ctx.cell, ctx.steps, ctx.batch, inp, hidden, ctx.batch_sizes,
                          ctx.reverse, ptrs, dev, lib.stream(dev))
    dx = a["dx"] if packed else a["dx"].reshape(ctx.steps, ctx.batch, inp)
    return SequenceGrads(dx=dx, dh0=a["dh0"], dw_ih=a["dw_ih"], dw_hh=a["dw_hh"],
                         db_ih=a["db_ih"], db_hh=a["db_hh"], dc0=a["dc0"])
