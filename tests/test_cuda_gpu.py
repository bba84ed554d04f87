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
    # The stack entry point takes the arguments fastrnn._cuda_stack passes (the test with
    # HostStackModule below runs that Python side against the same signature).
    with pytest.raises(ValueError, match="unsupported dtype 'int8'"):
        module.stack_forward("int8", "lstm", 1, 1, 1, 1, 0, 1, 1, None, 0.0, 0, True, {}, [0] * 5,
                             0, 0)
    with pytest.raises(ValueError, match="5 weight pointers per layer and direction"):
        module.stack_forward("float32", "lstm", 1, 1, 1, 1, 0, 1, 2, None, 0.0, 0, True, {},
                             [0] * 5, 0, 0)
    with pytest.raises(module.CudaError, match=r"cuda(GetDevice|SetDevice) failed: cudaError"):
        module.stack_forward("float32", "lstm", 1, 1, 1, 1, 0, 1, 1, np.array([1]), 0.0, 0, True,
                             {}, [0] * 5, 1 << 20, 0)


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


@pytest.mark.skipif(REASON is None, reason="a GPU is available here")
@pytest.mark.parametrize("kind", ["cai", "dlpack"])
def test_stack_with_gpu_arrays_without_a_usable_gpu_raises_a_clear_error(kind):
    weights = {"weight_ih_l0": np.zeros((8, 3), np.float32), "weight_hh_l0": np.zeros((8, 2), np.float32)}
    with pytest.raises(RuntimeError, match="cannot run on the GPU: "):
        fastrnn.stack_forward("lstm", FakeGpuArray(kind), None, None, weights, num_layers=1,
                              bidirectional=False)


def test_stack_backward_of_a_gpu_result_needs_its_context():
    from fastrnn._cuda_stack import stack_backward as gpu_backward

    with pytest.raises(TypeError, match="StackResult of stack_forward"):
        gpu_backward(fastrnn.StackResult(y=None, h_n=None, _ctx=object()), None)


class HostDeviceArray(np.ndarray):
    """A NumPy array that stands for device memory in the test below."""


class HostDeviceLibrary:
    """fastrnn.cuda's array-library adapter over HostDeviceArray; remembers every pointer it gave."""

    def __init__(self):
        self.arrays = {}

    def owns(self, value):
        return isinstance(value, HostDeviceArray)

    def dtype(self, a):
        return a.dtype.name

    def device(self, a):
        return 0

    def contiguous(self, a):
        return a if a.flags.c_contiguous else np.ascontiguousarray(a).view(HostDeviceArray)

    def pointer(self, a):
        ptr = a.__array_interface__["data"][0]
        self.arrays[ptr] = a
        return ptr

    def empty(self, shape, dtype, device):
        return np.full(shape, np.nan, dtype).view(HostDeviceArray)

    def stream(self, device):
        return 0

    def scatter_rows(self, src, rows, n):
        out = np.zeros((n,) + src.shape[1:], src.dtype)
        out[rows] = src
        return out.view(HostDeviceArray)

    def gather_rows(self, a, rows):
        return np.ascontiguousarray(a[rows]).view(HostDeviceArray)


def use_host_device(monkeypatch, module=lambda lib: None):
    """fastrnn.cuda made to take HostDeviceArrays for GPU arrays, through a HostDeviceLibrary
    (returned), with module(lib) standing for the compiled fastrnn._cuda."""
    lib = HostDeviceLibrary()
    monkeypatch.setattr(cuda, "is_gpu_array", lambda v: isinstance(v, HostDeviceArray))
    monkeypatch.setattr(cuda, "_library_of", lambda v: lib)
    monkeypatch.setattr(cuda, "_require", lambda: module(lib))
    return lib


class HostStackModule:
    """fastrnn._cuda's stack_forward/stack_backward, same arguments, run by the CPU stack
    (fastrnn._C) on the arrays behind the pointers."""

    def __init__(self, lib):
        self.lib = lib

    def array(self, ptr):
        return None if not ptr else self.lib.arrays[ptr].view(np.ndarray)

    def stack_forward(self, dtype, cell, steps, batch, inp, hidden, proj, layers, directions,
                      lengths, dropout, seed, training, ptrs, weights, device, stream):
        a = {k: self.array(v) for k, v in ptrs.items()}
        assert a["x"].shape == (steps, batch, inp) and a["x"].dtype.name == dtype
        y, h_n, c_n, state = fastrnn._C.stack_forward(
            cell, a["x"], a.get("h0"), a.get("c0"), [self.array(w) for w in weights], hidden,
            layers, directions, proj, lengths, dropout, seed, training)
        for name, value in (("y", y), ("h_n", h_n), ("c_n", c_n)):
            if value is not None:
                a[name][...] = value
        return state

    def stack_backward(self, dtype, state, ptrs, grads, device, stream):
        a = {k: self.array(v) for k, v in ptrs.items()}
        dx, dh0, dc0, flat = fastrnn._C.stack_backward(state, a.get("dy"), a.get("dh_n"),
                                                       a.get("dc_n"))
        for name, value in (("dx", dx), ("dh0", dh0), ("dc0", dc0)):
            if value is not None:
                a[name][...] = value
        for ptr, value in zip(grads, flat):
            assert (ptr == 0) == (value is None)
            if ptr:
                self.array(ptr)[...] = value


@pytest.mark.parametrize("cell, bidirectional, proj, bias, lengths", [
    ("lstm", True, 3, True, [4, 6, 1]), ("gru", False, 0, False, None),
    ("rnn_relu", True, 0, True, [2, 6, 6])])
def test_stack_python_layer_passes_the_arrays_the_binding_expects(monkeypatch, cell,
                                                                  bidirectional, proj, bias,
                                                                  lengths):
    # The GPU path's Python side (fastrnn._cuda_stack) against the CPU path, with the compiled
    # module's stack calls replaced by the CPU stack working on the arrays behind the pointers:
    # every pointer, size, option and output reaches its place.
    use_host_device(monkeypatch, HostStackModule)
    rng = np.random.default_rng(11)
    layers, d, hidden = 2, 2 if bidirectional else 1, 5
    w = stack_weights(cell, 3, hidden, layers, bidirectional, proj, rng, bias=bias)
    x = rng.standard_normal((6, 3, 3))
    h0 = rng.standard_normal((layers * d, 3, proj or hidden))
    c0 = rng.standard_normal((layers * d, 3, hidden)) if cell == "lstm" else None
    kw = dict(num_layers=layers, bidirectional=bidirectional, proj_size=proj, lengths=lengths,
              dropout=0.5, seed=3)
    dev = lambda a: None if a is None else a.view(HostDeviceArray)  # noqa: E731
    want = fastrnn.stack_forward(cell, x, h0, c0, w, **kw)
    got = fastrnn.stack_forward(cell, dev(x), dev(h0), dev(c0), {k: dev(v) for k, v in w.items()},
                                **kw)
    assert isinstance(got.y, HostDeviceArray)
    for name in ("y", "h_n", "c_n"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    dy, dh_n = rng.standard_normal(want.y.shape), rng.standard_normal(want.h_n.shape)
    g_want = fastrnn.stack_backward(want, dy, dh_n)
    g = fastrnn.stack_backward(got, dev(dy), dev(dh_n))
    for name in ("dx", "dh0", "dc0"):
        np.testing.assert_array_equal(getattr(g, name), getattr(g_want, name), err_msg=name)
    assert list(g.grads) == list(g_want.grads)
    for name, grad in g.grads.items():
        assert isinstance(grad, HostDeviceArray)
        np.testing.assert_array_equal(grad, g_want.grads[name], err_msg=name)


# ---- whole networks: fastrnn.stack_forward/stack_backward with GPU arrays ----------------------

STACK_OPTIONS = {"uni": dict(layers=2, bidirectional=False, lengths=None),
                 "bi_lengths": dict(layers=2, bidirectional=True, lengths=[5, 2, 6, 6, 1]),
                 "three_layers_lengths": dict(layers=3, bidirectional=False, lengths=[4, 6, 3, 1, 6])}


def close_scaled(got, want, dtype, what):
    """close() with the 16-bit types' atol taken relative to the largest value: over several
    layers their rounding errors grow with the values they round."""
    want = np.asarray(want, dtype=np.float64)
    tol = dict(TOL[dtype])
    if dtype in ("float16", "bfloat16"):
        tol["atol"] *= max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(host(got), want, err_msg=what, **tol)


def stack_weights(cell, inp, hidden, layers, bidirectional, proj, rng, bias=True):
    shapes = fastrnn.layers.weight_shapes(cell, inp, hidden, num_layers=layers,
                                          bidirectional=bidirectional, bias=bias, proj_size=proj)
    return {k: 0.5 * rng.standard_normal(v) for k, v in shapes.items()}


@needs_gpu
@pytest.mark.parametrize("proj", [0, 3], ids=["no_proj", "proj"])
@pytest.mark.parametrize("options", sorted(STACK_OPTIONS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_stack_matches_cpu_path(torch_gpu, cell, dtype, options, proj):
    if proj and cell != "lstm":
        pytest.skip("proj_size is the LSTM's")
    o = STACK_OPTIONS[options]
    rng = np.random.default_rng(6)
    steps, batch, inp, hidden = 6, 5, 4, 7
    d = 2 if o["bidirectional"] else 1
    s = proj or hidden
    w = {k: rounded(v, dtype) for k, v in
         stack_weights(cell, inp, hidden, o["layers"], o["bidirectional"], proj, rng).items()}
    x = rounded(rng.standard_normal((steps, batch, inp)), dtype)
    h0 = rounded(rng.standard_normal((o["layers"] * d, batch, s)), dtype)
    c0 = rounded(rng.standard_normal((o["layers"] * d, batch, hidden)), dtype) if cell == "lstm" else None
    kw = dict(num_layers=o["layers"], bidirectional=o["bidirectional"], proj_size=proj,
              lengths=o["lengths"], dropout=0.3, seed=5)
    want = fastrnn.stack_forward(cell, x, h0, c0, w, **kw)  # float64 on the CPU, same masks
    wg = {k: gpu(v, dtype) for k, v in w.items()}
    xg, h0g = gpu(x, dtype), gpu(h0, dtype)
    c0g = None if c0 is None else gpu(c0, dtype)
    before = [t.clone() for t in [xg, h0g] + list(wg.values())]
    got = fastrnn.stack_forward(cell, xg, h0g, c0g, wg, **kw)
    assert isinstance(got.y, torch.Tensor) and got.y.dtype == getattr(torch, dtype)
    close_scaled(got.y, want.y, dtype, "y")
    close_scaled(got.h_n, want.h_n, dtype, "h_n")
    if cell == "lstm":
        close_scaled(got.c_n, want.c_n, dtype, "c_n")

    dy = rounded(rng.standard_normal(want.y.shape), dtype)
    dh_n = rounded(rng.standard_normal(want.h_n.shape), dtype)
    g_want = fastrnn.stack_backward(want, dy, dh_n)
    g = fastrnn.stack_backward(got, gpu(dy, dtype), gpu(dh_n, dtype))
    close_scaled(g.dx, g_want.dx, dtype, "dx")
    close_scaled(g.dh0, g_want.dh0, dtype, "dh0")
    if cell == "lstm":
        close_scaled(g.dc0, g_want.dc0, dtype, "dc0")
    assert sorted(g.grads) == sorted(g_want.grads)
    for name, grad in g.grads.items():
        assert grad.dtype == (torch.float64 if dtype == "float64" else torch.float32)
        close_scaled(grad, g_want.grads[name], dtype, name)
    for b, a in zip(before, [xg, h0g] + list(wg.values())):
        assert torch.equal(a, b), "an input was modified"

    infer = fastrnn.stack_forward(cell, xg, h0g, c0g, wg, **{**kw, "dropout": 0.0}, training=False)
    train = fastrnn.stack_forward(cell, xg, h0g, c0g, wg, **{**kw, "dropout": 0.0})
    assert torch.equal(infer.y, train.y) and infer._ctx is None


@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("cell", CELLS)
def test_stack_matches_torch_cudnn_with_lengths(torch_gpu, cell, dtype):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(1)
    steps, batch, inp, hidden, layers = 7, 4, 5, 8, 2
    proj = 5 if cell == "lstm" else 0
    cls, kw = TORCH_MODULES[cell]
    module = cls(inp, hidden, num_layers=layers, bidirectional=True,
                 **(dict(proj_size=proj) if proj else {}), **kw).to("cuda", getattr(torch, dtype))
    s = proj or hidden
    t = getattr(torch, dtype)
    x = torch.randn(steps, batch, inp, device="cuda", dtype=t)
    h0 = torch.randn(2 * layers, batch, s, device="cuda", dtype=t)
    c0 = torch.randn(2 * layers, batch, hidden, device="cuda", dtype=t)
    lengths = [5, 7, 2, 7]
    dy = torch.randn(steps, batch, 2 * s, device="cuda", dtype=t)
    for i, n in enumerate(lengths):
        dy[n:, i] = 0  # torch's padded output has no gradient past each length
    xr = x.clone().requires_grad_()
    h0r, c0r = h0.clone().requires_grad_(), c0.clone().requires_grad_()
    packed = pack_padded_sequence(xr, torch.tensor(lengths), enforce_sorted=False)
    out, state = module(packed, (h0r, c0r) if cell == "lstm" else h0r)
    y_t, _ = pad_packed_sequence(out, total_length=steps)
    y_t.backward(dy)

    weights = {k: v.detach() for k, v in module.named_parameters()}
    res = fastrnn.stack_forward(cell, x, h0, c0 if cell == "lstm" else None, weights,
                                num_layers=layers, bidirectional=True, proj_size=proj,
                                lengths=lengths)
    g = fastrnn.stack_backward(res, dy)
    close_scaled(res.y, host(y_t), dtype, "y")
    close_scaled(res.h_n, host(state[0] if cell == "lstm" else state), dtype, "h_n")
    if cell == "lstm":
        close_scaled(res.c_n, host(state[1]), dtype, "c_n")
    close_scaled(g.dx, host(xr.grad), dtype, "dx")
    close_scaled(g.dh0, host(h0r.grad), dtype, "dh0")
    if cell == "lstm":
        close_scaled(g.dc0, host(c0r.grad), dtype, "dc0")
    for name, p in module.named_parameters():
        close_scaled(g.grads[name], host(p.grad), dtype, name)


@needs_gpu
def test_stack_runs_on_the_callers_stream(torch_gpu):
    rng = np.random.default_rng(8)
    w = {k: gpu(v, "float32") for k, v in stack_weights("gru", 3, 4, 2, True, 0, rng).items()}
    x = gpu(rng.standard_normal((6, 2, 3)), "float32")
    x_new = torch.randn_like(x)
    want = fastrnn.stack_forward("gru", x_new, None, None, w, num_layers=2, bidirectional=True)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)
        x.copy_(x_new)
        got = fastrnn.stack_forward("gru", x, None, None, w, num_layers=2, bidirectional=True)
        g = fastrnn.stack_backward(got, torch.ones_like(got.y))
    side.synchronize()
    assert torch.equal(got.y, want.y)
    assert torch.equal(g.dx, fastrnn.stack_backward(want, torch.ones_like(want.y)).dx)


@needs_gpu
def test_stack_bad_gpu_arguments_name_the_argument(torch_gpu):
    rng = np.random.default_rng(9)
    w = {k: gpu(v, "float32") for k, v in stack_weights("lstm", 3, 4, 1, False, 0, rng).items()}
    x = torch.zeros(5, 2, 3, device="cuda")
    kw = dict(num_layers=1, bidirectional=False)
    with pytest.raises(TypeError, match="h0 must be a GPU array"):
        fastrnn.stack_forward("lstm", x, np.zeros((1, 2, 4), np.float32), None, w, **kw)
    with pytest.raises(ValueError, match=r"h0 must have shape \(L\*D, B, S\) = \(1, 2, 4\)"):
        fastrnn.stack_forward("lstm", x, torch.zeros(2, 2, 4, device="cuda"), None, w, **kw)
    with pytest.raises(TypeError, match=r"weights\['weight_hh_l0'\] must have dtype float32"):
        fastrnn.stack_forward("lstm", x, None, None, {**w, "weight_hh_l0": w["weight_hh_l0"].double()}, **kw)
    with pytest.raises(TypeError, match="lengths must be on the host"):
        fastrnn.stack_forward("lstm", x, None, None, w, lengths=torch.ones(2, device="cuda"), **kw)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T\]"):
        fastrnn.stack_forward("lstm", x, None, None, w, lengths=[6, 1], **kw)
    res = fastrnn.stack_forward("lstm", x, None, None, w, **kw)
    with pytest.raises(ValueError, match=r"dy must have shape \(5, 2, 4\)"):
        fastrnn.stack_backward(res, torch.zeros(5, 2, 3, device="cuda"))
    with pytest.raises(TypeError, match="dh_n must have dtype float32"):
        fastrnn.stack_backward(res, None, torch.zeros(1, 2, 4, device="cuda", dtype=torch.float64))


@needs_gpu
def test_stack_cupy_arrays_come_back_as_cupy_arrays():
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(10)
    w = stack_weights("lstm", 3, 4, 2, True, 2, rng)
    x = rng.standard_normal((5, 3, 3))
    kw = dict(num_layers=2, bidirectional=True, proj_size=2, lengths=[5, 3, 4])
    res = fastrnn.stack_forward("lstm", cupy.asarray(x), None, None,
                                {k: cupy.asarray(v) for k, v in w.items()}, **kw)
    assert isinstance(res.y, cupy.ndarray)
    want = fastrnn.stack_forward("lstm", x, None, None, w, **kw)
    np.testing.assert_allclose(cupy.asnumpy(res.y), want.y, rtol=1e-10, atol=1e-12)
    g = fastrnn.stack_backward(res, cupy.ones_like(res.y))
    assert all(isinstance(v, cupy.ndarray) for v in g.grads.values())
