"""The NumPy Tree-LSTM reference against central finite differences (float64)."""

import numpy as np
import pytest

from fastrnn import reference
from _tree_util import random_forest, weights


def loss(x, parents, w, arity, a, b):
    r = reference.tree_lstm_forward(x, parents, *w, arity=arity)
    return float((r.h * a).sum() + (r.c * b).sum())


@pytest.mark.parametrize("arity", [None, 1, 3])
def test_tree_reference_gradients_match_finite_differences(arity):
    rng = np.random.default_rng(11)
    n, inp, hidden = 9, 2, 3
    parents = random_forest(rng, n, arity=arity, root_prob=0.2)
    if arity is None:  # make sure some node has several children
        parents = np.array([-1, 0, 0, 0, 1, 1, -1, 6, 7])
    x = rng.standard_normal((n, inp))
    w = list(weights(rng, inp, hidden, arity, True))
    a, b = rng.standard_normal((n, hidden)), rng.standard_normal((n, hidden))
    r = reference.tree_lstm_forward(x, parents, *w, arity=arity)
    g = reference.tree_lstm_backward(r, a, b)
    args = {"dx": x, "dw_ih": w[0], "dw_hh": w[1], "db_ih": w[2], "db_hh": w[3]}
    eps = 1e-6
    for name, arr in args.items():
        numeric = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + eps
            up = loss(x, parents, w, arity, a, b)
            arr[idx] = old - eps
            down = loss(x, parents, w, arity, a, b)
            arr[idx] = old
            numeric[idx] = (up - down) / (2 * eps)
        np.testing.assert_allclose(getattr(g, name), numeric, rtol=1e-6, atol=1e-8,
                                   err_msg=name)


def test_tree_reference_missing_nary_positions_and_leaves_get_no_forget_gradient():
    # Node 2 has one child of two positions; f_2's rows of w_hh multiply a zero child.
    rng = np.random.default_rng(12)
    parents = np.array([2, -1, -1])
    x = rng.standard_normal((3, 2))
    w = weights(rng, 2, 3, 2, True)
    r = reference.tree_lstm_forward(x, parents, *w, arity=2)
    g = reference.tree_lstm_backward(r, np.ones((3, 3)))
    assert np.all(g.dw_hh[:, 3:] == 0)           # position 2 is always missing
    assert np.all(g.db_hh[2 * 3:3 * 3] == 0)     # f_2's bias: no child there
