"""Result objects of the Tree-LSTM, shared by the kernels (fastrnn.tree) and the NumPy reference."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

import numpy as np


@dataclass
class TreeResult:
    """Output of a Tree-LSTM forward pass over a forest.

    h, c: (n_nodes, H) hidden and cell state of every node, in the forest's node order.
    ``training`` says whether backward can be run on it.
    """

    h: np.ndarray
    c: np.ndarray
    training: bool = True
    _ctx: Any = field(default=None, repr=False)


class TreeGrads(NamedTuple):
    """Gradients of a Tree-LSTM backward pass, each shaped as its input; biases None without bias.
    Unpacks as ``dx, dw_ih, dw_hh, db_ih, db_hh``."""

    dx: np.ndarray
    dw_ih: np.ndarray
    dw_hh: np.ndarray
    db_ih: Optional[np.ndarray] = None
    db_hh: Optional[np.ndarray] = None
