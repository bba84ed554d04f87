"""What fastrnn's torch modules share: tensors to and from the arrays fastrnn's functions take,
and the device check. Imports torch."""

from __future__ import annotations

import warnings
from typing import Any, Optional

import torch
from torch import Tensor


def _array(t: Optional[Tensor]) -> Any:
    """What the stack takes for a tensor, without a copy: a NumPy view of a CPU tensor's memory,
    a CUDA tensor as it is (fastrnn.layers runs those on the GPU), or None."""
    if t is None:
        return None
    t = t.detach()
    return t if t.is_cuda else t.resolve_neg().resolve_conj().numpy()


def _tensor(a: Any) -> Optional[Tensor]:
    """A tensor over what the stack returned, without a copy: CUDA results are tensors already,
    NumPy arrays are wrapped. Results the stack keeps for backward are flagged read-only for
    NumPy; torch sees a plain tensor, and autograd's version check (the Function saves its
    outputs) stops a caller who changes one before backward."""
    if a is None or isinstance(a, Tensor):
        return a
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(a)


def _check_device(name: str, t: Tensor, device: torch.device) -> None:
    """CPU tensors run on fastrnn's CPU kernels, CUDA tensors on its CUDA kernels; all on one."""
    if t.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} must be a CPU or CUDA tensor, got one on device {t.device}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but input is on {device}: move the module "
                         "and its inputs to one device")
    if t.is_cuda:
        from . import cuda

        if not cuda.is_available():
            raise ValueError(f"{name} is a CUDA tensor, but fastrnn's CUDA kernels cannot run: "
                             f"{cuda.unavailable_reason()}. Move the module and the inputs to "
                             "the CPU, or use torch.nn's module on the GPU")
