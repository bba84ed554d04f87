"""Result objects shared by the kernels and the NumPy reference."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


@dataclass
class SequenceResult:
    """Output of a forward pass over a sequence.

    y: (T, B, H) outputs of every step; h_n: (B, H) final hidden state; c_n: (B, H) final cell
    state (LSTM only, else None). ``training`` says whether backward can be run on it.
    """

    y: np.ndarray
    h_n: np.ndarray
    c_n: Optional[np.ndarray] = None
    training: bool = True
    _ctx: Any = field(default=None, repr=False)


@dataclass
class SequenceGrads:
    """Gradients of a backward pass, each shaped as its input; biases None when there were none."""

    dx: np.ndarray
    dh0: np.ndarray
    dw_ih: np.ndarray
    dw_hh: np.ndarray
    db_ih: Optional[np.ndarray] = None
    db_hh: Optional[np.ndarray] = None
    dc0: Optional[np.ndarray] = None
