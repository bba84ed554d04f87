"""One thread count, in one process: the GEMM rates, then every case x mode x backend: prepare,
check against the reference (a mismatch stops the run, except for a backend with
EXCLUDE_ON_MISMATCH, which is then noted and not timed on that row), time the row's backends in
interleaved rounds, count the memory kept.

run.py starts this process already restricted to `threads` CPUs, with the BLAS thread variables
set, so that every library sizes its pools to the same count from the start.
"""

from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional

import numpy as np

import gemm
import peers
from harness import Mismatch, check, gflops, time_rounds


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_backends(names: List[str], threads: int) -> Dict[str, dict]:
    """Each backend's module and what it runs with, or the note saying why it is skipped."""
    backends = {}
    for name in names:
        mod = peers.load(name)
        note = mod.available()
        info = None if note else mod.configure(threads)
        if note:
            log(f"  skip {name}: {note}")
        backends[name] = {"module": mod, "note": note, "info": info}
    return backends


def check_backend(mod, case, mode: str, inputs, want):
    """Prepares one backend on one row and checks it against the reference: (prepared, error)."""
    prepared = mod.prepare(case, mode, inputs)
    out = prepared.run()
    err = check(mod.NAME, f"{case.key} {mode}", prepared.fetch(out), want, case.cell)
    del out
    return prepared, err


def run_row(case, mode: str, inputs, want, backends, cfg) -> dict:
    """Every backend on one row: checked, then timed in interleaved rounds (repeats 0: checked
    only); the figures."""
    flops = case.flops(mode)
    row = {"case": case.key, "kind": case.kind, "cell": case.cell, "mode": mode,
           "shape": case.shape, "flops": flops, "results": {}, "notes": {}}
    prepared = {}
    for name, b in backends.items():
        if b["note"]:
            row["notes"][name] = b["note"]
            continue
        note = b["module"].supports(case, mode)
        if note:
            row["notes"][name] = note
            continue
        try:
            prepared[name], err = check_backend(b["module"], case, mode, inputs, want)
        except Mismatch as e:
            if not getattr(b["module"], "EXCLUDE_ON_MISMATCH", False):
                raise
            row["notes"][name] = f"MISMATCH, not timed: {e}"
            row.setdefault("mismatches", {})[name] = str(e)
            log(f"  {name}: MISMATCH, not timed on this row: {e}")
            continue
        except Exception as e:  # noqa: BLE001  (a backend that fails is noted; the run goes on)
            row["notes"][name] = f"failed: {type(e).__name__}: {e}"
            log(f"  {name}: FAILED {type(e).__name__}: {e}")
            continue
        row["results"][name] = {"error": err}
    if cfg["repeats"] == 0:
        for name, res in row["results"].items():
            log(f"  {name:9s} checked (error {res['error']:.1e})")
        return row
    # The pools of the backend before (OpenBLAS and OpenMP threads spin a while after their last
    # task) must be asleep before the next is timed, or they take its CPUs: a pause before each.
    timings = time_rounds({n: p.run for n, p in prepared.items()}, cfg.get("rounds", 1),
                          cfg["repeats"], cfg["warmup"], cfg.get("warm_s", 0.0),
                          cfg.get("min_s", 0.0), cfg["pause"])
    for name, timing in timings.items():
        res = row["results"][name]
        res.update(timing.as_dict())
        if prepared[name].kept is not None:
            res["kept_bytes"] = prepared[name].kept()
        res["gflops"] = gflops(flops, res["median_s"])
        log(f"  {name:9s} {res['median_s'] * 1e3:10.3f} ms  (check {res['error']:.1e}, "
            f"{len(res['times_s'])} calls)")
    del prepared
    figures = {n: r for n, r in row["results"].items() if "median_s" in r}
    peer_times = {n: r["median_s"] for n, r in figures.items() if backends[n]["module"].COMPARE}
    if peer_times:
        fastest = min(peer_times, key=peer_times.get)
        row["fastest_peer"] = fastest
        if "fastrnn" in figures:
            row["ratio"] = peer_times[fastest] / figures["fastrnn"]["median_s"]
    if "fastrnn" in figures:
        row["kept_bytes"] = figures["fastrnn"].get("kept_bytes")
    return row


def apply_bound(row: dict, bound_gflops) -> None:
    """The row's FLOP bound at the GEMM rate, and the fraction of it each backend reaches."""
    row["bound_s"] = row["flops"] / (bound_gflops * 1e9) if bound_gflops else None
    for res in row["results"].values():
        if "gflops" in res:
            res["fraction_of_bound"] = res["gflops"] / bound_gflops if bound_gflops else None
    if "fraction_of_bound" in row["results"].get("fastrnn", {}):
        row["fraction_of_bound"] = row["results"]["fastrnn"]["fraction_of_bound"]


def measure_gemms(cfg: dict, threads: int, when: str) -> list:
    if cfg["repeats"] == 0:
        return []
    log(f"  GEMM {cfg['gemm_n']}^3 float32, {when} ...")
    gemms = gemm.measure(cfg["gemm_n"], threads, max(cfg["repeats"], 3), cfg["warmup"],
                         cfg["pause"], cfg.get("warm_s", 0.0), cfg.get("min_s", 0.0))
    for g in gemms:
        g["when"] = when
        log(f"    {g['name']:20s} "
            + (f"{g['gflops']:8.1f} GFLOP/s" if "gflops" in g else g["note"]))
    return gemms


def measure_round_trip(threads: int, when: str) -> Optional[float]:
    """With two threads or more: the median over 5 runs of 20,000 exchanges of the time for one
    of the kernels' threads to signal another and see its answer (ns), else None. A recurrence
    split over threads waits for at least this once a step."""
    if threads < 2:
        return None
    import fastrnn

    ns = float(np.median([fastrnn._C.core_round_trip_ns(20000) for _ in range(5)]))
    log(f"  thread round trip, {when}: {ns:.0f} ns")
    return ns


def run(cfg: dict) -> dict:
    """The whole measurement at cfg['threads'] threads; a JSON-ready dict."""
    from cases import build_cases
    from peers import reference_peer

    threads = cfg["threads"]
    log(f"threads {threads}: CPUs {sorted(os.sched_getaffinity(0))}")
    backends = load_backends(cfg["backends"], threads)
    # The GEMM rates before and after the rows; the best of all is the bound (a busy moment
    # lowers one measurement, not both).
    gemms = measure_gemms(cfg, threads, "start")
    round_trip = [measure_round_trip(threads, "start")]
    rows = []
    rng_seed = cfg["seed"]
    cases = build_cases(cfg["cells"], [tuple(s) for s in cfg["shapes"]],
                        tuple(cfg["stacked"]) if cfg["stacked"] else None, cfg["trees"],
                        tuple(cfg["tree_size"]), tuple(cfg["tree_words"]), cfg["seed"])
    stopped = None
    try:
        for case in cases:
            inputs = case.make_inputs(np.random.default_rng(rng_seed))
            for mode in cfg["modes"]:
                log(f"{case.key} {mode}")
                want = reference_peer.expected(case, mode, inputs)
                rows.append(run_row(case, mode, inputs, want, backends, cfg))
    except Mismatch as e:  # the run stops; what was measured so far is still written
        stopped = f"MISMATCH, the run stops: {e}"
        log(stopped)
    gemms += measure_gemms(cfg, threads, "end")
    round_trip.append(measure_round_trip(threads, "end"))
    best = gemm.best(gemms)
    bound = best["gflops"] if best else None
    for row in rows:
        apply_bound(row, bound)
    return {
        "threads": threads,
        "stopped": stopped,
        "cpus": sorted(os.sched_getaffinity(0)),
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                               "MKL_NUM_THREADS", "OPENBLAS_CORETYPE",
                                               "XLA_FLAGS")},
        "backends": {n: {"note": b["note"], "info": b["info"], "title": b["module"].TITLE,
                         "compare": b["module"].COMPARE} for n, b in backends.items()},
        "gemm": gemms,
        "gemm_best": best["name"] if best else None,
        "bound_gflops": bound,
        "round_trip_ns": None if round_trip[0] is None else round_trip,
        "rows": rows,
    }
