"""ONNX Runtime: one ONNX RNN / LSTM / GRU node built with onnx.helper, run by the CPU execution
provider with intra_op_num_threads set to the thread count. Inference only.

PyTorch's gate blocks are reordered into ONNX's: LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,h with
linear_before_reset=1 (torch's b_hn inside r * (W_hn h + b_hn)). W (1, G*H, I), R (1, G*H, H),
B (1, 2*G*H) = [b_ih, b_hh]; outputs Y (T, 1, B, H), Y_h and Y_c (1, B, H).
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from harness import Prepared

try:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # an optional peer: skipped with a note
    onnx = ort = None

NAME = "onnx"
TITLE = "ONNX Runtime"
COMPARE = True
OPSET = 14

_OP = {"rnn_tanh": "RNN", "rnn_relu": "RNN", "lstm": "LSTM", "gru": "GRU"}
_TORCH_TO_ONNX = {"rnn_tanh": [0], "rnn_relu": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}

_threads = 1


def available():
    if ort is None:
        return "onnx/onnxruntime not installed (pip install fastrnn[bench])"
    return None


def session_options(threads: int):
    """One intra-op pool of `threads`, no inter-op parallelism."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return so


def configure(threads: int) -> dict:
    global _threads
    _threads = threads
    return {"version": ort.__version__, "onnx": onnx.__version__, "threads": threads,
            "providers": ["CPUExecutionProvider"]}


def supports(case, mode):
    if mode != "forward":
        return "inference only"
    if case.kind != "sequence":
        return f"no ONNX Runtime backend for {case.kind} cases"
    return None


def reorder(w: np.ndarray, cell: str) -> np.ndarray:
    """Gate blocks along axis 0 from PyTorch's order to ONNX's."""
    blocks = np.split(w, len(_TORCH_TO_ONNX[cell]), axis=0)
    return np.ascontiguousarray(np.concatenate([blocks[i] for i in _TORCH_TO_ONNX[cell]], axis=0))


def build_model(case, a: Dict[str, np.ndarray]):
    """An ONNX model of one recurrent node; weights as initializers, X and the states as inputs."""
    cell, H = case.cell, case.H
    inits = [numpy_helper.from_array(reorder(a["w_ih"], cell)[None], "W"),
             numpy_helper.from_array(reorder(a["w_hh"], cell)[None], "R"),
             numpy_helper.from_array(np.concatenate([reorder(a["b_ih"], cell),
                                                     reorder(a["b_hh"], cell)])[None], "B")]
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("X", f32, [case.T, case.B, case.I]),
              helper.make_tensor_value_info("initial_h", f32, [1, case.B, H])]
    outputs = [helper.make_tensor_value_info("Y", f32, [case.T, 1, case.B, H]),
               helper.make_tensor_value_info("Y_h", f32, [1, case.B, H])]
    node_in = ["X", "W", "R", "B", "", "initial_h"]
    attrs = {"hidden_size": H}
    if cell == "lstm":
        inputs.append(helper.make_tensor_value_info("initial_c", f32, [1, case.B, H]))
        outputs.append(helper.make_tensor_value_info("Y_c", f32, [1, case.B, H]))
        node_in.append("initial_c")
    elif cell == "gru":
        attrs["linear_before_reset"] = 1
    else:
        attrs["activations"] = ["Tanh" if cell == "rnn_tanh" else "Relu"]
    node = helper.make_node(_OP[cell], node_in, [o.name for o in outputs], **attrs)
    graph = helper.make_graph([node], f"fastrnn_bench_{cell}", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 8)  # what older runtimes read too
    onnx.checker.check_model(model)
    return model


def prepare(case, mode: str, a: Dict[str, np.ndarray]) -> Prepared:
    model = build_model(case, a)
    sess = ort.InferenceSession(model.SerializeToString(), session_options(_threads),
                                providers=["CPUExecutionProvider"])
    feeds = {"X": a["x"], "initial_h": a["h0"][None]}
    if case.cell == "lstm":
        feeds["initial_c"] = a["c0"][None]

    def fetch(out) -> Dict[str, np.ndarray]:
        got = {"y": out[0][:, 0], "h_n": out[1][0]}
        if case.cell == "lstm":
            got["c_n"] = out[2][0]
        return got

    return Prepared(run=lambda: sess.run(None, feeds), fetch=fetch)
