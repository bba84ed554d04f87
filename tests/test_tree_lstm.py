"""fastrnn.tree_lstm_forward/backward against the NumPy reference, and identities."""

import numpy as np
import pytest

import fastrnn
from fastrnn import _C, reference
from _tree_util import random_forest, weights

KINDS = [None, 1, 2, 5]


def run_both(x, parents, w, arity, dh, dc, dtype=np.float64):
    """Kernel in `dtype`, reference in float64, on the same (cast) inputs."""
    cast = lambda a: None if a is None else a.astype(dtype)  # noqa: E731
    got = fastrnn.tree_lstm_forward(cast(x), parents, *map(cast, w), arity=arity)
    want = reference.tree_lstm_forward(x, parents, *w, arity=arity)
    g_got = fastrnn.tree_lstm_backward(got, cast(dh), cast(dc))
    g_want = reference.tree_lstm_backward(want, dh, dc)
    return got, want, g_got, g_want


def assert_close(got, want, dtype):
    if dtype == np.float64:
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("arity", KINDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_tree_lstm_matches_reference_on_random_forests(seed, arity, bias, dtype):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    inp, hidden = int(rng.integers(1, 8)), int(rng.integers(1, 21))
    parents = random_forest(rng, n, arity=arity, root_prob=0.15)
    x = rng.standard_normal((n, inp))
    w = weights(rng, inp, hidden, arity, bias)
    dh, dc = rng.standard_normal((n, hidden)), rng.standard_normal((n, hidden))
    got, want, g_got, g_want = run_both(x, parents, w, arity, dh, dc, dtype)
    assert got.h.dtype == dtype and g_got.dw_hh.dtype == dtype
    assert_close(got.h, want.h, dtype)
    assert_close(got.c, want.c, dtype)
    for name in ("dx", "dw_ih", "dw_hh", "db_ih", "db_hh"):
        a, b = getattr(g_got, name), getattr(g_want, name)
        if not bias and name.startswith("db"):
            assert a is None and b is None
        else:
            assert a.shape == b.shape
            assert_close(a, b, dtype)


@pytest.mark.parametrize("no_input_at_all", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("arity", [None, 2])
def test_nodes_without_input_zero_rows_match_reference(arity, dtype, no_input_at_all):
    # Inputs on leaves only, as in SST: the kernel leaves the zero rows out of the projection
    # and of dW_ih (and with no input anywhere, both GEMMs have no rows: dW_ih must be zero).
    rng = np.random.default_rng(11)
    n, inp, hidden = 80, 6, 9
    parents = random_forest(rng, n, arity=arity, root_prob=0.1)
    x = rng.standard_normal((n, inp))
    has_children = np.zeros(n, bool)
    has_children[parents[parents >= 0]] = True
    x[has_children] = 0.0
    x[np.flatnonzero(~has_children)[:2]] = 0.0  # and a couple of input-less leaves
    if no_input_at_all:
        x[:] = 0.0
    w = weights(rng, inp, hidden, arity, True)
    dh, dc = rng.standard_normal((n, hidden)), rng.standard_normal((n, hidden))
    got, want, g_got, g_want = run_both(x, parents, w, arity, dh, dc, dtype)
    assert_close(got.h, want.h, dtype)
    assert_close(got.c, want.c, dtype)
    for a, b in zip(g_got, g_want):
        assert_close(a, b, dtype)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("which", ["leaves", "some", "all", "none"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("arity", [None, 2])
def test_input_nodes_match_reference_and_leave_the_callers_arrays(arity, bias, dtype, which,
                                                                  threads):
    # x holds the rows of input_nodes only (in any order): the same forward as x with a row per
    # node and zeros elsewhere, and dx is the input nodes' rows of that dx.
    rng = np.random.default_rng(17)
    n, inp, hidden = 70, 5, 17
    parents = random_forest(rng, n, arity=arity, root_prob=0.1)
    leaves = np.setdiff1d(np.arange(n), parents[parents >= 0])
    nodes = {"leaves": rng.permutation(leaves), "some": rng.choice(n, 23, replace=False),
             "all": rng.permutation(n), "none": np.zeros(0, np.int64)}[which]
    x = rng.standard_normal((nodes.size, inp))
    x_full = np.zeros((n, inp))
    x_full[nodes] = x
    w = weights(rng, inp, hidden, arity, bias)
    dh, dc = rng.standard_normal((n, hidden)), rng.standard_normal((n, hidden))
    want = reference.tree_lstm_forward(x_full, parents, *w, arity=arity)
    g_want = reference.tree_lstm_backward(want, dh, dc)
    cast = lambda a: None if a is None else a.astype(dtype)  # noqa: E731
    x_in, nodes_in = cast(x), nodes.astype(np.int32)
    x_copy, nodes_copy = x_in.copy(), nodes_in.copy()
    before = fastrnn.get_num_threads()
    fastrnn.set_num_threads(threads)
    try:
        got = fastrnn.tree_lstm_forward(x_in, parents, *map(cast, w), arity=arity,
                                        input_nodes=nodes_in)
        g_got = fastrnn.tree_lstm_backward(got, cast(dh), cast(dc))
    finally:
        fastrnn.set_num_threads(before)
    assert np.array_equal(x_in, x_copy) and np.array_equal(nodes_in, nodes_copy)
    assert_close(got.h, want.h, dtype)
    assert_close(got.c, want.c, dtype)
    assert g_got.dx.shape == (nodes.size, inp)
    assert_close(g_got.dx, g_want.dx[nodes], dtype)
    for name in ("dw_ih", "dw_hh", "db_ih", "db_hh"):
        a, b = getattr(g_got, name), getattr(g_want, name)
        if bias or not name.startswith("db"):
            assert_close(a, b, dtype)
    # The reference takes input_nodes too, as the same function.
    ref = reference.tree_lstm_forward(x, parents, *w, arity=arity, input_nodes=nodes)
    np.testing.assert_array_equal(ref.h, want.h)
    np.testing.assert_array_equal(reference.tree_lstm_backward(ref, dh, dc).dx, g_want.dx[nodes])


@pytest.mark.parametrize("arity", [None, 3])
def test_tree_lstm_matches_reference_on_many_trees_with_wide_hidden(arity):
    # Big enough levels for the pointwise passes and gathers to run on several threads.
    rng = np.random.default_rng(5)
    n, inp, hidden = 600, 5, 37
    parents = random_forest(rng, n, arity=arity, root_prob=0.3)
    x = rng.standard_normal((n, inp))
    w = weights(rng, inp, hidden, arity, True, scale=0.2)
    dh, dc = rng.standard_normal((n, hidden)), rng.standard_normal((n, hidden))
    threads = fastrnn.get_num_threads()
    try:
        fastrnn.set_num_threads(3)
        got, want, g_got, g_want = run_both(x, parents, w, arity, dh, dc)
    finally:
        fastrnn.set_num_threads(threads)
    assert_close(got.h, want.h, np.float64)
    for a, b in zip(g_got, g_want):
        assert_close(a, b, np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("arity", [None, 2])
def test_two_threads_split_big_levels_by_rows_and_small_ones_by_columns(arity, dtype):
    # 200 cherries (a root over two leaves) give a level of 200 rows, which the two threads of a
    # level's product split by rows; 10 chains of 6 give levels of 10 rows, which they split by
    # the packed weights' column blocks (hidden 70: 2 to 5 blocks of 4 vectors, the last one
    # narrower, so the shares are uneven).
    cherries = [np.array([-1, 0, 0])] * 200
    chains = [np.arange(-1, 5)] * 10
    forest = fastrnn.Forest.from_trees(cherries + chains)
    n = forest.n_nodes
    rng = np.random.default_rng(11)
    x = rng.standard_normal((n, 6))
    w = weights(rng, 6, 70, arity, True, scale=0.2)
    dh, dc = rng.standard_normal((n, 70)), rng.standard_normal((n, 70))
    threads = fastrnn.get_num_threads()
    try:
        fastrnn.set_num_threads(2)
        got, want, g_got, g_want = run_both(x, forest.parents, w, arity, dh, dc, dtype)
    finally:
        fastrnn.set_num_threads(threads)
    assert_close(got.h, want.h, dtype)
    assert_close(got.c, want.c, dtype)
    for a, b in zip(g_got, g_want):
        assert_close(a, b, dtype)


@pytest.mark.parametrize("arity", [None, 100])
def test_tree_lstm_node_with_100_children_matches_reference(arity):
    rng = np.random.default_rng(2)
    parents = np.append(np.full(100, 100), -1)
    x = rng.standard_normal((101, 3))
    w = weights(rng, 3, 4, arity, True, scale=0.1)
    dh = rng.standard_normal((101, 4))
    got, want, g_got, g_want = run_both(x, parents, w, arity, dh, None)
    assert_close(got.c, want.c, np.float64)
    for a, b in zip(g_got, g_want):
        assert_close(a, b, np.float64)


@pytest.mark.parametrize("arity", [None, 2])
def test_tree_lstm_single_node_trees_are_one_lstm_step_from_zero_state(arity):
    rng = np.random.default_rng(3)
    n, inp, hidden = 7, 4, 6
    x = rng.standard_normal((n, inp))
    w_ih, w_hh, b_ih, b_hh = weights(rng, inp, hidden, arity, True)
    got = fastrnn.tree_lstm_forward(x, np.full(n, -1), w_ih, w_hh, b_ih, b_hh, arity=arity)
    # A leaf sees only b_hh's i, u, o blocks: the LSTM with h0 = 0 and b_hh's i f u o blocks.
    b_hh4 = b_hh if arity is None else np.concatenate([b_hh[:2 * hidden], b_hh[-2 * hidden:]])
    lstm = fastrnn.lstm_forward(x[None], None, None, w_ih, np.zeros((4 * hidden, hidden)), b_ih,
                                b_hh4)
    np.testing.assert_allclose(got.h, lstm.y[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.c, lstm.c_n, rtol=1e-12, atol=1e-14)


def chain_forest(batch, steps):
    """`batch` chains; node b*steps + t is step t of chain b, child of step t + 1."""
    parents = np.arange(batch * steps) + 1
    parents[steps - 1::steps] = -1
    return parents


@pytest.mark.parametrize("arity", [None, 1])
@pytest.mark.parametrize("batch, steps", [(3, 7), (1, 10000)])
def test_tree_lstm_on_chains_equals_lstm_forward_and_backward(arity, batch, steps):
    rng = np.random.default_rng(4)
    inp, hidden = 3, 5
    w_ih, w_hh, b_ih, b_hh = weights(rng, inp, hidden, None, True)  # (4H, H): both kinds
    x_seq = rng.standard_normal((steps, batch, inp))
    dy = rng.standard_normal((steps, batch, hidden))
    to_tree = lambda a: a.transpose(1, 0, 2).reshape(batch * steps, -1)  # noqa: E731
    parents = chain_forest(batch, steps)
    tree = fastrnn.tree_lstm_forward(to_tree(x_seq), parents, w_ih, w_hh, b_ih, b_hh, arity=arity)
    seq = fastrnn.lstm_forward(x_seq, None, None, w_ih, w_hh, b_ih, b_hh)
    np.testing.assert_allclose(tree.h, to_tree(seq.y), rtol=1e-10, atol=1e-12)
    g_tree = fastrnn.tree_lstm_backward(tree, to_tree(dy))
    g_seq = fastrnn.lstm_backward(seq, dy)
    np.testing.assert_allclose(g_tree.dx, to_tree(g_seq.dx), rtol=1e-9, atol=1e-11)
    for name in ("dw_ih", "dw_hh", "db_ih", "db_hh"):
        np.testing.assert_allclose(getattr(g_tree, name), getattr(g_seq, name), rtol=1e-9,
                                   atol=1e-10)


def test_child_sum_result_does_not_depend_on_node_numbering():
    rng = np.random.default_rng(6)
    n, inp, hidden = 40, 3, 8
    parents = random_forest(rng, n, shuffle=False)
    perm = rng.permutation(n)
    shuffled = np.full(n, -1)
    shuffled[perm] = np.where(parents >= 0, perm[parents], -1)
    x = rng.standard_normal((n, inp))
    xs = np.empty_like(x)
    xs[perm] = x
    w = weights(rng, inp, hidden, None, True)
    a = fastrnn.tree_lstm_forward(x, parents, *w)
    b = fastrnn.tree_lstm_forward(xs, shuffled, *w)
    np.testing.assert_allclose(b.h[perm], a.h, rtol=1e-12, atol=1e-14)
    dh = rng.standard_normal((n, hidden))
    dhs = np.empty_like(dh)
    dhs[perm] = dh
    ga, gb = fastrnn.tree_lstm_backward(a, dh), fastrnn.tree_lstm_backward(b, dhs)
    np.testing.assert_allclose(gb.dx[perm], ga.dx, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(gb.dw_hh, ga.dw_hh, rtol=1e-11, atol=1e-13)


def test_inference_mode_gives_the_same_states_and_keeps_nothing():
    rng = np.random.default_rng(7)
    parents = random_forest(rng, 50, arity=2)
    x = rng.standard_normal((50, 4))
    w = weights(rng, 4, 6, 2, True)
    a = fastrnn.tree_lstm_forward(x, parents, *w, arity=2)
    b = fastrnn.tree_lstm_forward(x, parents, *w, arity=2, training=False)
    assert np.array_equal(a.h, b.h) and np.array_equal(a.c, b.c)
    assert not b.training and b._ctx is None
    with pytest.raises(ValueError, match="training=False"):
        fastrnn.tree_lstm_backward(b, np.zeros_like(b.h))


def test_forest_object_and_parents_array_give_the_same_result_and_dc_only_gradient():
    rng = np.random.default_rng(8)
    parents = random_forest(rng, 30)
    x = rng.standard_normal((30, 2))
    w = weights(rng, 2, 3, None, True)
    a = fastrnn.tree_lstm_forward(x, fastrnn.Forest(parents), *w)
    b = fastrnn.tree_lstm_forward(x, parents, *w)
    assert np.array_equal(a.h, b.h)
    dc = rng.standard_normal((30, 3))
    got = fastrnn.tree_lstm_backward(a, None, dc)
    want = reference.tree_lstm_backward(reference.tree_lstm_forward(x, parents, *w), None, dc)
    for u, v in zip(got, want):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("isa", _C.isa_supported().split(","))
def test_tree_lstm_every_instruction_set_matches_reference(isa):
    rng = np.random.default_rng(9)
    parents = random_forest(rng, 40, arity=3)
    x = rng.standard_normal((40, 3))
    w = weights(rng, 3, 19, 3, True)
    dh = rng.standard_normal((40, 19))
    try:
        _C.set_isa(isa)
        for dtype in (np.float64, np.float32):
            got, want, g_got, g_want = run_both(x, parents, w, 3, dh, None, dtype)
            assert_close(got.h, want.h, dtype)
            for a, b in zip(g_got, g_want):
                assert_close(a, b, dtype)
    finally:
        _C.set_isa("auto")


def test_tree_lstm_never_modifies_callers_arrays():
    rng = np.random.default_rng(10)
    n = 25
    parents = random_forest(rng, n, arity=2)
    big = rng.standard_normal((n, 8))
    x = big[:, ::2]  # a non-contiguous view
    w = weights(rng, 4, 5, 2, True)
    dh, dc = rng.standard_normal((n, 5)), rng.standard_normal((n, 5))
    before = [a.copy() for a in (parents, big, *w, dh, dc)]
    r = fastrnn.tree_lstm_forward(x, parents, *w, arity=2)
    fastrnn.tree_lstm_backward(r, dh, dc)
    for a, b in zip((parents, big, *w, dh, dc), before):
        assert np.array_equal(a, b)
    want = reference.tree_lstm_forward(np.ascontiguousarray(x), parents, *w, arity=2)
    np.testing.assert_allclose(r.h, want.h, rtol=1e-10, atol=1e-12)


def test_empty_forest_and_zero_input_size():
    w_ih, w_hh, b_ih, b_hh = weights(np.random.default_rng(0), 3, 2, None, True)
    r = fastrnn.tree_lstm_forward(np.zeros((0, 3)), np.zeros(0, np.int64), w_ih, w_hh, b_ih, b_hh)
    assert r.h.shape == (0, 2)
    g = fastrnn.tree_lstm_backward(r, np.zeros((0, 2)))
    assert g.dx.shape == (0, 3) and not g.dw_ih.any() and not g.db_hh.any()
    # No input at all: every node sees only its children (and here no bias), so h = 0.
    r = fastrnn.tree_lstm_forward(np.zeros((3, 0)), [-1, 0, 0], np.ones((8, 0)), np.ones((8, 2)))
    assert not r.h.any()
    assert fastrnn.tree_lstm_backward(r, np.ones((3, 2))).dw_ih.shape == (8, 0)


@pytest.mark.parametrize("arity", [None, 2])
def test_scratch_kept_from_another_call_does_not_leak_into_tree_results(arity):
    """The level loop's buffers come from kept scratch blocks, not zeroed; a call that leaves them
    full of NaN must not change the next call's states or gradients."""
    rng = np.random.default_rng(7)
    n, inp, hidden = 600, 40, 64  # node tables beyond the 256 KiB kept-block cut
    parents = random_forest(rng, n, arity=arity, root_prob=0.05)
    x = rng.standard_normal((n, inp)).astype(np.float32)
    x[rng.random(n) < 0.5] = 0.0  # rows without input take the other path
    w = [a.astype(np.float32) for a in weights(rng, inp, hidden, arity, True)]
    dh = rng.standard_normal((n, hidden)).astype(np.float32)
    dc = rng.standard_normal((n, hidden)).astype(np.float32)
    fastrnn.release_memory()
    first = fastrnn.tree_lstm_forward(x, parents, *w, arity=arity)
    first_grads = fastrnn.tree_lstm_backward(first, dh, dc)
    nan_w = [np.full_like(a, np.nan) for a in w]
    for training in (True, False):
        poisoned = fastrnn.tree_lstm_forward(np.full_like(x, np.nan), parents, *nan_w, arity=arity,
                                             training=training)
        if training:
            fastrnn.tree_lstm_backward(poisoned, np.full_like(dh, np.nan), np.full_like(dc, np.nan))
    again = fastrnn.tree_lstm_forward(x, parents, *w, arity=arity)
    grads = fastrnn.tree_lstm_backward(again, dh, dc)
    np.testing.assert_array_equal(first.h, again.h)
    np.testing.assert_array_equal(first.c, again.c)
    for name in ("dx", "dw_ih", "dw_hh", "db_ih", "db_hh"):
        np.testing.assert_array_equal(getattr(first_grads, name), getattr(grads, name))
    fastrnn.release_memory()
