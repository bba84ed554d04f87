"""The NumPy reference (fastrnn.reference), the oracle of every kernel test, checked on its own:
its backward against central finite differences of its forward in float64, for every input and
parameter of every cell, and its handling of the optional arguments."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CELLS, GATES, Problem, make_problem

from fastrnn import reference

EPS = 1e-6  # central differences: truncation ~EPS^2, rounding ~1e-16 / EPS


def loss(p: Problem) -> float:
    """sum(y * dy) + sum(h_n * dh_n) (+ sum(c_n * dc_n)): its gradient is what backward returns
    for the upstream gradients dy, dh_n, dc_n."""
    r = p.forward(reference)
    total = np.sum(r.y * p.dy) + np.sum(r.h_n * p.dh_n)
    if p.dc_n is not None:
        total += np.sum(r.c_n * p.dc_n)
    return float(total)


def numerical_gradient(p: Problem, name: str) -> np.ndarray:
    base = getattr(p, name)
    grad = np.zeros_like(base)
    for idx in np.ndindex(base.shape):
        values = []
        for sign in (1, -1):
            moved = base.copy()
            moved[idx] += sign * EPS
            values.append(loss(p.replace(**{name: moved})))
        grad[idx] = (values[0] - values[1]) / (2 * EPS)
    return grad


def relu_problem(rng: np.random.Generator, steps: int, batch: int, inp: int,
                 hidden: int) -> Problem:
    """An RNN-relu problem whose pre-activations stay far from the kink at 0: each unit has a bias
    of +-1 (some units always on, some always off) and small weights, so that finite differences
    never cross the kink."""
    p = make_problem(rng, "rnn_relu", steps, batch, inp, hidden)
    sign = np.where(np.arange(hidden) % 2 == 0, 1.0, -1.0)
    return p.replace(w_ih=0.1 * p.w_ih, w_hh=0.1 * p.w_hh, b_ih=0.5 * sign + 0.05 * p.b_ih,
                     b_hh=0.5 * sign + 0.05 * p.b_hh, h0=np.abs(p.h0))


def relu_preactivations(p: Problem) -> np.ndarray:
    h, pre = p.h0, []
    for t in range(p.x.shape[0]):
        a = p.x[t] @ p.w_ih.T + p.b_ih + h @ p.w_hh.T + p.b_hh
        pre.append(a)
        h = np.maximum(a, 0)
    return np.stack(pre)


def problem_for(cell: str, rng: np.random.Generator) -> Problem:
    steps, batch, inp, hidden = 3, 2, 3, 4
    if cell == "rnn_relu":
        p = relu_problem(rng, steps, batch, inp, hidden)
        pre = relu_preactivations(p)
        assert np.abs(pre).min() > 0.1  # no finite difference step crosses the kink
        assert (pre > 0).any() and (pre < 0).any()  # both branches are exercised
        return p
    return make_problem(rng, cell, steps, batch, inp, hidden)


@pytest.mark.parametrize("cell, name", [(cell, name) for cell in CELLS for name in Problem.INPUTS
                                         if name != "c0" or cell == "lstm"])
def test_reference_backward_matches_finite_differences(cell, name, rng):
    p = problem_for(cell, rng)
    grads = p.backward(p.forward(reference), reference)
    analytic = getattr(grads, "d" + name)
    numeric = numerical_gradient(p, name)
    assert analytic.shape == getattr(p, name).shape
    assert np.abs(numeric).max() > 1e-3  # the loss really depends on this argument
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("cell", CELLS)
def test_reference_forward_treats_none_as_zeros(cell, rng):
    p = make_problem(rng, cell, 3, 2, 3, 4)
    g = GATES[cell] * 4
    zeros = p.replace(h0=np.zeros((2, 4)), c0=np.zeros((2, 4)) if cell == "lstm" else None,
                      b_ih=np.zeros(g), b_hh=np.zeros(g))
    nones = p.replace(h0=None, c0=None, b_ih=None, b_hh=None)
    expected, actual = zeros.forward(reference), nones.forward(reference)
    np.testing.assert_array_equal(actual.y, expected.y)
    np.testing.assert_array_equal(actual.h_n, expected.h_n)
    if cell == "lstm":
        np.testing.assert_array_equal(actual.c_n, expected.c_n)
    grads = nones.backward(actual, reference)
    assert grads.db_ih is None and grads.db_hh is None
    assert grads.dh0.shape == (2, 4)


@pytest.mark.parametrize("cell", CELLS)
def test_reference_backward_treats_missing_gradients_as_zeros(cell, rng):
    p = make_problem(rng, cell, 3, 2, 3, 4)
    r = p.forward(reference)
    zero_dy = p.replace(dy=np.zeros_like(p.dy)).backward(r, reference)
    none_dy = p.replace(dy=None).backward(r, reference)
    for name in ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh"):
        a, b = getattr(none_dy, name), getattr(zero_dy, name)
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
def test_reference_with_no_steps_returns_initial_state(cell, rng):
    p = make_problem(rng, cell, 0, 2, 3, 4)
    r = p.forward(reference)
    assert r.y.shape == (0, 2, 4)
    np.testing.assert_array_equal(r.h_n, p.h0)
    g = p.backward(r, reference)
    np.testing.assert_array_equal(g.dh0, p.dh_n)
    assert g.dx.shape == (0, 2, 3)
    assert not g.dw_ih.any() and not g.dw_hh.any()
    if cell == "lstm":
        np.testing.assert_array_equal(r.c_n, p.c0)
        np.testing.assert_array_equal(g.dc0, p.dc_n)


@pytest.mark.parametrize("cell", CELLS)
def test_reference_computes_in_the_inputs_dtype(cell, rng):
    p = make_problem(rng, cell, 2, 2, 3, 4, np.float32)
    r = p.forward(reference)
    g = p.backward(r, reference)
    assert r.y.dtype == np.float32 and r.h_n.dtype == np.float32
    assert g.dx.dtype == np.float32 and g.dw_hh.dtype == np.float32
