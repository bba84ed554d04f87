"""Argument checks for the public functions: one place that turns user input into contiguous arrays
of one float dtype, or raises an error naming the argument and what was expected."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_F32, _F64 = FLOAT_DTYPES  # NumPy's native float dtypes are these objects: `is` finds them in
                           # 40 ns where `==` takes 130 (a call's few microseconds of checks)


def as_float_array(name: str, value: Any) -> np.ndarray:
    """`value` as an ndarray of float32 or float64 (array-likes of Python numbers become float64)."""
    if type(value) is np.ndarray and (value.dtype is _F32 or value.dtype is _F64):  # the common case
        return value
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an array of float32 or float64, got {type(value).__name__}")
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if arr.dtype == object or arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be an array of float32 or float64, got dtype {arr.dtype}")
    if not isinstance(value, np.ndarray) and arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {arr.dtype}")
    return arr


def common_dtype(arrays: dict[str, Optional[np.ndarray]]) -> np.dtype:
    """The one dtype of all given arrays; a mix is a TypeError naming the arrays."""
    first = None
    for a in arrays.values():
        if a is None:
            continue
        if first is None:
            first = a.dtype
        elif a.dtype is not first and a.dtype != first:
            listed = ", ".join(f"{n}: {v.dtype}" for n, v in arrays.items() if v is not None)
            raise TypeError(f"all arrays must have the same dtype (float32 or float64), got {listed}")
    return first


def check_shape(name: str, arr: np.ndarray, shape: Sequence[Optional[int]], what: str) -> None:
    """Raise ValueError unless arr.shape matches `shape` (None matches any size); `what` spells the
    expected shape in symbols, e.g. '(4*H, I) = (512, 128)'."""
    if arr.shape == tuple(shape):
        return
    ok = arr.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, arr.shape))
    if not ok:
        raise ValueError(f"{name} must have shape {what}, got {tuple(arr.shape)}")


def contiguous(arr: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """A C-contiguous array with the same values (the same object when it already is one)."""
    if arr is None or arr.flags.c_contiguous:
        return arr
    return np.ascontiguousarray(arr)
