"""The CUDA Tree-LSTM: fastrnn.tree_lstm_forward/backward with GPU arrays, against the NumPy
reference and the CPU path, on the caller's stream and array kind. The GPU tests run where
fastrnn.cuda is available and are skipped, with the reason, elsewhere. The first tests need no GPU:
the clear error where GPU arrays cannot run, the binding's signature, and the Python side run
against the CUDA driver's host build (tests/cuda_host/tree_shim.cpp) through the same pointers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastrnn
from fastrnn import cuda, reference
from _tree_util import random_forest, weights
from test_cuda_gpu import (REASON, TOL, FakeGpuArray, HostDeviceArray, gpu, host, needs_gpu,
                           rounded, torch_gpu, use_host_device)  # noqa: F401 (fixture)
from test_cuda_host import build_shim

KINDS = [None, 2]
DTYPES = ["float64", "float32", "float16", "bfloat16"]


@pytest.mark.skipif(REASON is None, reason="a GPU is available here")
@pytest.mark.parametrize("kind", ["cai", "dlpack"])
def test_tree_with_gpu_arrays_without_a_usable_gpu_raises_a_clear_error(kind):
    w_ih, w_hh = np.zeros((8, 3), np.float32), np.zeros((8, 2), np.float32)
    with pytest.raises(RuntimeError, match="cannot run on the GPU: "):
        fastrnn.tree_lstm_forward(FakeGpuArray(kind), [-1, 0], w_ih, w_hh)


def test_tree_backward_of_a_gpu_result_needs_its_context():
    from fastrnn._cuda_tree import tree_backward as gpu_backward

    with pytest.raises(TypeError, match="TreeResult of tree_lstm_forward"):
        gpu_backward(fastrnn.TreeResult(h=None, c=None, _ctx=object()), None)
    with pytest.raises(TypeError, match="TreeResult of tree_lstm_forward"):
        fastrnn.tree_lstm_backward(fastrnn.TreeResult(h=None, c=None, _ctx=object()), None)


def test_tree_entry_points_raise_python_errors():
    module = cuda._load()
    if module is None:
        pytest.skip(f"fastrnn._cuda does not load: {cuda.unavailable_reason()}")
    f = fastrnn.Forest([-1, 0, 0])
    sched = f._schedule()
    with pytest.raises(ValueError, match="unsupported dtype 'int8'"):
        module.tree_forward("int8", 0, 1, 1, *sched, True, {}, 0, 0)
    with pytest.raises(ValueError, match="schedule's arrays do not fit together"):
        module.tree_forward("float32", 0, 1, 1, sched[0], sched[1], sched[2][:2], sched[3], True,
                            {}, 0, 0)
    with pytest.raises(module.CudaError, match=r"cuda(GetDevice|SetDevice) failed: cudaError"):
        module.tree_forward("float32", 0, 1, 1, *sched, True, {}, 1 << 20, 0)


class HostTreeModule:
    """fastrnn._cuda's tree_forward/tree_backward, same arguments, run by the CUDA driver's host
    build on the arrays behind the pointers."""

    def __init__(self, lib, shim):
        self.lib, self.shim = lib, shim

    def array(self, ptrs, name):
        return self.lib.arrays[ptrs[name]].view(np.ndarray) if name in ptrs else None

    def tree_forward(self, dtype, arity, inp, hidden, order, level_offsets, child_offsets,
                     child_rows, training, ptrs, device, stream):
        a = {k: self.array(ptrs, k) for k in ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h", "c")}
        assert a["x"].shape == (order.shape[0], inp) and a["x"].dtype.name == dtype
        assert a["h"].shape == a["c"].shape == (order.shape[0], hidden)
        h, c, state = self.shim.tree_forward(order, level_offsets, child_offsets, child_rows,
                                             arity, a["x"], a["w_ih"], a["w_hh"], a["b_ih"],
                                             a["b_hh"], training)
        a["h"][...], a["c"][...] = h, c
        return state

    def tree_backward(self, dtype, state, ptrs, device, stream):
        got = self.shim.tree_backward(state, self.array(ptrs, "dh"), self.array(ptrs, "dc"))
        for name, value in zip(("dx", "dw_ih", "dw_hh", "db_ih", "db_hh"), got):
            assert (name in ptrs) == (value is not None), name
            if value is not None:
                self.array(ptrs, name)[...] = value


@pytest.fixture(scope="module")
def tree_shim(tmp_path_factory):
    return build_shim(tmp_path_factory, "tree_shim.cpp", "_cuda_tree_host")


@pytest.mark.parametrize("arity, bias", [(None, True), (3, False), (1, True)])
def test_tree_python_layer_passes_the_arrays_the_binding_expects(monkeypatch, tree_shim, arity,
                                                                 bias):
    # The GPU path's Python side (fastrnn._cuda_tree) against the CPU path, with the compiled
    # module's tree calls replaced by the CUDA driver's host build on the arrays behind the
    # pointers: every pointer, size, schedule array and output reaches its place.
    use_host_device(monkeypatch, lambda lib: HostTreeModule(lib, tree_shim))
    rng = np.random.default_rng(8)
    n, inp, hidden = 25, 3, 4
    forest = fastrnn.Forest(random_forest(rng, n, arity=arity, root_prob=0.2))
    x = rng.standard_normal((n, inp))
    w = weights(rng, inp, hidden, arity, bias)
    dh, dc = rng.standard_normal((n, hidden)), rng.standard_normal((n, hidden))
    dev = lambda a: None if a is None else a.view(HostDeviceArray)  # noqa: E731
    want = fastrnn.tree_lstm_forward(x, forest, *w, arity=arity)
    got = fastrnn.tree_lstm_forward(dev(x), forest, *map(dev, w), arity=arity)
    assert isinstance(got.h, HostDeviceArray) and isinstance(got.c, HostDeviceArray)
    np.testing.assert_allclose(got.h, want.h, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.c, want.c, rtol=1e-10, atol=1e-12)
    g_want = fastrnn.tree_lstm_backward(want, dh, dc)
    g = fastrnn.tree_lstm_backward(got, dev(dh), dev(dc))
    for name in ("dx", "dw_ih", "dw_hh", "db_ih", "db_hh"):
        a, b = getattr(g, name), getattr(g_want, name)
        if b is None:
            assert a is None, name
        else:
            assert isinstance(a, HostDeviceArray), name
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=name)
    infer = fastrnn.tree_lstm_forward(dev(x), forest, *map(dev, w), arity=arity, training=False)
    assert infer._ctx is None
    np.testing.assert_array_equal(infer.h, got.h)


@pytest.mark.parametrize("arity", [None, 2])
def test_tree_python_layer_with_input_nodes_matches_the_cpu_path(monkeypatch, tree_shim, arity):
    # input_nodes on the GPU path: x (k, I) spread into a zero (n_nodes, I) array on the device
    # for the kernels, dx gathered back to (k, I); against the CPU path's input_nodes, through
    # the CUDA driver's host build. The caller's x is left as it was.
    use_host_device(monkeypatch, lambda lib: HostTreeModule(lib, tree_shim))
    rng = np.random.default_rng(9)
    n, inp, hidden = 30, 3, 4
    forest = fastrnn.Forest(random_forest(rng, n, arity=arity, root_prob=0.2))
    nodes = rng.permutation(n)[:12]
    x = rng.standard_normal((nodes.size, inp))
    w = weights(rng, inp, hidden, arity, True)
    dh = rng.standard_normal((n, hidden))
    dev = lambda a: a.view(HostDeviceArray)  # noqa: E731
    x_dev, x_before = dev(x.copy()), x.copy()
    want = fastrnn.tree_lstm_forward(x, forest, *w, arity=arity, input_nodes=nodes)
    got = fastrnn.tree_lstm_forward(x_dev, forest, *map(dev, w), arity=arity, input_nodes=nodes)
    np.testing.assert_allclose(got.h, want.h, rtol=1e-10, atol=1e-12)
    g_want = fastrnn.tree_lstm_backward(want, dh)
    g = fastrnn.tree_lstm_backward(got, dev(dh))
    assert isinstance(g.dx, HostDeviceArray) and g.dx.shape == (nodes.size, inp)
    for name in ("dx", "dw_ih", "dw_hh", "db_ih", "db_hh"):
        np.testing.assert_allclose(getattr(g, name), getattr(g_want, name), rtol=1e-10,
                                   atol=1e-12, err_msg=name)
    np.testing.assert_array_equal(x_dev, x_before)
    with pytest.raises(ValueError, match=r"x must have shape \(len\(input_nodes\), I\) = \(12, I\)"):
        fastrnn.tree_lstm_forward(dev(np.zeros((n, inp))), forest, *map(dev, w), arity=arity,
                                  input_nodes=nodes)
    with pytest.raises(ValueError, match="input_nodes lists node"):
        fastrnn.tree_lstm_forward(dev(x[:2].copy()), forest, *map(dev, w), arity=arity,
                                  input_nodes=[nodes[0], nodes[0]])


def test_torch_adapter_spreads_and_gathers_rows():
    # fastrnn.cuda's torch adapter: the same calls on CPU tensors as on CUDA ones.
    lib = cuda._Torch()
    src = torch.arange(6, dtype=torch.float32).reshape(3, 2)
    rows = np.array([4, 0, 2])
    full = lib.scatter_rows(src, rows, 5)
    want = np.zeros((5, 2), np.float32)
    want[rows] = src.numpy()
    np.testing.assert_array_equal(full.numpy(), want)
    back = lib.gather_rows(full, rows)
    assert back.is_contiguous()
    np.testing.assert_array_equal(back.numpy(), src.numpy())


def test_tree_python_layer_checks_gpu_arguments(monkeypatch):
    use_host_device(monkeypatch)
    dev = lambda a: a.view(HostDeviceArray)  # noqa: E731
    x = dev(np.zeros((3, 2)))
    w_ih, w_hh = dev(np.zeros((8, 2))), dev(np.zeros((8, 2)))
    with pytest.raises(TypeError, match="w_ih must be a GPU array"):
        fastrnn.tree_lstm_forward(x, [-1, 0, 0], np.zeros((8, 2)), w_hh)
    with pytest.raises(TypeError, match="w_hh must have dtype float64"):
        fastrnn.tree_lstm_forward(x, [-1, 0, 0], w_ih, dev(np.zeros((8, 2), np.float32)))
    with pytest.raises(ValueError, match=r"x must have shape \(n_nodes, I\) = \(2, I\)"):
        fastrnn.tree_lstm_forward(x, [-1, 0], w_ih, w_hh)
    with pytest.raises(ValueError, match=r"w_hh must have shape \(\(3\+N\)\*H, N\*H\)"):
        fastrnn.tree_lstm_forward(x, [-1, 0, 0], w_ih, w_hh, arity=2)
    with pytest.raises(ValueError, match="node 0 has 2 children, more than arity N = 1"):
        fastrnn.tree_lstm_forward(x, [-1, 0, 0], w_ih, dev(np.zeros((8, 2))), arity=1)
    with pytest.raises(ValueError, match="b_ih and b_hh must both be arrays or both be None"):
        fastrnn.tree_lstm_forward(x, [-1, 0, 0], w_ih, w_hh, dev(np.zeros(8)))
    with pytest.raises(TypeError, match="forest must be a Forest or a host array"):
        fastrnn.tree_lstm_forward(x, dev(np.array([-1, 0, 0])), w_ih, w_hh)
    with pytest.raises(TypeError, match="training must be a bool"):
        fastrnn.tree_lstm_forward(x, [-1, 0, 0], w_ih, w_hh, training="yes")


# ---- on a GPU ---------------------------------------------------------------------------------

def close_scaled(got, want, dtype, what):
    """The 16-bit types' atol relative to the largest value, as in test_cuda_gpu."""
    want = np.asarray(want, dtype=np.float64)
    tol = dict(TOL[dtype])
    if dtype in ("float16", "bfloat16"):
        tol["atol"] *= max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(host(got), want, err_msg=what, **tol)


@needs_gpu
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("arity", KINDS, ids=lambda a: "child_sum" if a is None else f"N{a}")
@pytest.mark.parametrize("dtype", DTYPES)
def test_tree_kernels_match_reference(torch_gpu, dtype, arity, bias):
    rng = np.random.default_rng(2)
    n, inp, hidden = 300, 5, 16
    parents = random_forest(rng, n, arity=arity, root_prob=0.1)
    p = [rounded(a, dtype) for a in (rng.standard_normal((n, inp)),
                                     *weights(rng, inp, hidden, arity, bias, scale=0.3))]
    dh, dc = (rounded(rng.standard_normal((n, hidden)), dtype) for _ in range(2))
    want = reference.tree_lstm_forward(p[0], parents, *p[1:], arity=arity)
    g_want = reference.tree_lstm_backward(want, dh, dc)
    args = [None if a is None else gpu(a, dtype) for a in p]
    before = [None if a is None else a.clone() for a in args]
    res = fastrnn.tree_lstm_forward(args[0], parents, *args[1:], arity=arity)
    assert isinstance(res.h, torch.Tensor) and res.h.dtype == getattr(torch, dtype)
    close_scaled(res.h, want.h, dtype, "h")
    close_scaled(res.c, want.c, dtype, "c")
    infer = fastrnn.tree_lstm_forward(args[0], parents, *args[1:], arity=arity, training=False)
    assert torch.equal(infer.h, res.h) and infer._ctx is None
    g = fastrnn.tree_lstm_backward(res, gpu(dh, dtype), gpu(dc, dtype))
    close_scaled(g.dx, g_want.dx, dtype, "dx")
    weight_dtype = torch.float64 if dtype == "float64" else torch.float32
    for name in ("dw_ih", "dw_hh") + (("db_ih", "db_hh") if bias else ()):
        assert getattr(g, name).dtype == weight_dtype
        close_scaled(getattr(g, name), getattr(g_want, name), dtype, name)
    if not bias:
        assert g.db_ih is None and g.db_hh is None
    for a, b in zip(args, before):
        assert a is None or torch.equal(a, b), "an input was modified"


@needs_gpu
@pytest.mark.parametrize("arity", [None, 1, 40])
def test_tree_kernels_deep_and_wide_match_the_cpu_path(torch_gpu, arity):
    # A 200-node chain beside a node with 40 children; float64 to the CPU path's digits.
    rng = np.random.default_rng(3)
    chain = np.append(np.arange(1, 200), -1)
    star = np.append(np.full(40, 40), -1) + 200
    star[-1] = -1
    parents = np.concatenate([chain, star]) if arity != 1 else chain
    n, inp, hidden = parents.shape[0], 4, 8
    x = rng.standard_normal((n, inp))
    w = weights(rng, inp, hidden, arity, True, scale=0.3)
    dh = rng.standard_normal((n, hidden))
    cpu = fastrnn.tree_lstm_forward(x, parents, *w, arity=arity)
    dev = fastrnn.tree_lstm_forward(gpu(x, "float64"), parents, *[gpu(a, "float64") for a in w],
                                    arity=arity)
    np.testing.assert_allclose(host(dev.h), cpu.h, rtol=1e-10, atol=1e-12)
    g_cpu = fastrnn.tree_lstm_backward(cpu, dh)
    g_dev = fastrnn.tree_lstm_backward(dev, gpu(dh, "float64"))
    for name in ("dx", "dw_ih", "dw_hh", "db_ih", "db_hh"):
        np.testing.assert_allclose(host(getattr(g_dev, name)), getattr(g_cpu, name), rtol=1e-10,
                                   atol=1e-12, err_msg=name)


@needs_gpu
def test_tree_kernels_run_on_the_callers_stream(torch_gpu):
    # As test_cuda_gpu's: the kernels queued on a sleeping side stream must see the x it writes.
    rng = np.random.default_rng(4)
    parents = random_forest(rng, 50)
    x = gpu(rng.standard_normal((50, 3)), "float32")
    w = [gpu(a, "float32") for a in weights(rng, 3, 6, None, True)]
    x_new = torch.randn_like(x)
    want = fastrnn.tree_lstm_forward(x_new, parents, *w)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)
        x.copy_(x_new)
        got = fastrnn.tree_lstm_forward(x, parents, *w)
    side.synchronize()
    assert torch.equal(got.h, want.h)


@needs_gpu
def test_tree_bad_gpu_arguments_name_the_argument(torch_gpu):
    x = torch.zeros(3, 4, device="cuda")
    w_ih, w_hh = torch.zeros(8, 4, device="cuda"), torch.zeros(8, 2, device="cuda")
    with pytest.raises(TypeError, match="w_hh must be a GPU array"):
        fastrnn.tree_lstm_forward(x, [-1, 0, 0], w_ih, np.zeros((8, 2), np.float32))
    with pytest.raises(TypeError, match="w_hh must have dtype float32"):
        fastrnn.tree_lstm_forward(x, [-1, 0, 0], w_ih, w_hh.double())
    with pytest.raises(ValueError, match=r"w_ih must have shape \(4\*H, I\) = \(8, 4\)"):
        fastrnn.tree_lstm_forward(x, [-1, 0, 0], w_ih[:, :3], w_hh)
    res = fastrnn.tree_lstm_forward(x, [-1, 0, 0], w_ih, w_hh)
    with pytest.raises(ValueError, match=r"dh must have shape \(n_nodes, H\) = \(3, 2\)"):
        fastrnn.tree_lstm_backward(res, torch.zeros(3, 3, device="cuda"))


def test_tree_cupy_arrays_come_back_as_cupy_arrays():
    if REASON is not None:
        pytest.skip(f"no GPU for fastrnn: {REASON}")
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(5)
    w = [cupy.asarray(a, dtype=cupy.float32) for a in weights(rng, 3, 4, None, True)]
    res = fastrnn.tree_lstm_forward(cupy.ones((4, 3), cupy.float32), [-1, 0, 0, 1], *w)
    assert isinstance(res.h, cupy.ndarray)
    g = fastrnn.tree_lstm_backward(res, cupy.ones_like(res.h))
    assert isinstance(g.dw_ih, cupy.ndarray)


@needs_gpu
@pytest.mark.parametrize("arity", KINDS, ids=lambda a: "child_sum" if a is None else f"N{a}")
def test_tree_input_nodes_on_the_gpu_match_the_cpu_path(torch_gpu, arity):
    # x (k, I) for the listed nodes: spread on the device, dx (k, I) gathered back; float64.
    rng = np.random.default_rng(5)
    n, inp, hidden = 120, 4, 8
    parents = random_forest(rng, n, arity=arity, root_prob=0.1)
    nodes = rng.permutation(n)[:50]
    x = rng.standard_normal((nodes.size, inp))
    w = weights(rng, inp, hidden, arity, True, scale=0.3)
    dh = rng.standard_normal((n, hidden))
    cpu = fastrnn.tree_lstm_forward(x, parents, *w, arity=arity, input_nodes=nodes)
    x_dev = gpu(x, "float64")
    x_before = x_dev.clone()
    dev = fastrnn.tree_lstm_forward(x_dev, parents, *[gpu(a, "float64") for a in w],
                                    arity=arity, input_nodes=nodes)
    np.testing.assert_allclose(host(dev.h), cpu.h, rtol=1e-10, atol=1e-12)
    g_cpu = fastrnn.tree_lstm_backward(cpu, dh)
    g_dev = fastrnn.tree_lstm_backward(dev, gpu(dh, "float64"))
    assert tuple(g_dev.dx.shape) == (nodes.size, inp)
    for name in ("dx", "dw_ih", "dw_hh", "db_ih", "db_hh"):
        np.testing.assert_allclose(host(getattr(g_dev, name)), getattr(g_cpu, name), rtol=1e-10,
                                   atol=1e-12, err_msg=name)
    assert torch.equal(x_dev, x_before)


@needs_gpu
@pytest.mark.parametrize("arity", KINDS, ids=lambda a: "child_sum" if a is None else f"N{a}")
def test_torch_tree_module_on_cuda_matches_the_cpu_module(torch_gpu, arity):
    # fastrnn.torch.TreeLSTM with CUDA parameters and inputs: outputs and every gradient as on
    # the CPU, float64, with inputs on some nodes only.
    import fastrnn.torch as frt

    rng = np.random.default_rng(6)
    n = 80
    parents = random_forest(rng, n, arity=arity, root_prob=0.1)
    nodes = torch.from_numpy(rng.permutation(n)[:30])
    torch.manual_seed(0)
    cpu_m = frt.TreeLSTM(5, 7, arity=arity, dtype=torch.float64)
    gpu_m = frt.TreeLSTM(5, 7, arity=arity, dtype=torch.float64).cuda()
    gpu_m.load_state_dict(cpu_m.state_dict())
    x_cpu = torch.randn(30, 5, dtype=torch.float64, requires_grad=True)
    x_gpu = x_cpu.detach().cuda().requires_grad_()
    outs = []
    for m, x in ((cpu_m, x_cpu), (gpu_m, x_gpu)):
        h, c = m(x, parents, input_nodes=nodes)
        (h.square().sum() + c.sum()).backward()
        outs.append((h, c, x.grad, *(p.grad for p in m.parameters())))
    assert outs[1][0].is_cuda
    for i, (a, b) in enumerate(zip(*outs)):
        np.testing.assert_allclose(host(b), host(a), rtol=1e-10, atol=1e-12, err_msg=str(i))
