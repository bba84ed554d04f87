"""The CUDA layer driver and its per-thread functions, run on the CPU: csrc/cuda/driver.h with a host
backend (tests/cuda_host/shim.cpp) that calls every kernel's per-thread function over its whole
index space and does the GEMMs as plain loops. Checks indexing, masking for lengths and the
direction against the NumPy reference, sequence by sequence. Needs only a C++ compiler."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pybind11
import pytest

import packed_reference as pr

ROOT = Path(__file__).resolve().parents[1]
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def build_shim(tmp_path_factory, source: str, name: str):
    """tests/cuda_host/<source>, compiled with the host compiler into a temporary folder and
    imported as module `name`."""
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        pytest.skip(f"no C++ compiler ({cxx}) to build the host shim")
    out = tmp_path_factory.mktemp(name) / (name + sysconfig.get_config_var("EXT_SUFFIX"))
    cmd = [cxx, "-O1", "-std=c++17", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
           "-Wno-unused-parameter", "-I" + pybind11.get_include(),
           "-I" + sysconfig.get_paths()["include"], str(ROOT / "tests/cuda_host" / source),
           "-o", str(out)]
    subprocess.run(cmd, check=True)
    spec = importlib.util.spec_from_file_location(name, out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """The shim of the layer and stack drivers."""
    return build_shim(tmp_path_factory, "shim.cpp", "_cuda_host")


def tolerances(dtype):
    return dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)


def run_case(host, cell, lengths, reverse, dtype, *, bias=True, states=True, grads=("dy", "dh_n", "dc_n"),
             inp=3, hidden=5, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, dtype=np.int64)
    steps, batch = int(lengths.max(initial=0)), len(lengths)
    p = pr.random_layer(rng, cell, steps, batch, inp, hidden, dtype, bias, states)
    dy = rng.standard_normal((steps, batch, hidden)).astype(dtype) if "dy" in grads else None
    dh_n = rng.standard_normal((batch, hidden)).astype(dtype) if "dh_n" in grads else None
    dc_n = (rng.standard_normal((batch, hidden)).astype(dtype)
            if "dc_n" in grads and cell == "lstm" else None)
    want = pr.layer(cell, p, lengths, reverse, dy, dh_n, dc_n)

    sizes = pr.batch_sizes_of(lengths)
    x = pr.pack(p["x"], lengths)
    w = (p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], sizes)
    y, h_n, c_n, saved = host.layer_forward(cell, steps, batch, reverse, x, *w, True)
    tol = tolerances(dtype)
    np.testing.assert_allclose(pr.unpack(y, lengths, steps), want["y"], **tol)
    np.testing.assert_allclose(h_n, want["h_n"], **tol)
    if cell == "lstm":
        np.testing.assert_allclose(c_n, want["c_n"], **tol)

    # Inference mode keeps nothing and gives the same outputs.
    y2, h_n2, c_n2, saved2 = host.layer_forward(cell, steps, batch, reverse, x, *w, False)
    assert saved2 is None
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(h_n2, h_n)

    dy_packed = None if dy is None else pr.pack(dy, lengths)
    dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh = host.layer_backward(
        cell, steps, batch, reverse, x, *w, y, saved, dy_packed, dh_n, dc_n)
    np.testing.assert_allclose(pr.unpack(dx, lengths, steps), want["dx"], **tol)
    np.testing.assert_allclose(dh0, want["dh0"], **tol)
    np.testing.assert_allclose(dw_ih, want["dw_ih"], **tol)
    np.testing.assert_allclose(dw_hh, want["dw_hh"], **tol)
    if cell == "lstm":
        np.testing.assert_allclose(dc0, want["dc0"], **tol)
    if bias:
        np.testing.assert_allclose(db_ih, want["db_ih"], **tol)
        np.testing.assert_allclose(db_hh, want["db_hh"], **tol)
    else:
        assert db_ih is None and db_hh is None


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELLS)
def test_driver_matches_reference_with_lengths(host, cell, reverse):
    run_case(host, cell, [6, 4, 4, 1], reverse, np.float64)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELLS)
def test_driver_matches_reference_equal_lengths(host, cell, reverse):
    run_case(host, cell, [5, 5, 5], reverse, np.float64, inp=1, hidden=1)


@pytest.mark.parametrize("cell", CELLS)
def test_driver_float32_matches_reference(host, cell):
    run_case(host, cell, [7, 3, 2], True, np.float32, inp=4, hidden=6)


@pytest.mark.parametrize("cell", CELLS)
def test_driver_without_bias_states_or_dy(host, cell):
    run_case(host, cell, [4, 2], False, np.float64, bias=False, states=False, grads=("dh_n",))
    run_case(host, cell, [4, 2], True, np.float64, grads=("dy",))


@pytest.mark.parametrize("cell", CELLS)
def test_driver_keeps_state_of_empty_sequences(host, cell):
    # A sequence of length 0 is active at no step: h_n = h0 and dh0 = dh_n.
    run_case(host, cell, [3, 1, 0], False, np.float64)
    run_case(host, cell, [3, 0], True, np.float64)


def test_driver_with_no_steps(host):
    run_case(host, "lstm", [0, 0], False, np.float64)


# ---- the stack driver (csrc/cuda/stack_driver.h) against the CPU stack (fastrnn.layers) ----------

def stack_case(host, cell, *, layers, bidirectional, proj=0, lengths=None, dropout=0.0,
               dtype=np.float64, bias=True, states=True, grads=("dy", "dh_n", "dc_n"), seed=0):
    from fastrnn import layers as cpu

    rng = np.random.default_rng(seed)
    steps, batch, inp, hidden = 5, 4, 3, 6
    d = 2 if bidirectional else 1
    s = proj or hidden
    shapes = cpu.weight_shapes(cell, inp, hidden, num_layers=layers, bidirectional=bidirectional,
                               bias=bias, proj_size=proj)
    weights = {k: (0.5 * rng.standard_normal(v)).astype(dtype) for k, v in shapes.items()}
    x = rng.standard_normal((steps, batch, inp)).astype(dtype)
    h0 = rng.standard_normal((layers * d, batch, s)).astype(dtype) if states else None
    c0 = (rng.standard_normal((layers * d, batch, hidden)).astype(dtype)
          if states and cell == "lstm" else None)
    if lengths is not None:
        lengths = np.asarray(lengths, dtype=np.int64)
    kw = dict(num_layers=layers, bidirectional=bidirectional, proj_size=proj, lengths=lengths,
              dropout=dropout, seed=11)
    want = cpu.stack_forward(cell, x, h0, c0, weights, **kw)

    flat = []
    for layer in range(layers):
        for suffix in (["", "_reverse"] if bidirectional else [""]):
            key = f"_l{layer}{suffix}"
            flat += [weights.get(n + key) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh",
                                                    "weight_hr")]
    y, h_n, c_n, state = host.stack_forward(cell, x, h0, c0, flat, hidden, layers, d, proj, lengths,
                                            dropout, 11, True)
    tol = tolerances(dtype)
    np.testing.assert_allclose(y, want.y, **tol)
    np.testing.assert_allclose(h_n, want.h_n, **tol)
    if cell == "lstm":
        np.testing.assert_allclose(c_n, want.c_n, **tol)
    y2, h_n2, _, none = host.stack_forward(cell, x, h0, c0, flat, hidden, layers, d, proj, lengths,
                                           dropout, 11, False)
    assert none is None
    if dropout == 0:  # inference: no dropout, else the same
        np.testing.assert_array_equal(y2, y)
        np.testing.assert_array_equal(h_n2, h_n)

    dy = rng.standard_normal(y.shape).astype(dtype) if "dy" in grads else None
    dh_n = rng.standard_normal(h_n.shape).astype(dtype) if "dh_n" in grads else None
    dc_n = (rng.standard_normal(c_n.shape).astype(dtype)
            if "dc_n" in grads and cell == "lstm" else None)
    g_want = cpu.stack_backward(want, dy, dh_n, dc_n)
    dx, dh0, dc0, g_flat = host.stack_backward(state, dy, dh_n, dc_n)
    np.testing.assert_allclose(dx, g_want.dx, **tol)
    np.testing.assert_allclose(dh0, g_want.dh0, **tol)
    if cell == "lstm":
        np.testing.assert_allclose(dc0, g_want.dc0, **tol)
    names = [n + key for key in [f"_l{layer}{suffix}" for layer in range(layers)
                                 for suffix in (["", "_reverse"] if bidirectional else [""])]
             for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")]
    got = {n: g for n, g in zip(names, g_flat) if g is not None}
    assert sorted(got) == sorted(g_want.grads)
    for name, g in got.items():
        np.testing.assert_allclose(g, g_want.grads[name], err_msg=name, **tol)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", CELLS)
def test_stack_driver_matches_cpu_stack_with_lengths(host, cell, bidirectional):
    stack_case(host, cell, layers=2, bidirectional=bidirectional, lengths=[3, 5, 1, 5])


@pytest.mark.parametrize("cell", CELLS)
def test_stack_driver_matches_cpu_stack_equal_lengths_float32(host, cell):
    stack_case(host, cell, layers=3, bidirectional=True, dtype=np.float32)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_stack_driver_lstm_projection_matches_cpu_stack(host, bidirectional):
    stack_case(host, "lstm", layers=2, bidirectional=bidirectional, proj=4, lengths=[2, 5, 5, 4])
    stack_case(host, "lstm", layers=1, bidirectional=bidirectional, proj=1)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_stack_driver_dropout_masks_match_cpu_stack(host, cell):
    stack_case(host, cell, layers=3, bidirectional=True, lengths=[4, 5, 2, 1], dropout=0.4)


@pytest.mark.parametrize("cell", CELLS)
def test_stack_driver_without_bias_states_or_dy(host, cell):
    stack_case(host, cell, layers=2, bidirectional=True, lengths=[5, 2, 2, 3], bias=False,
               states=False, grads=("dh_n",))
    stack_case(host, cell, layers=2, bidirectional=False, grads=("dy",), proj=3 if cell == "lstm" else 0)
