"""fastrnn: fused recurrent neural network kernels (RNN, LSTM, GRU) for NumPy and PyTorch."""

from . import _blas  # noqa: F401  (loads the BLAS before the compiled module)
from . import reference
from ._results import SequenceGrads, SequenceResult
from .functional import (get_num_threads, gru_backward, gru_forward, lstm_backward, lstm_forward,
                         rnn_backward, rnn_forward, set_num_threads)
from .tree import Forest, TreeGrads, TreeLSTM, TreeResult, tree_lstm_backward, tree_lstm_forward

__version__ = "0.1.0"

__all__ = [
    "SequenceGrads", "SequenceResult", "get_num_threads", "gru_backward", "gru_forward",
    "lstm_backward", "lstm_forward", "reference", "rnn_backward", "rnn_forward", "set_num_threads",
    "Forest", "TreeGrads", "TreeLSTM", "TreeResult", "tree_lstm_backward", "tree_lstm_forward",
]
