"""The instrument: one timer, one check against the reference, one memory count, for every backend.

A peer turns a case into a `Prepared`: `run()` does the measured work once (whatever it returns
is kept alive until the next call, as a user's code would), `fetch(out)` turns that into NumPy
arrays named as the reference names them, and `kept()` counts the bytes training mode keeps for
backward (None where the backend cannot say).
"""

from __future__ import annotations

import statistics
import time
import types
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional

import numpy as np

# A float32 result is accepted when max|got - want| <= TOLERANCE * max(max|want|, 1), the
# reference computed in float64 from the same float32 inputs. Loose enough for float32 sums over
# T*B terms, tight enough that a wrong gate order or a missing term fails by orders of magnitude.
TOLERANCE = 1e-4
# ReLU gradients: where a pre-activation lies within float32 rounding of 0, float32 and float64
# take different sides of the kink, and that unit's gradient path differs outright: one such
# unit in 5 million (T=20, B=256, H=1024) moves dx by 1.1e-2 and dw_ih by 8e-3 in this measure.
# A wrong derivative or a missing term is still O(1).
RELU_GRAD_TOLERANCE = 5e-2


def tolerance(cell: str, name: str) -> float:
    """The accepted error of output `name` ('y', 'dx', ...) of a case of `cell`."""
    return RELU_GRAD_TOLERANCE if cell == "rnn_relu" and name.startswith("d") else TOLERANCE


class Mismatch(Exception):
    """A backend's output differs from the NumPy reference: the run stops."""


@dataclass
class Prepared:
    run: Callable[[], Any]
    fetch: Callable[[Any], Dict[str, np.ndarray]]
    kept: Optional[Callable[[], Optional[int]]] = None


@dataclass
class Timing:
    median_s: float
    min_s: float
    max_s: float
    times_s: list

    def as_dict(self) -> dict:
        return {"median_s": self.median_s, "min_s": self.min_s, "max_s": self.max_s,
                "times_s": self.times_s}


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int, warm_s: float = 0.0,
               min_s: float = 0.0, max_calls: int = 1000) -> Timing:
    """Warm-up calls (at least `warmup`, and for at least `warm_s` seconds), then timed calls of
    fn() (at least `repeats`, and until they add up to `min_s` seconds, at most `max_calls`);
    the median, min and max in seconds.

    The time-based parts keep sub-millisecond calls from being timed only in the first
    milliseconds after the pause before each backend, while the machine is still waking its
    CPUs: every backend gets the same rule."""
    out = None
    start = time.perf_counter()
    calls = 0
    while calls < warmup or time.perf_counter() - start < warm_s:
        out = fn()
        calls += 1
    times: list = []
    while len(times) < repeats or (sum(times) < min_s and len(times) < max_calls):
        del out  # the previous result is freed before the next call, not during it
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return Timing(statistics.median(times), min(times), max(times), times)


def time_rounds(fns: Dict[str, Callable[[], Any]], rounds: int, repeats: int, warmup: int,
                warm_s: float = 0.0, min_s: float = 0.0, pause_s: float = 0.0,
                sleep: Callable[[float], None] = time.sleep) -> Dict[str, Timing]:
    """Times several functions of one row in `rounds` interleaved rounds: each round times
    every one in turn (time_calls, after `pause_s` idle), starting one later in each round, with
    a share of `repeats` and `min_s`; each one's figures are over all its calls.

    Only the ratios within a row count, and the host slows this process in stretches of a few
    seconds: so that such a stretch falls on all backends of a row alike, not on the one whose
    turn it was, each backend's calls are spread over the row's whole time."""
    names = list(fns)
    times: Dict[str, list] = {n: [] for n in names}
    per_round = -(-repeats // rounds)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)] if names else []:
            sleep(pause_s)
            t = time_calls(fns[name], per_round, warmup, warm_s, min_s / rounds)
            times[name] += t.times_s
    return {n: Timing(statistics.median(ts), min(ts), max(ts), ts) for n, ts in times.items()}


def max_error(got: np.ndarray, want: np.ndarray) -> float:
    """max|got - want| / max(max|want|, 1): a norm-wise relative error, in float64."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return float("inf")
    if want.size == 0:
        return 0.0
    if not np.all(np.isfinite(got)):
        return float("inf")
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1.0))


def check(backend: str, key: str, got: Dict[str, np.ndarray], want: Dict[str, np.ndarray],
          cell: str = "") -> float:
    """The largest error over the reference's arrays; Mismatch if one is missing or off."""
    worst = 0.0
    for name, ref in want.items():
        tol = tolerance(cell, name)
        if name not in got or got[name] is None:
            raise Mismatch(f"{backend} on {key}: no '{name}' to compare with the reference")
        err = max_error(got[name], ref)
        if not err <= tol:
            shape = np.shape(got[name])
            raise Mismatch(f"{backend} on {key}: '{name}' {shape} differs from the NumPy reference "
                           f"(error {err:.3g} > {tol:g}; want shape {ref.shape})")
        worst = max(worst, err)
    return worst


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


_PLAIN = (str, bytes, int, float, bool, complex, type(None), type, np.dtype, np.generic,
          np.random.Generator, np.random.BitGenerator, types.FunctionType, types.MethodType,
          types.BuiltinFunctionType, types.ModuleType)


class Opaque(Exception):
    """An object whose memory cannot be seen from Python (a compiled object without `nbytes`)."""


def _buffers(obj: Any, seen: set) -> Iterable[Any]:
    """Every ndarray, and every object with an integer `nbytes`, reachable through tuples,
    lists, dicts and object attributes; Opaque if a compiled object hides what it holds."""
    if id(obj) in seen or isinstance(obj, _PLAIN):
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray) or isinstance(getattr(obj, "nbytes", None), int):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _buffers(v, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            yield from _buffers(v, seen)
    elif hasattr(obj, "__dict__"):
        for v in vars(obj).values():
            yield from _buffers(v, seen)
    else:
        raise Opaque(type(obj).__name__)


def numpy_kept_bytes(held: Any, inputs: Iterable[np.ndarray]) -> Optional[int]:
    """Bytes of the distinct buffers reachable from `held`, leaving out the inputs' buffers (x,
    h0, weights: the caller owns them whether or not backward follows); None when some object
    on the way hides its memory."""
    excluded = {id(_root(a)) for a in inputs}
    roots = {}
    try:
        for a in _buffers(held, set()):
            r = _root(a) if isinstance(a, np.ndarray) else a
            if id(r) not in excluded:
                roots[id(r)] = int(r.nbytes)
    except Opaque:
        return None
    return int(sum(roots.values()))


def gflops(flops: float, seconds: float) -> float:
    return flops / seconds / 1e9 if seconds > 0 else float("nan")
