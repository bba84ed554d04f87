"""fastrnn: fused recurrent neural network kernels (RNN, LSTM, GRU, Tree-LSTM) for NumPy and
PyTorch."""

from . import _blas  # noqa: F401  (loads the BLAS before the compiled module)
from . import cuda, reference
from ._results import SequenceGrads, SequenceResult
from .functional import (get_num_threads, gru_backward, gru_forward, lstm_backward, lstm_forward,
                         release_memory, rnn_backward, rnn_forward, set_num_threads)
from .layers import StackGrads, StackResult, stack_backward, stack_forward
from .modules import GRU, LSTM, RNN, clip_grad_norm
from .tree import Forest, TreeGrads, TreeLSTM, TreeResult, tree_lstm_backward, tree_lstm_forward

__version__ = "0.1.0"

__all__ = [
    "GRU", "LSTM", "RNN", "Forest", "SequenceGrads", "SequenceResult", "StackGrads",
    "StackResult", "TreeGrads", "TreeLSTM", "TreeResult", "clip_grad_norm", "cuda",
    "get_num_threads", "gru_backward", "gru_forward", "lstm_backward", "lstm_forward",
    "reference", "release_memory", "rnn_backward", "rnn_forward", "set_num_threads",
    "stack_backward", "stack_forward", "tree_lstm_backward", "tree_lstm_forward",
]
