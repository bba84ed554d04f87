"""The CUDA kernels on a GPU: every cell, dtype and option against the NumPy reference and against
torch's cuDNN modules, the caller's array kind and stream. These run where fastrnn.cuda is
available and are skipped, with the reason, elsewhere. The first tests need no GPU: how GPU arrays
are recognised, and the clear error where they cannot run."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import fastrnn
import packed_reference as pr
from fastrnn import cuda

REASON = cuda.unavailable_reason()
needs_gpu = pytest.mark.skipif(REASON is not None, reason=f"no GPU for fastrnn: {REASON}")
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
DTYPES = ["float64", "float32", "float16", "bfloat16"]
# float64 and float32 as everywhere; the 16-bit types store every h (and dx, dh0) rounded to
# 11 or 8 significant bits, a few of their epsilons (2**-11, 2**-8) over these short sequences.
TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-5, atol=1e-5),
       "float16": dict(rtol=1e-2, atol=1e-2), "bfloat16": dict(rtol=5e-2, atol=5e-2)}


class FakeGpuArray:
    """Claims CUDA memory through the interfaces fastrnn looks at, and holds none."""

    def __init__(self, kind: str):
        if kind == "cai":
            self.__cuda_array_interface__ = {"shape": (2, 1, 3), "typestr": "<f4",
                                             "data": (0, False), "version": 3}
        else:
            self.__dlpack_device__ = lambda: (2, 0)


def test_gpu_arrays_are_recognised_without_importing_libraries():
    assert cuda.is_gpu_array(FakeGpuArray("cai"))
    assert cuda.is_gpu_array(FakeGpuArray("dlpack"))
    assert not cuda.is_gpu_array(np.zeros(3))
    assert not cuda.is_gpu_array(torch.zeros(3))  # a CPU tensor
    assert not cuda.is_gpu_array([1.0, 2.0])
    assert not cuda.is_gpu_array(None)


def test_availability_is_reported_consistently():
    assert cuda.is_available() == (cuda.unavailable_reason() is None)
    if not cuda.is_built():
        assert "FASTRNN_CUDA=ON" in cuda.unavailable_reason()


def test_import_loads_neither_the_cuda_module_nor_gpu_libraries():
    code = ("import sys, fastrnn; fastrnn.cuda.is_gpu_array(object()); "
            "print(sorted(m for m in ('fastrnn._cuda', 'torch', 'cupy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cuda_failures_raise_python_errors():
    module = cuda._load()
    if module is None:
        pytest.skip(f"fastrnn._cuda does not load: {cuda.unavailable_reason()}")
    with pytest.raises(ValueError, match="unsupported dtype 'int8'"):
        module.layer_forward("int8", "lstm", 1, 1, 1, 1, None, False, {}, 0, 0)
    # No driver: the first runtime call fails; with a GPU: a device that does not exist.
    with pytest.raises(module.CudaError, match=r"cuda(GetDevice|SetDevice) failed: cudaError"):
        module.layer_forward("float32", "lstm", 0, 0, 1, 1, None, False, {}, 1 << 20, 0)


@pytest.mark.skipif(REASON is None, reason="a GPU is available here")
@pytest.mark.parametrize("kind", ["cai", "dlpack"])
def test_gpu_arrays_without_a_usable_gpu_raise_a_clear_error(kind):
    w = np.zeros((8, 3), np.float32)
    with pytest.raises(RuntimeError, match="cannot run on the GPU: "):
        fastrnn.lstm_forward(FakeGpuArray(kind), None, None, w, w[:, :2])


# ---- on a GPU ---------------------------------------------------------------------------------

def gpu(a: np.ndarray, dtype: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to("cuda").to(getattr(torch, dtype))


def host(t) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()


def rounded(a, dtype):
    """a as the GPU sees it: rounded to dtype, then float64 for the reference."""
    return None if a is None else host(gpu(a, dtype))


def close(got, want, dtype, what):
    np.testing.assert_allclose(host(got), want, err_msg=what, **TOL[dtype])


@pytest.fixture
def torch_gpu():
    if REASON is not None:
        pytest.skip(f"no GPU for fastrnn: {REASON}")
    if not torch.cuda.is_available():
        pytest.skip("this torch has no CUDA")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


@needs_gpu
@pytest.mark.parametrize("options", ["lengths", "reverse", "plain", "no_bias_no_state", "no_dy"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_kernels_match_reference(torch_gpu, cell, dtype, options):
    rng = np.random.default_rng(1)
    lengths = np.array([7, 5, 5, 2, 1] if options in ("lengths", "reverse") else [6, 6, 6])
    steps, batch, inp, hidden = int(lengths.max()), len(lengths), 5, 8
    bias = states = options != "no_bias_no_state"
    p = pr.random_layer(rng, cell, steps, batch, inp, hidden, np.float64, bias, states)
    p = {k: rounded(v, dtype) for k, v in p.items()}
    dy = None if options == "no_dy" else rounded(rng.standard_normal((steps, batch, hidden)), dtype)
    dh_n = rounded(rng.standard_normal((batch, hidden)), dtype)
    dc_n = rounded(rng.standard_normal((batch, hidden)), dtype) if cell == "lstm" else None
    reverse = options == "reverse"
    want = pr.layer(cell, p, lengths, reverse, dy, dh_n, dc_n)

    sizes = pr.batch_sizes_of(lengths)
    args = {k: None if v is None else gpu(v, dtype) for k, v in p.items()}
    x = gpu(pr.pack(p["x"], lengths), dtype)
    before = {k: None if v is None else v.clone() for k, v in args.items()}
    res = cuda.layer_forward(cell, x, args["h0"], args["c0"], args["w_ih"], args["w_hh"],
                             args["b_ih"], args["b_hh"], batch_sizes=sizes, reverse=reverse)
    assert res.y.dtype == getattr(torch, dtype) and res.y.device.type == "cuda"
    close(res.y, pr.pack(want["y"], lengths), dtype, "y")
    close(res.h_n, want["h_n"], dtype, "h_n")
    if cell == "lstm":
        close(res.c_n, want["c_n"], dtype, "c_n")
    infer = cuda.layer_forward(cell, x, args["h0"], args["c0"], args["w_ih"], args["w_hh"],
                               args["b_ih"], args["b_hh"], batch_sizes=sizes, reverse=reverse,
                               training=False)
    assert torch.equal(infer.y, res.y) and infer._ctx is None

    dy_packed = None if dy is None else gpu(pr.pack(dy, lengths), dtype)
    grads = cuda.layer_backward(res, dy_packed, gpu(dh_n, dtype),
                                None if dc_n is None else gpu(dc_n, dtype))
    close(grads.dx, pr.pack(want["dx"], lengths), dtype, "dx")
    close(grads.dh0, want["dh0"], dtype, "dh0")
    if cell == "lstm":
        close(grads.dc0, want["dc0"], dtype, "dc0")
    weight_dtype = torch.float64 if dtype == "float64" else torch.float32
    for name in ("dw_ih", "dw_hh") + (("db_ih", "db_hh") if bias else ()):
        assert getattr(grads, name).dtype == weight_dtype
        close(getattr(grads, name), want[name], dtype, name)
    if not bias:
        assert grads.db_ih is None and grads.db_hh is None
    for k, v in args.items():
        assert v is None or torch.equal(v, before[k]), f"{k} was modified"


TORCH_MODULES = {"rnn_tanh": (torch.nn.RNN, dict(nonlinearity="tanh")),
                 "rnn_relu": (torch.nn.RNN, dict(nonlinearity="relu")),
                 "lstm": (torch.nn.LSTM, {}), "gru": (torch.nn.GRU, {})}


@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("cell", CELLS)
def test_functions_match_torch_cudnn(torch_gpu, cell, dtype):
    torch.manual_seed(0)
    steps, batch, inp, hidden = 9, 4, 6, 16
    cls, kw = TORCH_MODULES[cell]
    module = cls(inp, hidden, **kw).to("cuda", getattr(torch, dtype))
    x = torch.randn(steps, batch, inp, device="cuda", dtype=getattr(torch, dtype))
    h0 = torch.randn(1, batch, hidden, device="cuda", dtype=x.dtype)
    c0 = torch.randn(1, batch, hidden, device="cuda", dtype=x.dtype)
    dy = torch.randn(steps, batch, hidden, device="cuda", dtype=x.dtype)
    xr = x.clone().requires_grad_()
    h0r, c0r = h0.clone().requires_grad_(), c0.clone().requires_grad_()
    y_t, state = module(xr, (h0r, c0r) if cell == "lstm" else h0r)
    y_t.backward(dy)

    w = [module.weight_ih_l0.detach(), module.weight_hh_l0.detach(),
         module.bias_ih_l0.detach(), module.bias_hh_l0.detach()]
    if cell == "lstm":
        res = fastrnn.lstm_forward(x, h0[0], c0[0], *w)
        g = fastrnn.lstm_backward(res, dy)
    elif cell == "gru":
        res = fastrnn.gru_forward(x, h0[0], *w)
        g = fastrnn.gru_backward(res, dy)
    else:
        res = fastrnn.rnn_forward(x, h0[0], *w, nonlinearity=cell[4:])
        g = fastrnn.rnn_backward(res, dy)
    assert isinstance(res.y, torch.Tensor) and isinstance(g.dx, torch.Tensor)
    close(res.y, host(y_t), dtype, "y")
    close(res.h_n, host((state[0] if cell == "lstm" else state)[0]), dtype, "h_n")
    close(g.dx, host(xr.grad), dtype, "dx")
    close(g.dh0, host(h0r.grad[0]), dtype, "dh0")
    for name, p in (("dw_ih", module.weight_ih_l0), ("dw_hh", module.weight_hh_l0),
                    ("db_ih", module.bias_ih_l0), ("db_hh", module.bias_hh_l0)):
        close(getattr(g, name), host(p.grad), dtype, name)


@needs_gpu
def test_functions_on_gpu_match_the_cpu_path(torch_gpu):
    rng = np.random.default_rng(3)
    p = pr.random_layer(rng, "gru", 5, 3, 4, 6, np.float64)
    dy = rng.standard_normal((5, 3, 6))
    w = [p[k] for k in ("h0", "w_ih", "w_hh", "b_ih", "b_hh")]
    cpu = fastrnn.gru_forward(p["x"], *w)
    dev = fastrnn.gru_forward(gpu(p["x"], "float64"), *[gpu(a, "float64") for a in w])
    np.testing.assert_allclose(host(dev.y), cpu.y, rtol=1e-10, atol=1e-12)
    g_cpu = fastrnn.gru_backward(cpu, dy)
    g_dev = fastrnn.gru_backward(dev, gpu(dy, "float64"))
    for name in ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"):
        np.testing.assert_allclose(host(getattr(g_dev, name)), getattr(g_cpu, name), rtol=1e-10,
                                   atol=1e-12, err_msg=name)


@needs_gpu
def test_kernels_run_on_the_callers_stream(torch_gpu):
    # A side stream (non-blocking) first sleeps, then writes x; the kernels queued on the same
    # stream must see the new x. On any other stream they would read the old one.
    rng = np.random.default_rng(4)
    p = {k: gpu(v, "float32") for k, v in pr.random_layer(rng, "lstm", 6, 2, 3, 4, np.float32).items()}
    x_new = torch.randn_like(p["x"])
    want = fastrnn.lstm_forward(x_new, p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)
        p["x"].copy_(x_new)
        got = fastrnn.lstm_forward(p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"],
                                   p["b_hh"])
    side.synchronize()
    assert torch.equal(got.y, want.y)


@needs_gpu
def test_bad_gpu_arguments_name_the_argument(torch_gpu):
    x = torch.zeros(3, 2, 4, device="cuda")
    w_ih, w_hh = torch.zeros(12, 4, device="cuda"), torch.zeros(12, 3, device="cuda")
    with pytest.raises(TypeError, match="h0 must be a GPU array"):
        fastrnn.gru_forward(x, np.zeros((2, 3), np.float32), w_ih, w_hh)
    with pytest.raises(TypeError, match="w_hh must have dtype float32"):
        fastrnn.gru_forward(x, None, w_ih, w_hh.double())
    with pytest.raises(ValueError, match=r"w_ih must have shape \(3\*H, I\) = \(9, 4\)"):
        fastrnn.gru_forward(x, None, w_ih, w_hh[:9])
    with pytest.raises(TypeError, match="must have dtype float32, float64, float16 or bfloat16"):
        fastrnn.gru_forward(x.int(), None, w_ih, w_hh)
    res = fastrnn.gru_forward(x, None, w_ih, w_hh, training=False)
    with pytest.raises(ValueError, match="training=False"):
        fastrnn.gru_backward(res, None)
    res = fastrnn.gru_forward(x, None, w_ih, w_hh)
    with pytest.raises(ValueError, match=r"dy must have shape \(T, B, H\)"):
        fastrnn.gru_backward(res, torch.zeros(3, 2, 4, device="cuda"))
    with pytest.raises(TypeError, match="comes from gru_forward"):
        fastrnn.lstm_backward(res, None)


@needs_gpu
def test_cupy_arrays_come_back_as_cupy_arrays():
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(5)
    p = pr.random_layer(rng, "rnn_tanh", 4, 2, 3, 5, np.float32)
    res = fastrnn.rnn_forward(*[cupy.asarray(p[k]) for k in ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh")])
    assert isinstance(res.y, cupy.ndarray) and isinstance(res.h_n, cupy.ndarray)
    want = fastrnn.rnn_forward(*[p[k] for k in ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh")])
    np.testing.assert_allclose(cupy.asnumpy(res.y), want.y, rtol=1e-5, atol=1e-5)
    g = fastrnn.rnn_backward(res, cupy.ones_like(res.y))
    assert isinstance(g.dw_ih, cupy.ndarray)
