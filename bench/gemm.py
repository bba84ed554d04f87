"""What the machine can do at all: the float32 GEMM rate of every BLAS present, measured in the
same process, at the same thread count, with the same timer as the recurrent rows.

C = A @ B with A, B, C float32 (n, n). Contestants: OpenBLAS through fastrnn's BLAS
(scipy-openblas32, called with ctypes; OPENBLAS_CORETYPE in the environment may change the kernel
it picks), NumPy's BLAS, torch.mm, ONNX Runtime's MatMul (MLAS) and jax.numpy.dot (XLA). The
best rate is the bound the rows are compared with.
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import Callable, Dict, List, Optional

import numpy as np

from harness import max_error, time_calls


def _openblas(a, b, c, threads):
    import fastrnn
    import scipy_openblas32

    lib = ctypes.CDLL(os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so"))
    lib.scipy_openblas_set_num_threads(ctypes.c_int(threads))
    sgemm = lib.scipy_cblas_sgemm
    n = a.shape[0]
    fp = ctypes.POINTER(ctypes.c_float)
    pa, pb, pc = (x.ctypes.data_as(fp) for x in (a, b, c))
    row_major, no_trans = 101, 111
    args = (row_major, no_trans, no_trans, n, n, n, ctypes.c_float(1.0), pa, n, pb, n,
            ctypes.c_float(0.0), pc, n)

    def run():
        sgemm(*args)
        return c

    info = f"{fastrnn._C.blas_info()}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')}"
    return run, info


def _numpy(a, b, c, threads):
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info = f"numpy {np.__version__}: {blas.get('name')} {blas.get('version', '')}"
    except Exception:  # older NumPy: no dict form of the configuration
        info = f"numpy {np.__version__}"
    return (lambda: np.matmul(a, b, out=c)), info


def _torch(a, b, c, threads):
    import torch

    torch.set_num_threads(threads)
    ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
    return (lambda: torch.mm(ta, tb, out=tc)), f"torch {torch.__version__} torch.mm"


def _onnxruntime(a, b, c, threads):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from peers.onnx_peer import OPSET, session_options

    n = a.shape[0]
    io = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in "ABC"]
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "gemm", io[:2],
                              io[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 8)
    sess = ort.InferenceSession(model.SerializeToString(), session_options(threads),
                                providers=["CPUExecutionProvider"])
    info = f"onnxruntime {ort.__version__} MatMul (MLAS)"
    return (lambda: sess.run(None, {"A": a, "B": b})[0]), info


def _jax(a, b, c, threads):
    import jax
    import jax.numpy as jnp

    ja, jb = jnp.asarray(a), jnp.asarray(b)
    dot = jax.jit(jnp.dot).lower(ja, jb).compile()
    info = f"jax {jax.__version__} jnp.dot (XLA)"
    return (lambda: np.asarray(jax.block_until_ready(dot(ja, jb)))), info


GEMMS: Dict[str, Callable] = {
    "openblas (fastrnn)": _openblas,
    "numpy": _numpy,
    "torch": _torch,
    "onnxruntime": _onnxruntime,
    "jax": _jax,
}


def measure(n: int, threads: int, repeats: int, warmup: int, pause: float = 0.0,
            warm_s: float = 0.0, min_s: float = 0.0) -> List[dict]:
    """Every available GEMM's rate at size n, or a note saying why it is missing (timed as
    harness.time_calls times, with the same warm-up and minimum time as the rows)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    want = a.astype(np.float64) @ b.astype(np.float64)
    flops = 2.0 * n ** 3
    results = []
    for name, make in GEMMS.items():
        c = np.zeros((n, n), np.float32)
        try:
            run, info = make(a, b, c, threads)
        except ImportError as e:
            results.append({"name": name, "note": f"not available ({e})"})
            continue
        err = max_error(run(), want)
        time.sleep(pause)  # the previous library's threads fall asleep first
        t = time_calls(run, repeats, warmup, warm_s, min_s)
        results.append({"name": name, "library": info, "n": n, "flops": flops,
                        "gflops": flops / t.median_s / 1e9, "error": err, "ok": err < 1e-4,
                        **t.as_dict()})
    return results


def best(results: List[dict]) -> Optional[dict]:
    """The fastest GEMM; one whose product is wrong is reported but never the bound."""
    usable = [r for r in results if r.get("ok")]
    return max(usable, key=lambda r: r["gflops"]) if usable else None
