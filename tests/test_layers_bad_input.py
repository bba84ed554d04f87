"""Bad arguments to stack_forward/stack_backward, the RNN/LSTM/GRU modules and clip_grad_norm: each
a specific exception whose message names the argument."""

import re

import numpy as np
import pytest

import fastrnn
from fastrnn import stack_backward, stack_forward


@pytest.fixture
def lstm():
    return fastrnn.LSTM(2, 3, 2, bidirectional=True, dtype=np.float64, seed=0)


@pytest.fixture
def weights(lstm):
    return lstm.state_dict()


X = np.zeros((4, 2, 2))


def run(weights, x=X, h0=None, c0=None, cell="lstm", **kwargs):
    options = dict(num_layers=2, bidirectional=True)
    options.update(kwargs)
    return stack_forward(cell, x, h0, c0, weights, **options)


# ---- stack_forward ------------------------------------------------------------------------


@pytest.mark.parametrize("lengths, error, fragment", [
    ([5, 1], ValueError, "lengths must lie in [1, T] = [1, 4]"),
    ([0, 4], ValueError, "lengths must lie in [1, T] = [1, 4]"),
    ([-1, 4], ValueError, "lengths must lie in [1, T]"),
    ([3], ValueError, "lengths must have shape (B,) = (2,)"),
    ([[1, 2]], ValueError, "lengths must have shape (B,) = (2,)"),
    ([1.0, 2.0], TypeError, "lengths must be integers"),
    ([True, True], TypeError, "lengths must be integers"),
])
def test_bad_lengths(weights, lengths, error, fragment):
    with pytest.raises(error, match=re.escape(fragment)):
        run(weights, lengths=lengths)


def test_bad_initial_states(weights):
    with pytest.raises(ValueError, match=r"h0 must have shape \(L\*D, B, S\) = \(4, 2, 3\)"):
        run(weights, h0=np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match=r"c0 must have shape \(L\*D, B, H\) = \(4, 2, 3\)"):
        run(weights, c0=np.zeros((4, 2, 2)))
    with pytest.raises(ValueError, match="c0 is only used by the LSTM"):
        stack_forward("gru", X, None, np.zeros((1, 2, 3)), fastrnn.GRU(2, 3).state_dict(),
                      num_layers=1, bidirectional=False)
    with pytest.raises(TypeError, match="h0 must have the dtype of x, float64, got float32"):
        run(weights, h0=np.zeros((4, 2, 3), np.float32))


def test_bad_proj_size(weights):
    with pytest.raises(ValueError, match="proj_size must be smaller than the hidden size H = 3"):
        run(weights, proj_size=3)
    with pytest.raises(ValueError, match="proj_size is only supported by the LSTM"):
        run(fastrnn.GRU(2, 3).state_dict(), cell="gru", proj_size=1)
    with pytest.raises(ValueError, match="proj_size must be an int >= 0"):
        run(weights, proj_size=-1)


def test_bad_weights(weights):
    with pytest.raises(ValueError, match=r"missing \['bias_hh_l1'\]"):
        run({k: v for k, v in weights.items() if k != "bias_hh_l1"})
    with pytest.raises(ValueError, match=r"unexpected \['weight_ih_l1'"):
        run(weights, num_layers=1)
    with pytest.raises(ValueError, match=r"missing \['weight_ih_l0_reverse'"):
        run({k: v for k, v in weights.items() if "reverse" not in k})
    with pytest.raises(ValueError, match=r"weights\['weight_ih_l1'\] must have shape "
                                         r"\(G\*H, D\*S\) = \(12, 6\), got \(12, 5\)"):
        run({**weights, "weight_ih_l1": np.zeros((12, 5))})
    with pytest.raises(ValueError, match=r"weights\['weight_ih_l0'\] must have shape "
                                         r"\(G\*H, I\) = \(12, 3\)"):
        run(weights, x=np.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match=r"weights\['weight_hh_l0'\] must have shape \(4\*H, S\)"):
        run({**weights, "weight_hh_l0": np.zeros((13, 3))})
    with pytest.raises(TypeError, match=r"weights\['weight_ih_l0'\] must have the dtype of x"):
        run(weights, x=X.astype(np.float32))
    with pytest.raises(TypeError, match="weights must be a mapping"):
        run(list(weights.values()))
    with pytest.raises(TypeError, match="needs weights"):
        run(None)


def test_bad_x_and_options(weights):
    with pytest.raises(ValueError, match=r"x must have shape \(T, B, I\)"):
        run(weights, x=X[0])
    with pytest.raises(ValueError, match=r"x must have shape \(T, B, I\) with T, B >= 1"):
        run(weights, x=np.zeros((0, 2, 2)))
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
        run(weights, x=X.astype(np.float16))
    with pytest.raises(ValueError, match="cell must be one of"):
        run(weights, cell="lstmx")
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\]"):
        run(weights, dropout=1.5)
    with pytest.raises(ValueError, match="seed must be None or an int"):
        run(weights, seed=-1)
    with pytest.raises(ValueError, match="num_layers must be an int >= 1"):
        run(weights, num_layers=0)
    with pytest.raises(TypeError, match="bidirectional must be a bool"):
        run(weights, bidirectional="yes")


# ---- stack_backward -----------------------------------------------------------------------


def test_bad_backward_arguments(weights):
    inference = run(weights, training=False)
    with pytest.raises(ValueError, match="training=False"):
        stack_backward(inference, None)
    result = run(weights)
    with pytest.raises(ValueError, match=r"dy must have shape \(4, 2, 6\), got \(4, 2, 3\)"):
        stack_backward(result, np.zeros((4, 2, 3)))
    with pytest.raises(TypeError, match="dy must have the forward's dtype float64"):
        stack_backward(result, np.zeros((4, 2, 6), np.float32))
    with pytest.raises(ValueError, match=r"dh_n must have shape \(4, 2, 3\)"):
        stack_backward(result, None, np.zeros((2, 2, 3)))
    with pytest.raises(TypeError, match="result must be the StackResult"):
        stack_backward("result", None)
    gru = stack_forward("gru", X, None, None, fastrnn.GRU(2, 3, dtype=np.float64).state_dict(),
                        num_layers=1, bidirectional=False)
    with pytest.raises(ValueError, match="dc_n is only used by the LSTM"):
        stack_backward(gru, None, None, np.zeros((1, 2, 3)))


# ---- modules ------------------------------------------------------------------------------


def test_bad_module_constructor_arguments():
    with pytest.raises(ValueError, match="proj_size must be smaller than hidden_size = 3"):
        fastrnn.LSTM(2, 3, proj_size=3)
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        fastrnn.RNN(2, 3, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="num_layers must be an int >= 1"):
        fastrnn.GRU(2, 3, 0)
    with pytest.raises(ValueError, match="hidden_size must be an int >= 1"):
        fastrnn.GRU(2, 0)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        fastrnn.GRU(2, 3, dtype=np.int32)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\]"):
        fastrnn.GRU(2, 3, dropout=-0.1)
    with pytest.raises(TypeError, match="batch_first must be a bool"):
        fastrnn.GRU(2, 3, batch_first=1)


def test_bad_module_call_arguments(lstm):
    with pytest.raises(ValueError, match=r"c0 must have shape \(L\*D, B, H\) = \(4, 2, 3\)"):
        lstm(X, (np.zeros((4, 2, 3)), np.zeros((3, 2, 3))))
    with pytest.raises(ValueError, match=r"h0 must have shape \(L\*D, B, S\) = \(4, 2, 3\)"):
        lstm(X, (np.zeros((4, 3, 3)), np.zeros((4, 2, 3))))
    with pytest.raises(TypeError, match=r"hx of an LSTM must be a tuple \(h0, c0\)"):
        lstm(X, np.zeros((4, 2, 3)))
    with pytest.raises(TypeError, match="hx of GRU must be one array h0"):
        fastrnn.GRU(2, 3)(X.astype(np.float32), (np.zeros((1, 2, 3), np.float32),))
    with pytest.raises(TypeError, match="x must have the module's dtype float64, got float32"):
        lstm(X.astype(np.float32))
    with pytest.raises(ValueError, match="lengths needs batched input"):
        lstm(X[:, 0], lengths=[2])
    with pytest.raises(ValueError, match=r"h0 must be 2-D \(L\*D, S\) for unbatched input"):
        lstm(X[:, 0], (np.zeros((4, 2, 3)), np.zeros((4, 3))))
    with pytest.raises(ValueError, match=r"x must have shape \(T, B, I\), \(B, T, I\)"):
        lstm(np.zeros((1, 4, 2, 2)))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T\] = \[1, 4\]"):
        lstm(X, lengths=[5, 2])


def test_bad_module_backward_and_state_dict(lstm, weights):
    with pytest.raises(ValueError, match=r"backward needs a preceding forward"):
        lstm.backward(np.zeros((4, 2, 6)))
    lstm(X)  # inference keeps nothing
    with pytest.raises(ValueError, match=r"backward needs a preceding forward"):
        lstm.backward(np.zeros((4, 2, 6)))
    lstm.forward(X)
    with pytest.raises(ValueError, match=r"dy must have shape \(4, 2, 6\), as the forward's output"):
        lstm.backward(np.zeros((4, 2, 5)))
    with pytest.raises(ValueError, match=r"missing keys \['weight_hh_l0'\]"):
        lstm.load_state_dict({k: v for k, v in weights.items() if k != "weight_hh_l0"})
    with pytest.raises(ValueError, match=r"unexpected keys \['extra'\]"):
        lstm.load_state_dict({**weights, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match=r"state_dict\['weight_hh_l0'\] must have shape \(12, 3\)"):
        lstm.load_state_dict({**weights, "weight_hh_l0": np.zeros((12, 2))})
    gru = fastrnn.GRU(2, 3, dtype=np.float64)
    y, h = gru.forward(X)
    with pytest.raises(ValueError, match="dc_n is only used by the LSTM"):
        gru.backward(y, h, h)


def test_bad_clip_grad_norm_arguments(lstm):
    with pytest.raises(ValueError, match="max_norm must be a finite number >= 0"):
        fastrnn.clip_grad_norm(lstm.grads, -1)
    with pytest.raises(ValueError, match="max_norm must be a finite number >= 0"):
        fastrnn.clip_grad_norm(lstm.grads, float("nan"))
    with pytest.raises(TypeError, match="grads must hold float32 or float64 ndarrays"):
        fastrnn.clip_grad_norm([[1.0]], 1.0)
