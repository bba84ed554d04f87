"""The CUDA Tree-LSTM driver and its per-thread functions, run on the CPU: csrc/cuda/tree_driver.h
with the host backend (tests/cuda_host/tree_shim.cpp), which runs every kernel's per-thread function
over its whole index space and the GEMMs as plain loops. Checks the level loop, the gathers and
scatters over the forest's schedule and both kinds against the NumPy reference. Needs only a C++
compiler."""

from __future__ import annotations

import numpy as np
import pytest

import fastrnn
from fastrnn import reference
from _tree_util import random_forest, weights
from test_cuda_host import build_shim, tolerances


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    return build_shim(tmp_path_factory, "tree_shim.cpp", "_cuda_tree_host")


def schedule(parents):
    """The forest's arrays, as fastrnn._cuda gets them."""
    f = fastrnn.Forest(parents)._c
    return f.order, f.level_offsets, f.child_offsets, f.child_rows


def run_case(host, parents, arity, *, inp=3, hidden=5, bias=True, grads=("dh", "dc"),
             dtype=np.float64, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    parents = np.asarray(parents, dtype=np.int64)
    n = parents.shape[0]
    x = rng.standard_normal((n, inp))
    w = weights(rng, inp, hidden, arity, bias, scale=scale)
    dh = rng.standard_normal((n, hidden)) if "dh" in grads else None
    dc = rng.standard_normal((n, hidden)) if "dc" in grads else None
    want = reference.tree_lstm_forward(x, parents, *w, arity=arity)
    g_want = reference.tree_lstm_backward(want, dh, dc)

    cast = lambda a: None if a is None else a.astype(dtype)  # noqa: E731
    sched = schedule(parents)
    args = (arity or 0, cast(x), *map(cast, w))
    h, c, state = host.tree_forward(*sched, *args, True)
    tol = tolerances(dtype)
    np.testing.assert_allclose(h, want.h, **tol)
    np.testing.assert_allclose(c, want.c, **tol)

    # Inference keeps nothing and gives the same outputs.
    h2, c2, none = host.tree_forward(*sched, *args, False)
    assert none is None
    np.testing.assert_array_equal(h2, h)
    np.testing.assert_array_equal(c2, c)

    got = host.tree_backward(state, cast(dh), cast(dc))
    for name, a, b in zip(("dx", "dw_ih", "dw_hh", "db_ih", "db_hh"), got, g_want):
        if not bias and name.startswith("db"):
            assert a is None
        else:
            np.testing.assert_allclose(a, b, err_msg=name, **tol)


KINDS = [None, 1, 2, 4]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("arity", KINDS, ids=lambda a: "child_sum" if a is None else f"N{a}")
@pytest.mark.parametrize("seed", [0, 1])
def test_tree_driver_matches_reference_on_random_forests(host, seed, arity, bias):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(1, 40))
    parents = random_forest(rng, n, arity=arity, root_prob=0.15)
    run_case(host, parents, arity, inp=int(rng.integers(1, 5)), hidden=int(rng.integers(1, 7)),
             bias=bias, seed=seed)


@pytest.mark.parametrize("arity", [None, 3])
def test_tree_driver_float32_matches_reference(host, arity):
    rng = np.random.default_rng(7)
    run_case(host, random_forest(rng, 30, arity=arity, root_prob=0.2), arity, inp=4, hidden=6,
             dtype=np.float32, scale=0.3)


@pytest.mark.parametrize("arity", [None, 1])
def test_tree_driver_deep_chain_matches_reference(host, arity):
    # One level per node: 60 levels of one row and one edge each.
    n = 60
    parents = np.append(np.arange(1, n), -1)
    run_case(host, parents, arity, inp=2, hidden=3, scale=0.3)


@pytest.mark.parametrize("arity", [None, 30])
def test_tree_driver_wide_node_matches_reference(host, arity):
    # A root with 30 children, one of which has 3 of its own: levels of unequal width.
    parents = np.append(np.full(30, 30), -1)
    parents = np.concatenate([parents, [5, 5, 5]])
    run_case(host, parents, arity, inp=3, hidden=4, scale=0.2)


@pytest.mark.parametrize("arity", [None, 2])
def test_tree_driver_with_only_leaves_and_one_sided_gradients(host, arity):
    run_case(host, [-1, -1, -1], arity, grads=("dh",))
    run_case(host, [1, -1, 1], arity, grads=("dc",), bias=False)
    run_case(host, [2, 2, -1, 2][:3], arity, grads=())


def test_tree_driver_with_zero_input_size_and_no_nodes(host):
    run_case(host, [1, 2, -1, 2], None, inp=0)
    run_case(host, np.zeros(0, np.int64), None)
    run_case(host, np.zeros(0, np.int64), 3, inp=0)
