"""PyTorch: torch.nn.RNN / LSTM / GRU on the CPU (torch==2.13.0), the same weights loaded through
load_state_dict. Inference under torch.inference_mode(); training mode is the module's forward,
loss = y.sum() + h_n.sum(), loss.backward() (gradients to x and every weight).

The memory training mode keeps is counted with torch.autograd.graph.saved_tensors_hooks: the
distinct storages autograd saves for backward, leaving out x, h0, c0 and the parameters.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from harness import Prepared

try:
    import torch
except ImportError:  # an optional peer: skipped with a note
    torch = None

NAME = "torch"
TITLE = "PyTorch"
COMPARE = True


def available():
    return None if torch is not None else "torch not installed (pip install fastrnn[bench])"


def configure(threads: int) -> dict:
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work has started
        pass
    settings = torch.__config__.show().replace("\n", ",").split(",")
    blas = [s.strip() for s in settings if s.strip().startswith(("BLAS_INFO=", "USE_MKLDNN="))]
    return {"version": torch.__version__, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "blas": ", ".join(blas)}


def supports(case, mode):
    return None if case.kind in ("sequence", "stacked") else f"no torch backend for {case.kind}"


def _module(case, a: Dict[str, np.ndarray]):
    if case.kind == "stacked":
        m = torch.nn.LSTM(case.I, case.H, num_layers=case.layers,
                          bidirectional=case.bidirectional)
        state = case.state_dict(a)
    else:
        if case.cell == "lstm":
            m = torch.nn.LSTM(case.I, case.H)
        elif case.cell == "gru":
            m = torch.nn.GRU(case.I, case.H)
        else:
            m = torch.nn.RNN(case.I, case.H, nonlinearity=case.cell[4:])
        state = {"weight_ih_l0": a["w_ih"], "weight_hh_l0": a["w_hh"],
                 "bias_ih_l0": a["b_ih"], "bias_hh_l0": a["b_hh"]}
    m.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
    return m


def _state(case, a: Dict[str, np.ndarray]):
    h0 = torch.from_numpy(a["h0"] if case.kind == "stacked" else a["h0"][None])
    if case.cell != "lstm":
        return h0
    return h0, torch.from_numpy(a["c0"] if case.kind == "stacked" else a["c0"][None])


def prepare(case, mode: str, a: Dict[str, np.ndarray]) -> Prepared:
    m = _module(case, a)
    hx = _state(case, a)
    x = torch.from_numpy(a["x"])
    training = mode == "train"
    if training:
        x = x.clone().requires_grad_()

    def forward():
        y, h = m(x, hx)
        return y, h

    def run():
        if not training:
            with torch.inference_mode():
                return forward()
        m.zero_grad(set_to_none=True)
        x.grad = None
        y, h = forward()
        h_n = h[0] if isinstance(h, tuple) else h
        (y.sum() + h_n.sum()).backward()
        return y, h

    def fetch(out) -> Dict[str, np.ndarray]:
        y, h = out
        h_n, c_n = h if isinstance(h, tuple) else (h, None)
        got = {"y": y.detach().numpy(), "h_n": h_n.detach().numpy(),
               "c_n": None if c_n is None else c_n.detach().numpy()}
        if case.kind == "sequence":
            got["h_n"] = got["h_n"][0]
            got["c_n"] = None if c_n is None else got["c_n"][0]
        if training:
            got["dx"] = x.grad.numpy()
            params = dict(m.named_parameters())
            if case.kind == "stacked":
                got.update({"d" + k: p.grad.numpy() for k, p in params.items()})
            else:
                for ours, theirs in (("dw_ih", "weight_ih_l0"), ("dw_hh", "weight_hh_l0"),
                                     ("db_ih", "bias_ih_l0"), ("db_hh", "bias_hh_l0")):
                    got[ours] = params[theirs].grad.numpy()
        return got

    def kept() -> int:
        owned = {t.untyped_storage().data_ptr() for t in list(m.parameters()) + [x]
                 + list(hx if isinstance(hx, tuple) else (hx,))}
        saved = {}

        def pack(t):
            s = t.untyped_storage()
            if s.data_ptr() not in owned:
                saved[s.data_ptr()] = s.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = forward()  # noqa: F841 (the graph lives while the hooks count)
        return int(sum(saved.values()))

    return Prepared(run, fetch, kept if training else None)
