"""Bad input to the Tree-LSTM: a clear error naming the node or the argument."""

import numpy as np
import pytest

import fastrnn
from _tree_util import weights

PARENTS = np.array([2, 2, -1, 2])  # node 2 has three children
H, I = 3, 2


def args(arity=None, bias=True, n=4, dtype=np.float64):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((n, I)).astype(dtype),
            *weights(rng, I, H, arity, bias, dtype=dtype))


def test_cycle_and_out_of_range_parents_name_the_node():
    x, *w = args()
    with pytest.raises(ValueError, match="cycle through node 0"):
        fastrnn.tree_lstm_forward(x, np.array([1, 0, -1, 2]), *w)
    with pytest.raises(ValueError, match=r"parents\[3\] = 4 is out of range"):
        fastrnn.tree_lstm_forward(x, np.array([2, 2, -1, 4]), *w)


def test_too_many_children_for_the_arity_names_the_node():
    x, *w = args(arity=2)
    with pytest.raises(ValueError, match="node 2 has 3 children, more than arity N = 2"):
        fastrnn.tree_lstm_forward(x, PARENTS, *w, arity=2)


def test_x_rows_must_match_the_forest():
    x, *w = args(n=5)
    with pytest.raises(ValueError,
                       match=r"x must have shape \(n_nodes, I\) = \(4, I\).*got \(5, 2\)"):
        fastrnn.tree_lstm_forward(x, PARENTS, *w)
    with pytest.raises(ValueError, match="x must have shape"):
        fastrnn.tree_lstm_forward(x[:4, 0], PARENTS, *w)


def test_input_nodes_must_be_distinct_nodes_with_one_row_of_x_each():
    x, *w = args()
    for nodes, message in (([0, 4], r"input_nodes\[1\] = 4 is not a node index in \[0, 4\)"),
                           ([-1, 0], r"input_nodes\[0\] = -1 is not a node index"),
                           ([1, 3, 1], "input_nodes lists node 1 more than once"),
                           ([[0, 1]], "input_nodes must be a 1-D array of node indices"),
                           ([0.0, 1.0], "input_nodes must be a 1-D array of node indices")):
        with pytest.raises(ValueError, match=message):
            fastrnn.tree_lstm_forward(x[:len(np.ravel(nodes))], PARENTS, *w, input_nodes=nodes)
    with pytest.raises(ValueError, match=r"x must have shape \(len\(input_nodes\), I\) = "
                                         r"\(2, I\).*got \(4, 2\)"):
        fastrnn.tree_lstm_forward(x, PARENTS, *w, input_nodes=[0, 1])


def test_weight_shapes_must_fit_the_kind():
    x, w_ih, w_hh, b_ih, b_hh = args(arity=None)
    _, _, w_hh3, _, b_hh3 = args(arity=3)
    with pytest.raises(ValueError, match=r"w_hh must have shape \(\(3\+N\)\*H, N\*H\) = \(18, 9\)"):
        fastrnn.tree_lstm_forward(x, PARENTS, w_ih, w_hh, b_ih, b_hh3, arity=3)
    with pytest.raises(ValueError, match=r"w_hh must have shape \(4\*H, H\) = \(12, 3\)"):
        fastrnn.tree_lstm_forward(x, PARENTS, w_ih, w_hh3, b_ih, b_hh)
    with pytest.raises(ValueError, match=r"b_hh must have shape \(\(3\+N\)\*H,\) = \(18,\)"):
        fastrnn.tree_lstm_forward(x, PARENTS, w_ih, w_hh3, b_ih, b_hh, arity=3)
    with pytest.raises(ValueError, match=r"w_ih must have shape \(4\*H, I\) = \(12, 2\)"):
        fastrnn.tree_lstm_forward(x, PARENTS, w_ih[:, :1], w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match=r"w_ih must have shape \(4\*H, I\) with H >= 1"):
        fastrnn.tree_lstm_forward(x, PARENTS, w_ih[:10], w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match=r"b_ih must have shape \(4\*H,\) = \(12,\)"):
        fastrnn.tree_lstm_forward(x, PARENTS, w_ih, w_hh, b_ih[:5], b_hh)
    with pytest.raises(ValueError, match="b_ih and b_hh must both be arrays or both be None"):
        fastrnn.tree_lstm_forward(x, PARENTS, w_ih, w_hh, b_ih, None)


def test_arity_must_be_none_or_a_positive_int():
    x, *w = args()
    with pytest.raises(ValueError, match="arity must be None"):
        fastrnn.tree_lstm_forward(x, PARENTS, *w, arity=0)
    with pytest.raises(TypeError, match="arity must be None"):
        fastrnn.tree_lstm_forward(x, PARENTS, *w, arity=True)
    with pytest.raises(TypeError, match="arity must be None"):
        fastrnn.tree_lstm_forward(x, PARENTS, *w, arity=2.0)


def test_dtypes_must_agree_and_be_float():
    x, w_ih, w_hh, b_ih, b_hh = args()
    with pytest.raises(TypeError, match="same dtype"):
        fastrnn.tree_lstm_forward(x.astype(np.float32), PARENTS, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
        fastrnn.tree_lstm_forward(x.astype(np.int64), PARENTS, w_ih, w_hh, b_ih, b_hh)


def test_backward_checks_its_gradients_and_result():
    x, *w = args()
    r = fastrnn.tree_lstm_forward(x, PARENTS, *w)
    with pytest.raises(ValueError, match=r"dh must have shape \(n_nodes, H\) = \(4, 3\)"):
        fastrnn.tree_lstm_backward(r, np.zeros((4, 4)))
    with pytest.raises(TypeError, match="dc must have the forward's dtype float64"):
        fastrnn.tree_lstm_backward(r, None, np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError, match="result must be the TreeResult"):
        fastrnn.tree_lstm_backward(fastrnn.lstm_forward(np.zeros((1, 1, 1)), None, None,
                                                        np.zeros((4, 1)), np.zeros((4, 1))),
                                   np.zeros((4, 3)))
