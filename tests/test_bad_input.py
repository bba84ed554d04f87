"""Bad input to the public functions: each case raises a specific exception whose message names the
argument and what was expected, before any kernel runs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_problem

import fastrnn
from fastrnn import _C, reference

T, B, I, H = 3, 2, 5, 4
FAMILIES = ("rnn", "lstm", "gru")
CELL = {"rnn": "rnn_tanh", "lstm": "lstm", "gru": "gru"}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
SYMBOL = {"rnn": "H", "lstm": r"4\*H", "gru": r"3\*H"}


def problem(family: str, dtype=np.float64):
    return make_problem(np.random.default_rng(0), CELL[family], T, B, I, H, dtype)


def forward(family: str, **changes):
    """The family's forward on a valid problem with some arguments replaced."""
    return problem(family).replace(**changes).forward()


def shape_id(family: str, arg: str, bad: np.ndarray) -> str:
    return f"{family}-{arg}-" + "x".join(map(str, bad.shape))


# ---- shapes ----------------------------------------------------------------------------------

def wrong_shapes(family: str):
    """(argument, bad value, message fragment) for every array argument of the forward."""
    g, s = GATES[family], SYMBOL[family]
    z = np.zeros
    cases = [
        ("x", z((T, I)), r"x must have shape \(T, B, I\), got \(3, 5\)"),
        ("x", z((1, T, B, I)), r"x must have shape \(T, B, I\), got \(1, 3, 2, 5\)"),
        ("x", z((T, B, I + 1)), rf"w_ih must have shape \({s}, I\) = \({g * H}, {I + 1}\)"),
        ("x", z((T, B, 0)), r"x must have shape \(T, B, I\) with I >= 1, got \(3, 2, 0\)"),
        ("h0", z(H), r"h0 must have shape \(B, H\) = \(2, 4\), got \(4,\)"),
        ("h0", z((1, B, H)), r"h0 must have shape \(B, H\) = \(2, 4\), got \(1, 2, 4\)"),
        ("h0", z((B + 1, H)), r"h0 must have shape \(B, H\) = \(2, 4\), got \(3, 4\)"),
        ("h0", z((B, H + 1)), r"h0 must have shape \(B, H\) = \(2, 4\), got \(2, 5\)"),
        ("w_ih", z(g * H * I), rf"w_ih must have shape \({s}, I\) = \({g * H}, {I}\)"),
        ("w_ih", z((g * H, I, 1)), rf"w_ih must have shape \({s}, I\) = \({g * H}, {I}\)"),
        ("w_ih", z((g * H + 1, I)), rf"w_ih must have shape \({s}, I\) = \({g * H}, {I}\)"),
        ("w_ih", z((g * H, I - 1)), rf"w_ih must have shape \({s}, I\) = \({g * H}, {I}\)"),
        ("w_hh", z(g * H), rf"w_hh must have shape \({s}, H\), got \({g * H},\)"),
        ("w_hh", z((g * H, H, 1)), rf"w_hh must have shape \({s}, H\), got"),
        ("w_hh", z((g * H, 0)), rf"w_hh must have shape \({s}, H\), got \({g * H}, 0\)"),
        ("w_hh", z((g * H + 1, H)), rf"w_hh must have shape \({s}, H\) = \({g * H}, {H}\)"),
        ("w_hh", z((g * H, H + 1)), rf"w_hh must have shape \({s}, H\) = \({g * (H + 1)}, 5\)"),
        ("b_ih", z((1, g * H)), rf"b_ih must have shape \({s},\) = \({g * H},\), got \(1, "),
        ("b_ih", z(g * H + 1), rf"b_ih must have shape \({s},\) = \({g * H},\), got"),
        ("b_hh", z(()), rf"b_hh must have shape \({s},\) = \({g * H},\), got \(\)"),
        ("b_hh", z(g * H - 1), rf"b_hh must have shape \({s},\) = \({g * H},\), got"),
    ]
    if family == "lstm":
        cases += [
            ("c0", z(H), r"c0 must have shape \(B, H\) = \(2, 4\), got \(4,\)"),
            ("c0", z((B, H, 1)), r"c0 must have shape \(B, H\) = \(2, 4\), got \(2, 4, 1\)"),
            ("c0", z((B, H - 1)), r"c0 must have shape \(B, H\) = \(2, 4\), got \(2, 3\)"),
        ]
    return [pytest.param(family, arg, bad, match, id=shape_id(family, arg, bad))
            for arg, bad, match in cases]


@pytest.mark.parametrize("family, arg, bad, match",
                         [c for f in FAMILIES for c in wrong_shapes(f)])
def test_forward_rejects_wrong_shape(family, arg, bad, match):
    with pytest.raises(ValueError, match=match):
        forward(family, **{arg: bad})


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_rejects_weights_of_another_cell(family):
    other = "gru" if family == "lstm" else "lstm"
    weights = problem(other)
    with pytest.raises(ValueError, match=r"w_hh must have shape"):
        forward(family, w_ih=weights.w_ih, w_hh=weights.w_hh, b_ih=weights.b_ih,
                b_hh=weights.b_hh)


# ---- types and dtypes ------------------------------------------------------------------------

ARRAY_ARGS = {"rnn": ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"),
              "lstm": ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"),
              "gru": ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh")}
EVERY_ARG = [(f, a) for f in FAMILIES for a in ARRAY_ARGS[f]]


@pytest.mark.parametrize("family, arg", EVERY_ARG)
def test_forward_rejects_a_string_for_an_array(family, arg):
    with pytest.raises(TypeError, match=rf"{arg} must be an array of float32 or float64, got str"):
        forward(family, **{arg: "zeros"})


@pytest.mark.parametrize("family, arg", [(f, a) for f, a in EVERY_ARG
                                         if a in ("x", "w_ih", "w_hh")])
def test_forward_rejects_none_for_a_required_array(family, arg):
    with pytest.raises(TypeError, match=rf"{arg} must be an array of float32 or float64, "
                                        "got NoneType"):
        forward(family, **{arg: None})


@pytest.mark.parametrize("bad_dtype", (np.int64, np.int32, np.uint8, np.bool_, np.float16,
                                       np.longdouble))
@pytest.mark.parametrize("family, arg", EVERY_ARG)
def test_forward_rejects_non_float_dtypes(family, arg, bad_dtype):
    p = problem(family)
    bad = getattr(p, arg).astype(bad_dtype)
    with pytest.raises(TypeError, match=rf"{arg} must have dtype float32 or float64, "
                                        rf"got {np.dtype(bad_dtype)}"):
        forward(family, **{arg: bad})


@pytest.mark.parametrize("family, arg", EVERY_ARG)
def test_forward_rejects_complex_and_object_arrays(family, arg):
    p = problem(family)
    for bad in (getattr(p, arg).astype(np.complex128), getattr(p, arg).astype(object)):
        with pytest.raises(TypeError, match=rf"{arg} must be an array of float32 or float64, "
                                            rf"got dtype {bad.dtype}"):
            forward(family, **{arg: bad})


@pytest.mark.parametrize("family, arg", EVERY_ARG)
def test_forward_rejects_a_float32_float64_mix(family, arg):
    p = problem(family)
    with pytest.raises(TypeError, match=rf"all arrays must have the same dtype .*{arg}: float32"):
        forward(family, **{arg: getattr(p, arg).astype(np.float32)})


# ---- arguments that do not go together ------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("missing", ("b_ih", "b_hh"))
def test_forward_rejects_only_one_bias(family, missing):
    with pytest.raises(ValueError, match="b_ih and b_hh must both be arrays or both be None"):
        forward(family, **{missing: None})


@pytest.mark.parametrize("family", ("rnn", "gru"))
def test_forward_of_a_cell_without_cell_state_rejects_c0(family):
    p = problem(family)
    fn = getattr(fastrnn, f"{family}_forward")
    with pytest.raises(TypeError, match="c0"):
        fn(p.x, p.h0, p.w_ih, p.w_hh, c0=np.zeros((B, H)))


@pytest.mark.parametrize("nonlinearity", ("sigmoid", "Tanh", "", None, 1))
def test_rnn_forward_rejects_unknown_nonlinearity(nonlinearity):
    p = problem("rnn")
    with pytest.raises(ValueError, match=r"nonlinearity must be 'tanh' or 'relu', got "
                                         + repr(nonlinearity).replace("(", r"\(")):
        fastrnn.rnn_forward(p.x, p.h0, p.w_ih, p.w_hh, nonlinearity=nonlinearity)


# ---- backward --------------------------------------------------------------------------------

def backward(family: str, result, **grads):
    return getattr(fastrnn, f"{family}_backward")(result, **grads)


@pytest.mark.parametrize("family", FAMILIES)
def test_backward_of_an_inference_result_is_refused(family):
    result = problem(family).forward(training=False)
    with pytest.raises(ValueError, match=rf"{family}_backward needs a result of "
                                         rf"{family}_forward\(..., training=True\); this one "
                                         "was made with training=False"):
        backward(family, result, dy=np.zeros((T, B, H)))


@pytest.mark.parametrize("family, other", [(f, o) for f in FAMILIES for o in FAMILIES if f != o])
def test_backward_of_another_cells_result_is_refused(family, other):
    result = problem(other).forward()
    with pytest.raises(TypeError, match=rf"result comes from {other}_forward, "
                                        rf"not from {family}_forward"):
        backward(family, result, dy=np.zeros((T, B, H)))


@pytest.mark.parametrize("family", FAMILIES)
def test_backward_of_something_else_than_a_kernel_result_is_refused(family):
    p = problem(family)
    made_by_hand = fastrnn.SequenceResult(y=np.zeros((T, B, H)), h_n=np.zeros((B, H)))
    for bad in (None, {"y": 1}, (p.forward().y, None), made_by_hand,
                p.forward(reference)):
        with pytest.raises(TypeError, match=rf"result must be the SequenceResult of "
                                            rf"{family}_forward\(..., training=True\)"):
            backward(family, bad, dy=np.zeros((T, B, H)))


def wrong_gradients(family: str):
    z = np.zeros
    cases = [
        ("dy", z((T, B)), r"dy must have shape \(T, B, H\) = \(3, 2, 4\), got \(3, 2\)"),
        ("dy", z((T, B, H + 1)), r"dy must have shape \(T, B, H\) = \(3, 2, 4\), got \(3, 2, 5"),
        ("dy", z((T + 1, B, H)), r"dy must have shape \(T, B, H\) = \(3, 2, 4\), got \(4, 2, 4"),
        ("dh_n", z(H), r"dh_n must have shape \(B, H\) = \(2, 4\), got \(4,\)"),
        ("dh_n", z((B + 1, H)), r"dh_n must have shape \(B, H\) = \(2, 4\), got \(3, 4\)"),
    ]
    if family == "lstm":
        cases += [("dc_n", z((B, H, 1)), r"dc_n must have shape \(B, H\) = \(2, 4\), got "),
                  ("dc_n", z((B, 1)), r"dc_n must have shape \(B, H\) = \(2, 4\), got \(2, 1\)")]
    return [pytest.param(family, arg, bad, match, id=shape_id(family, arg, bad))
            for arg, bad, match in cases]


@pytest.mark.parametrize("family, arg, bad, match",
                         [c for f in FAMILIES for c in wrong_gradients(f)])
def test_backward_rejects_wrong_gradient_shape(family, arg, bad, match):
    result = problem(family).forward()
    grads = {"dy": None, arg: bad}
    with pytest.raises(ValueError, match=match):
        backward(family, result, **grads)


GRAD_ARGS = [(f, a) for f in FAMILIES for a in ("dy", "dh_n", "dc_n")
             if a != "dc_n" or f == "lstm"]


@pytest.mark.parametrize("forward_dtype", (np.float64, np.float32))
@pytest.mark.parametrize("family, arg", GRAD_ARGS)
def test_backward_rejects_gradient_of_the_other_float_dtype(family, arg, forward_dtype):
    p = problem(family, forward_dtype)
    other = np.float32 if forward_dtype == np.float64 else np.float64
    bad = getattr(p, arg).astype(other)
    with pytest.raises(TypeError, match=rf"{arg} must have the forward's dtype "
                                        rf"{np.dtype(forward_dtype)}, got {np.dtype(other)}"):
        backward(family, p.forward(), **{"dy": None, arg: bad})


@pytest.mark.parametrize("family, arg", GRAD_ARGS)
def test_backward_rejects_non_float_gradients(family, arg):
    p = problem(family)
    result = p.forward()
    with pytest.raises(TypeError, match=rf"{arg} must have dtype float32 or float64, got int64"):
        backward(family, result, **{"dy": None, arg: getattr(p, arg).astype(np.int64)})
    with pytest.raises(TypeError, match=rf"{arg} must be an array of float32 or float64, got str"):
        backward(family, result, **{"dy": None, arg: "ones"})


@pytest.mark.parametrize("family", ("rnn", "gru"))
def test_backward_of_a_cell_without_cell_state_rejects_dc_n(family):
    result = problem(family).forward()
    with pytest.raises(TypeError, match="dc_n"):
        backward(family, result, dy=None, dc_n=np.zeros((B, H)))


def test_bad_backward_leaves_the_result_usable():
    p = problem("lstm")
    result = p.forward()
    with pytest.raises(ValueError):
        fastrnn.lstm_backward(result, np.zeros((T, B, H + 1)))
    expected = p.backward(p.forward(reference), reference)
    np.testing.assert_allclose(p.backward(result).dw_hh, expected.dw_hh, rtol=1e-10)


# ---- settings --------------------------------------------------------------------------------

@pytest.mark.parametrize("n", (0, -1, 1.5, "2", None, True))
def test_set_num_threads_rejects_anything_but_a_positive_int(n):
    before = fastrnn.get_num_threads()
    with pytest.raises(ValueError, match=r"n must be an int >= 1, got " + repr(n)):
        fastrnn.set_num_threads(n)
    assert fastrnn.get_num_threads() == before


def test_set_isa_rejects_an_unknown_instruction_set():
    before = _C.isa()
    with pytest.raises(ValueError, match=r"instruction set 'sse9' is not available here; "
                                         r"available: .*base"):
        _C.set_isa("sse9")
    assert _C.isa() == before
