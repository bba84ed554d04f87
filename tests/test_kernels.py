"""The fused CPU kernels (fastrnn.rnn/lstm/gru_forward and _backward) against the NumPy reference:
float64 to 1e-10 and float32 to 1e-5 relative, on every instruction set, with 1 and 2 threads,
for shapes with ones, odd sizes and no steps; and their promises about the caller's arrays,
non-contiguous input, NaN and Inf, read-only results and the GIL."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import (CELLS, DTYPES, GRADS, OUTPUTS, SHAPES, Problem, assert_close,
                      assert_results_close, make_problem)

import fastrnn
from fastrnn import reference

shape_ids = ["T{}-B{}-I{}-H{}".format(*s) for s in SHAPES]


def expected_forward(p: Problem) -> fastrnn.SequenceResult:
    """The reference in float64 on exactly the values the kernel sees."""
    return p.astype(np.float64).forward(reference)


def expected_backward(p: Problem) -> fastrnn.SequenceGrads:
    q = p.astype(np.float64)
    return q.backward(q.forward(reference), reference)


def check_forward_and_backward(p: Problem, dtype, training: bool = True) -> None:
    """p (in dtype) through the kernels against the reference: in training mode forward and
    backward, in inference mode the forward."""
    result = p.forward(training=training)
    assert_results_close(result, expected_forward(p), dtype, OUTPUTS)
    if training:
        assert_results_close(p.backward(result), expected_backward(p), dtype, GRADS)


# ---- against the reference -------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=shape_ids)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("training", (True, False), ids=("training", "inference"))
def test_forward_matches_reference(cell, dtype, shape, training, isa, rng):
    p = make_problem(rng, cell, *shape, dtype)
    result = p.forward(training=training)
    assert result.training is training
    assert_results_close(result, expected_forward(p), dtype, OUTPUTS)


@pytest.mark.parametrize("shape", SHAPES, ids=shape_ids)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_backward_matches_reference(cell, dtype, shape, isa, rng):
    p = make_problem(rng, cell, *shape, dtype)
    assert_results_close(p.backward(p.forward()), expected_backward(p), dtype, GRADS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_backward_of_a_wide_batch_with_many_gate_rows_matches_reference(cell, dtype, isa, rng):
    """From 64 batch rows the backward's recurrent product goes over the gate rows in passes
    (a column slice of W_hh held in L2), summing in d h: H = 560 gives the LSTM 2240 gate rows,
    two or three passes with a short last one on every instruction set."""
    check_forward_and_backward(make_problem(rng, cell, 3, 70, 6, 560, dtype), dtype)


@pytest.mark.parametrize("draw", range(6))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_random_shapes_match_reference(cell, dtype, draw, rng):
    steps, batch = int(rng.integers(0, 7)), int(rng.integers(1, 10))
    inp, hidden = int(rng.integers(1, 24)), int(rng.integers(1, 40))
    p = make_problem(rng, cell, steps, batch, inp, hidden, dtype, bias=bool(draw % 2),
                     h0=draw % 3 != 0)
    check_forward_and_backward(p, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_empty_batch_gives_empty_results(cell, dtype, rng):
    p = make_problem(rng, cell, 3, 0, 4, 5, dtype)
    result = p.forward()
    assert result.y.shape == (3, 0, 5) and result.h_n.shape == (0, 5)
    grads = p.backward(result)
    assert grads.dx.shape == (3, 0, 4) and grads.dh0.shape == (0, 5)
    assert not grads.dw_ih.any() and not grads.dw_hh.any() and not grads.db_hh.any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_saturated_gates_match_reference(cell, dtype, isa, rng):
    # Pre-activations up to several hundred: exp over- and underflows, tanh and sigmoid saturate.
    p = make_problem(rng, cell, 4, 3, 6, 19, dtype)
    # Backward only in float64: there 1 - y^2 of a saturated y is a cancellation that float32
    # cannot resolve to 1e-5, whatever the kernel.
    p = p.replace(x=(p.x * 100).astype(dtype), h0=(p.h0 * 100).astype(dtype))
    with np.errstate(over="ignore"):
        result = p.forward()
        assert_results_close(result, expected_forward(p), dtype, OUTPUTS)
        assert_results_close(p.forward(training=False), expected_forward(p), dtype, OUTPUTS)
        if dtype == np.float64:
            assert_results_close(p.backward(result), expected_backward(p), dtype, GRADS)


OPTIONAL = {
    "no_bias": dict(bias=False),
    "no_initial_state": dict(h0=False, c0=False),
    "no_c0": dict(c0=False),
    "nothing_optional": dict(bias=False, h0=False, c0=False),
}


@pytest.mark.parametrize("options", OPTIONAL.values(), ids=OPTIONAL.keys())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_optional_arguments_left_out_match_reference(cell, dtype, options, rng):
    p = make_problem(rng, cell, 4, 3, 5, 6, dtype, **options)
    check_forward_and_backward(p, dtype)
    grads = p.backward(p.forward())
    assert (grads.db_ih is None) == (grads.db_hh is None) == (p.b_ih is None)
    assert grads.dh0.shape == (3, 6)


GRADIENTS_GIVEN = {
    "final_state_only": dict(dy=False),
    "dy_only": dict(dh_n=False, dc_n=False),
    "dc_n_only": dict(dy=False, dh_n=False),
}


@pytest.mark.parametrize("cell, given", [
    pytest.param(cell, given, id=f"{cell}-{name}") for cell in CELLS
    for name, given in GRADIENTS_GIVEN.items() if name != "dc_n_only" or cell == "lstm"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_with_some_output_gradients_none_matches_reference(cell, dtype, given, rng):
    p = make_problem(rng, cell, 5, 3, 4, 6, dtype, **given)
    assert_results_close(p.backward(p.forward()), expected_backward(p), dtype, GRADS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_backward_with_no_output_gradients_is_zero(cell, dtype, rng):
    p = make_problem(rng, cell, 3, 2, 4, 5, dtype, dy=False, dh_n=False, dc_n=False)
    grads = p.backward(p.forward())
    for name in GRADS:
        value = getattr(grads, name)
        if value is not None:
            assert value.dtype == dtype
            assert not value.any(), name


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_kernels_match_reference_with_one_and_two_threads(cell, dtype, num_threads, rng):
    # Big enough that the pointwise loops split over threads (about 2^15 flops per step).
    p = make_problem(rng, cell, 2, 70, 9, 130, dtype)
    assert fastrnn.get_num_threads() == num_threads
    check_forward_and_backward(p, dtype)


# Batch 1 (AVX-512): the input projection of later steps runs in the step's own panels, a group
# of 4 rows ahead; the first group and a short last one run alone. Split over two threads, a
# thread's share of W_hh that fits in L1 (float32 RNN at H = 128 and LSTM at H = 64: 32 KB) runs
# the projection up front instead; float64 doubles the share and keeps the jobs.
# Inputs wider and narrower than the state, hidden sizes of part vectors and several blocks.
@pytest.mark.parametrize("shape", [(37, 1, 19, 40), (18, 1, 130, 33), (9, 1, 3, 70), (61, 1, 64, 64),
                                   (21, 1, 24, 128)])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("training", (True, False), ids=("training", "inference"))
def test_batch_one_with_the_projection_in_the_step_panels_matches_reference(
        cell, dtype, bias, shape, training, isa, num_threads, rng):
    p = make_problem(rng, cell, *shape, dtype, bias=bias)
    check_forward_and_backward(p, dtype, training)


# A step too small to split among threads (a few thousand flops): with two threads, one runs
# the steps while the other computes the input projection a chunk of steps ahead of it (16 rows,
# or 16 // B steps; inference keeps them in a ring of four chunks). Shapes from just under to
# many chunks, batch rows that do not divide 16, hidden sizes of part vectors; and the GRU at
# 16k-32k flops a step (H = 64 at B = 1, H = 40 at B = 2), which the pipeline takes from a split.
@pytest.mark.parametrize("shape", [(63, 1, 5, 20), (64, 1, 5, 20), (301, 1, 19, 33), (45, 3, 7, 9),
                                   (200, 5, 2, 6), (130, 1, 17, 64), (70, 2, 9, 40)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("training", (True, False), ids=("training", "inference"))
def test_projection_on_its_own_thread_ahead_of_the_steps_matches_reference(
        cell, dtype, shape, training, isa, num_threads, rng):
    p = make_problem(rng, cell, *shape, dtype)
    check_forward_and_backward(p, dtype, training)


# The last two run the input projection of inference mode in several chunks of steps.
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (7, 5, 11, 13), (30, 3, 2, 4), (20, 64, 5, 7),
                                   (520, 1, 3, 2)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_inference_mode_gives_the_outputs_of_training_mode(cell, dtype, shape, rng):
    p = make_problem(rng, cell, *shape, dtype)
    trained, inferred = p.forward(training=True), p.forward(training=False)
    assert inferred.training is False and inferred._ctx is None  # nothing kept for backward
    for name in OUTPUTS:
        expected = getattr(trained, name)
        assert_close(getattr(inferred, name), None if expected is None else expected.astype(
            np.float64), dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_kernels_accept_array_likes(cell, dtype, rng):
    p = make_problem(rng, cell, 3, 2, 3, 4, np.float64)
    as_lists = p.replace(**{n: a.tolist() for n, a in p.arrays().items()})
    result = as_lists.forward()
    assert result.y.dtype == np.float64
    assert_results_close(result, expected_forward(p), np.float64, OUTPUTS)
    assert_results_close(as_lists.backward(result), expected_backward(p), np.float64, GRADS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_no_steps_gives_empty_output_and_the_initial_state(cell, dtype, rng):
    p = make_problem(rng, cell, 0, 3, 4, 5, dtype)
    result = p.forward()
    assert result.y.shape == (0, 3, 5) and result.y.dtype == dtype
    np.testing.assert_array_equal(result.h_n, p.h0)
    assert not np.shares_memory(result.h_n, p.h0)
    grads = p.backward(result)
    assert grads.dx.shape == (0, 3, 4)
    np.testing.assert_array_equal(grads.dh0, p.dh_n)
    assert not grads.dw_ih.any() and not grads.dw_hh.any() and not grads.db_ih.any()
    if cell == "lstm":
        np.testing.assert_array_equal(result.c_n, p.c0)
        np.testing.assert_array_equal(grads.dc0, p.dc_n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_same_call_twice_gives_identical_results(cell, dtype, rng):
    p = make_problem(rng, cell, 6, 5, 7, 9, dtype)
    first = p.forward()
    again = p.forward()
    grads = [p.backward(first), p.backward(first)]  # backward leaves the result reusable
    for name in OUTPUTS:
        if getattr(first, name) is not None:
            np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    for name in GRADS:
        if getattr(grads[0], name) is not None:
            np.testing.assert_array_equal(getattr(grads[0], name), getattr(grads[1], name))


@pytest.mark.parametrize("cell", CELLS)
def test_scratch_memory_kept_from_another_call_does_not_leak_into_results(cell, rng):
    """Large scratch blocks are reused between calls; a block left full of NaN by one call must
    not change the next call's results (nothing reads scratch it has not written)."""
    p = make_problem(rng, cell, 40, 24, 64, 96, np.float32)  # blocks beyond the 256 KiB cut
    fastrnn.release_memory()
    first = p.forward()
    first_grads = p.backward(first)
    for training in (True, False):  # fill the kept blocks with NaN-made values
        poison = p.replace(x=np.full_like(p.x, np.nan), w_hh=np.full_like(p.w_hh, np.nan))
        result = poison.forward(training=training)
        if training:
            poison.backward(result)
    again = p.forward()
    grads = p.backward(again)
    for name in OUTPUTS:
        if getattr(first, name) is not None:
            np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    for name in GRADS:
        if getattr(first_grads, name) is not None:
            np.testing.assert_array_equal(getattr(first_grads, name), getattr(grads, name))
    fastrnn.release_memory()


@pytest.mark.parametrize("cell", CELLS)
def test_large_outputs_live_until_their_last_view_dies_and_never_share_memory(cell, rng):
    """Large outputs take their memory from the kept scratch blocks and give it back when the
    array dies: a view outliving its result keeps its values through later calls, and the
    outputs of calls alive at once never share memory."""
    p = make_problem(rng, cell, 40, 24, 64, 96, np.float32)  # outputs beyond the 256 KiB cut
    other = p.replace(x=-p.x)
    result = p.forward()
    grads = p.backward(result)
    y_view, dx_view = result.y[3:7], grads.dx[::2]
    y_want, dx_want = y_view.copy(), dx_view.copy()
    del result, grads
    for _ in range(2):  # calls that would reuse the memory if it had been given back
        live = [other.forward(), other.forward()]
        live += [other.backward(live[0]), other.backward(live[1])]
        arrays = [getattr(r, n) for r in live for n in OUTPUTS + GRADS if getattr(r, n, None) is not None]
        for i, a in enumerate(arrays):
            assert not np.shares_memory(a, y_view) and not np.shares_memory(a, dx_view)
            assert not any(np.shares_memory(a, b) for b in arrays[i + 1:])
    np.testing.assert_array_equal(y_view, y_want)
    np.testing.assert_array_equal(dx_view, dx_want)


@pytest.mark.parametrize("which", ["w_ih", "w_hh"])
@pytest.mark.parametrize("batch", [1, 9])  # the projection before the steps, and fused into them
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_weights_changed_in_place_between_calls_are_used(cell, dtype, batch, which, rng):
    """Packed weights are kept between calls and found again by their contents: a weight matrix
    changed in place (one element by one ulp, as an optimizer step may) must be repacked."""
    p = make_problem(rng, cell, 5, batch, 7, 20, dtype)
    p.forward(training=False)  # packs and keeps the weights
    w = getattr(p, which)
    for change in ("one ulp", "swap two"):
        if change == "one ulp":
            w[3, 1] = np.nextafter(w[3, 1], w.dtype.type(np.inf))
        else:  # the same values in another order: a sum of the elements would not see it
            w[[0, 1]] = w[[1, 0]]
        got = p.forward(training=False)
        assert_results_close(got, expected_forward(p), dtype, OUTPUTS)
        again = p.replace(**{which: w.copy()}).forward(training=False)  # another address
        fastrnn.release_memory()
        packed_afresh = p.forward(training=False)
        for name in OUTPUTS:
            if getattr(got, name) is not None:  # bit for bit: one ulp is below any tolerance
                np.testing.assert_array_equal(getattr(got, name), getattr(packed_afresh, name))
                np.testing.assert_array_equal(getattr(again, name), getattr(packed_afresh, name))


# ---- the caller's arrays ---------------------------------------------------------------------

def strided_views(p: Problem) -> Problem:
    """The same values in non-contiguous arrays: transposed storage, steps, negative strides."""
    def transposed(a):  # C-order values stored in Fortran order
        return np.asfortranarray(a)

    def every_other(a):  # a view taking every second element of the last axis of a wider array
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        wide[..., ::2] = a
        return wide[..., ::2]

    def reversed_twice(a):  # negative strides
        return a[::-1].copy()[::-1]

    def time_major_view(a):  # (T, B, .) view of a (B, T, .) array
        return np.ascontiguousarray(a.transpose(1, 0, 2)).transpose(1, 0, 2)

    views = dict(x=time_major_view, h0=every_other, c0=transposed, w_ih=transposed,
                 w_hh=lambda a: np.ascontiguousarray(a.T).T, b_ih=every_other,
                 b_hh=reversed_twice, dy=every_other, dh_n=reversed_twice, dc_n=every_other)
    out = p.replace(**{n: views[n](a) for n, a in p.arrays().items()})
    for name, a in out.arrays().items():
        np.testing.assert_array_equal(a, getattr(p, name))
        assert not a.flags.c_contiguous or a.size <= 1, name
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_non_contiguous_inputs_give_the_same_answer(cell, dtype, rng):
    p = make_problem(rng, cell, 4, 3, 5, 6, dtype)
    q = strided_views(p)
    expected, actual = p.forward(), q.forward()
    for name in OUTPUTS:
        if getattr(expected, name) is not None:
            np.testing.assert_array_equal(getattr(actual, name), getattr(expected, name))
    expected_grads, actual_grads = p.backward(expected), q.backward(actual)
    for name in GRADS:
        if getattr(expected_grads, name) is not None:
            np.testing.assert_array_equal(getattr(actual_grads, name),
                                          getattr(expected_grads, name))


@pytest.mark.parametrize("strided", (False, True), ids=("contiguous", "strided"))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_caller_arrays_are_not_modified(cell, dtype, strided, rng):
    p = make_problem(rng, cell, 4, 3, 5, 6, dtype)
    if strided:
        p = strided_views(p)
    before = p.copy()
    p.forward(training=False)
    result = p.forward()
    grads = p.backward(result)
    for name, a in p.arrays().items():
        np.testing.assert_array_equal(a, getattr(before, name), err_msg=name)
        assert not np.shares_memory(result.y, a) and not np.shares_memory(grads.dx, a), name


@pytest.mark.parametrize("cell", CELLS)
def test_training_result_y_is_read_only(cell, rng):
    result = make_problem(rng, cell, 3, 2, 3, 4).forward()
    with pytest.raises(ValueError, match="read-only"):
        result.y[0, 0, 0] = 1.0


# ---- NaN and Inf -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_nan_in_x_propagates_like_the_reference(cell, dtype, isa, rng):
    # H = 19 covers the SIMD body and its scalar tail on every instruction set.
    p = make_problem(rng, cell, 4, 3, 5, 19, dtype)
    p.x[1, 0, 2] = np.nan
    with np.errstate(invalid="ignore", over="ignore"):
        expected = expected_forward(p)
        expected_grads = expected_backward(p)
    result = p.forward()
    assert np.isnan(result.y[1:, 0]).all() and not np.isnan(result.y[:, 1:]).any()
    assert_results_close(result, expected, dtype, OUTPUTS)
    assert_results_close(p.backward(result), expected_grads, dtype, GRADS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_inf_in_x_propagates_like_the_reference(cell, dtype, isa, rng):
    p = make_problem(rng, cell, 4, 3, 5, 19, dtype)
    p.x[0, 1, 0] = np.inf
    p.x[2, 2, 3] = -np.inf
    with np.errstate(invalid="ignore", over="ignore"):
        expected = expected_forward(p)
    result = p.forward()
    assert_results_close(result, expected, dtype, OUTPUTS)
    assert np.isfinite(result.y[:, 0]).all()  # the rows without Inf are untouched
    grads = p.backward(result)  # ill-defined (0 * Inf) but must not crash
    assert grads.dx.shape == p.x.shape and grads.dw_ih.shape == p.w_ih.shape
    assert np.isfinite(grads.dx[:, 0]).all()


# ---- the GIL ---------------------------------------------------------------------------------

@pytest.fixture
def one_thread():
    """One kernel thread each, so that a concurrent Python thread has a core to run on."""
    before = fastrnn.get_num_threads()
    fastrnn.set_num_threads(1)
    try:
        yield
    finally:
        fastrnn.set_num_threads(before)


def long_call(rng: np.random.Generator, which: str):
    """A function running one LSTM kernel call that takes a while (a few GFLOP)."""
    if which == "forward":
        p = make_problem(rng, "lstm", 150, 64, 256, 256, np.float32)
        return lambda: p.forward(training=False)
    p = make_problem(rng, "lstm", 50, 64, 256, 256, np.float32)
    result = p.forward()
    return lambda: p.backward(result)


@pytest.mark.parametrize("which", ("forward", "backward"))
def test_python_threads_run_while_a_kernel_runs(which, rng, one_thread):
    """A pure-Python thread ticking every millisecond must tick in the middle half of a long
    kernel call; with the GIL held it could not tick at all there. Not a timing test: a few
    attempts are allowed, and any one tick in any attempt suffices."""
    call = long_call(rng, which)
    ticks: list[float] = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    thread = threading.Thread(target=ticker, daemon=True)
    thread.start()
    try:
        for _ in range(5):
            start = time.perf_counter()
            call()
            end = time.perf_counter()
            lo, hi = start + 0.25 * (end - start), start + 0.75 * (end - start)
            if any(lo < t < hi for t in list(ticks)):
                break
        else:
            pytest.fail("no Python thread ran during a kernel call: the GIL was held")
    finally:
        stop.set()
        thread.join()


def test_two_threads_running_kernels_at_once_both_finish_correctly(rng, one_thread):
    p = make_problem(rng, "gru", 40, 32, 128, 128, np.float32)
    alone = p.forward()
    alone_grads = p.backward(alone)
    results: dict[int, tuple] = {}
    errors: list[BaseException] = []

    def work(i):
        try:
            r = p.forward()
            results[i] = (r, p.backward(r))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a kernel call did not finish"
    assert not errors, errors
    for r, g in results.values():
        assert_results_close(r, alone, np.float32, OUTPUTS)
        assert_results_close(g, alone_grads, np.float32, GRADS)
