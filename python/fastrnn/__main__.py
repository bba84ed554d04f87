"""`python -m fastrnn`: check every kernel against the NumPy reference, then time both.

Exit status 1 when any kernel disagrees with its reference.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

import numpy as np

from . import _C, functional, reference

CELLS = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
SHAPES = [(100, 1, 128, 128), (100, 16, 256, 256), (50, 64, 512, 512)]
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-5}


def make_problem(cell: str, t: int, b: int, i: int, h: int, dtype, seed: int = 0) -> dict:
    """Random inputs and weights for one cell (U(-1/sqrt(H), 1/sqrt(H)) weights, as torch's)."""
    rng = np.random.default_rng(seed)
    g, k = CELLS[cell], 1.0 / np.sqrt(h)
    p = dict(x=rng.standard_normal((t, b, i)), h0=rng.standard_normal((b, h)) * 0.5,
             w_ih=rng.uniform(-k, k, (g * h, i)), w_hh=rng.uniform(-k, k, (g * h, h)),
             b_ih=rng.uniform(-k, k, g * h), b_hh=rng.uniform(-k, k, g * h),
             dy=rng.standard_normal((t, b, h)), dh_n=rng.standard_normal((b, h)))
    if cell == "lstm":
        p.update(c0=rng.standard_normal((b, h)) * 0.5, dc_n=rng.standard_normal((b, h)))
    return {name: v.astype(dtype) for name, v in p.items()}


def run(module, cell: str, p: dict, training: bool = True, backward: bool = True):
    """Forward (and backward) of `cell` with fastrnn.functional or fastrnn.reference."""
    weights = (p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    if cell == "lstm":
        res = module.lstm_forward(p["x"], p["h0"], p["c0"], *weights, training=training)
        grads = module.lstm_backward(res, p["dy"], p["dh_n"], p["dc_n"]) if backward else None
    elif cell == "gru":
        res = module.gru_forward(p["x"], p["h0"], *weights, training=training)
        grads = module.gru_backward(res, p["dy"], p["dh_n"]) if backward else None
    else:
        res = module.rnn_forward(p["x"], p["h0"], *weights, nonlinearity=cell[4:],
                                 training=training)
        grads = module.rnn_backward(res, p["dy"], p["dh_n"]) if backward else None
    return res, grads


def compare(cell: str, dtype) -> float:
    """Largest error of fastrnn against the float64 reference, relative to the values' scale."""
    p = make_problem(cell, 7, 3, 5, 11, dtype, seed=1)
    ref_p = {k: v.astype(np.float64) for k, v in p.items()}
    res, grads = run(functional, cell, p)
    inference, _ = run(functional, cell, p, training=False, backward=False)
    ref, ref_grads = run(reference, cell, ref_p)
    pairs = [(res.y, ref.y), (res.h_n, ref.h_n), (inference.y, ref.y)]
    if cell == "lstm":
        pairs += [(res.c_n, ref.c_n), (grads.dc0, ref_grads.dc0)]
    pairs += [(getattr(grads, n), getattr(ref_grads, n))
              for n in ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh")]
    return max(float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-30)) for a, b in pairs)


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastrnn", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per row (median)")
    parser.add_argument("--no-timing", action="store_true", help="only check the kernels")
    args = parser.parse_args(argv)

    print(f"fastrnn kernels: {_C.isa()} (available: {_C.isa_supported()}), "
          f"{functional.get_num_threads()} threads; {_C.blas_info()}")
    failed = False
    for cell in CELLS:
        for dtype in (np.float32, np.float64):
            err = compare(cell, dtype)
            ok = err <= TOLERANCE[dtype]
            failed |= not ok
            print(f"  {cell:8s} {np.dtype(dtype).name:7s} max relative error {err:.1e}  "
                  f"{'ok' if ok else 'MISMATCH'}")
    if failed:
        print("some kernels disagree with the reference")
        return 1
    if args.no_timing:
        return 0

    print("\nfloat32 medians in ms; speed-up = reference / fastrnn")
    print(f"{'cell':8s} {'T,B,I,H':>16s} | {'fwd':>8s} {'ref':>8s} {'x':>6s} |"
          f" {'fwd+bwd':>8s} {'ref':>8s} {'x':>6s}")
    for t, b, i, h in SHAPES:
        for cell in CELLS:
            p = make_problem(cell, t, b, i, h, np.float32)
            row = []
            for backward in (False, True):
                # forward: inference mode; forward+backward: training mode and backward
                fast = median_time(lambda: run(functional, cell, p, backward, backward),
                                   args.repeats)
                ref = median_time(lambda: run(reference, cell, p, True, backward),
                                  max(1, args.repeats // 2))
                row += [fast * 1e3, ref * 1e3, ref / fast]
            print(f"{cell:8s} {f'{t},{b},{i},{h}':>16s} | {row[0]:8.2f} {row[1]:8.1f} "
                  f"{row[2]:5.1f}x | {row[3]:8.2f} {row[4]:8.1f} {row[5]:5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
