"""How fast is fastrnn on this machine, against PyTorch, ONNX Runtime and JAX, and against what
the machine can do at all (its float32 GEMM rate)?

    python bench/run.py                     # the full suite: table, JSON in bench/results/
    python bench/run.py --quick             # CI smoke run: tiny shapes, 1 thread, few calls
    python bench/run.py --cells lstm --shapes 100x16x256x256 --threads 1 --plot
    python bench/run.py --cells tree_childsum,tree_nary --trees 256   # the Tree-LSTM rows only

Each thread count runs in its own process restricted to that many CPUs (os.sched_setaffinity),
with OMP/OpenBLAS/MKL thread variables set before any library loads, and every backend set to
the same count: XLA sizes its CPU pool from the CPUs a process may use, so this is the one way to
give every backend the same number of threads.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cases import (ALL_CELLS, MODES, QUICK_SHAPES, QUICK_STACKED_SHAPE,  # noqa: E402
                   QUICK_TREE_COUNTS, QUICK_TREE_SIZE, QUICK_TREE_WORDS, SHAPES, STACKED_SHAPE,
                   TREE_COUNTS, TREE_SIZE, TREE_WORDS)
from peers import PEERS  # noqa: E402

MIN_REPEATS = 5
WARM_S = 0.1  # warm-up of each figure: at least this long (and --warmup calls)
MIN_TIME_S = 0.2  # timed calls of each figure: at least --repeats, and at least this long in all
PAUSE_S = 0.3  # idle time before each backend is timed, for the previous one's threads to sleep
ROUNDS = 3  # each row's backends timed in turn this many times (harness.time_rounds)


def _shape(text: str):
    parts = text.lower().split("x")
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"a shape is TxBxIxH with positive sizes, got {text!r}")
    return tuple(int(p) for p in parts)


def _size(text: str):
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"a tree size is IxH with positive sizes, got {text!r}")
    return tuple(int(p) for p in parts)


def _names(allowed):
    def parse(text: str):
        names = [n.strip() for n in text.split(",") if n.strip()]
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}; got {text!r}")
        return names
    return parse


def _counts(what: str, example: str):
    def parse(text: str):
        try:
            values = [int(t) for t in text.split(",")]
        except ValueError:
            values = []
        if not values or min(values) < 1:
            raise argparse.ArgumentTypeError(f"{what} are positive integers, e.g. {example}; "
                                             f"got {text!r}")
        return values
    return parse


_threads = _counts("threads", "1,2")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", type=_names(list(PEERS)), default=list(PEERS),
                   help=f"comma-separated, from {','.join(PEERS)} (default: all)")
    p.add_argument("--cells", type=_names(ALL_CELLS), default=list(ALL_CELLS),
                   help=f"comma-separated, from {','.join(ALL_CELLS)} (default: all)")
    p.add_argument("--shapes", type=lambda s: [_shape(x) for x in s.split(",")], default=None,
                   help="comma-separated TxBxIxH (default: the issue's grid of five)")
    p.add_argument("--stacked", type=_shape, default=None,
                   help="TxBxIxH of the 2-layer bidirectional LSTM row (default 100x16x256x256)")
    p.add_argument("--no-stacked", action="store_true", help="leave out the 2-layer LSTM row")
    p.add_argument("--trees", type=_counts("tree counts", "25,256"), default=None,
                   help="trees per forest of the Tree-LSTM rows, comma-separated (default 25,256)")
    p.add_argument("--tree-size", type=_size, default=None,
                   help="IxH of the Tree-LSTM rows (default 300x150)")
    p.add_argument("--threads", type=_threads, default=None, help="comma-separated (default 1,2)")
    p.add_argument("--modes", type=_names(MODES), default=list(MODES),
                   help="forward (inference) and/or train (forward+backward)")
    p.add_argument("--repeats", type=int, default=None,
                   help=f"timed calls per figure, the median reported (default and minimum "
                        f"{MIN_REPEATS}; --quick allows fewer)")
    p.add_argument("--rounds", type=int, default=None,
                   help=f"interleaved rounds each row's backends are timed in, the calls shared "
                        f"among them (default {ROUNDS}; --quick 1)")
    p.add_argument("--warmup", type=int, default=1,
                   help=f"untimed calls first (default 1), and for at least {WARM_S} s")
    p.add_argument("--min-time", type=float, default=None,
                   help=f"seconds the timed calls of a figure add up to at least, more calls "
                        f"than --repeats where they are short (default {MIN_TIME_S}; --quick 0)")
    p.add_argument("--gemm-size", type=int, default=None, help="n of the n^3 GEMM (default 1024)")
    p.add_argument("--check-only", action="store_true",
                   help="check every backend against the reference, time nothing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny shapes and forests, 1 thread, 2 calls, 128^3 GEMM "
                        "(no real figures)")
    p.add_argument("--json", type=Path, default=None,
                   help="where to write every figure (default bench/results/bench-<time>.json)")
    p.add_argument("--plot", nargs="?", const="", default=None, metavar="PNG",
                   help="also draw a PNG (matplotlib), by default beside the JSON")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one thread count's process
    args = p.parse_args(argv)
    # What is not given: the smoke run's tiny settings with --quick, else the suite.
    quick = args.quick
    args.shapes = args.shapes or list(QUICK_SHAPES if quick else SHAPES)
    args.stacked = args.stacked or (QUICK_STACKED_SHAPE if quick else STACKED_SHAPE)
    args.trees = args.trees or list(QUICK_TREE_COUNTS if quick else TREE_COUNTS)
    args.tree_size = args.tree_size or (QUICK_TREE_SIZE if quick else TREE_SIZE)
    args.tree_words = QUICK_TREE_WORDS if quick else TREE_WORDS
    args.threads = args.threads or ([1] if quick else [1, 2])
    args.repeats = args.repeats if args.repeats is not None else (2 if quick else MIN_REPEATS)
    args.gemm_size = args.gemm_size or (128 if quick else 1024)
    args.rounds = args.rounds if args.rounds is not None else (1 if quick else ROUNDS)
    if not quick and args.repeats < MIN_REPEATS:
        p.error(f"--repeats must be at least {MIN_REPEATS} (figures are medians of >= 5 calls)")
    if (args.repeats < 1 or args.rounds < 1 or args.warmup < 0 or args.gemm_size < 1
            or (args.min_time or 0) < 0):
        p.error("--repeats >= 1, --rounds >= 1, --warmup >= 0, --min-time >= 0 and "
                "--gemm-size >= 1 are needed")
    if args.no_stacked:
        args.stacked = None
    if args.check_only:
        args.repeats = 0
    return args


def child_env(threads: int) -> dict:
    """The environment of a worker: thread variables read when the libraries load, and the
    fastrnn built in this checkout (python/fastrnn with its compiled module) ahead of any installed
    one, so that a checkout measures itself; without an in-tree build, the installed package."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    in_tree = HERE.parent / "python"
    if any((in_tree / "fastrnn").glob("_C*.so")):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(in_tree), env.get("PYTHONPATH")]))
    return env


def run_threads(threads: int, cfg: dict) -> dict:
    """One worker process on the first `threads` CPUs this process may use."""
    cpus = sorted(os.sched_getaffinity(0))
    if threads > len(cpus):
        note = f"skipped: {threads} threads asked, {len(cpus)} CPUs available"
        print(f"threads {threads}: {note}", file=sys.stderr)
        return {"threads": threads, "skipped": note}
    mine = set(cpus[:threads])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        spec = Path(tmp) / "config.json"
        spec.write_text(json.dumps({**cfg, "threads": threads, "out": str(out)}))
        proc = subprocess.run([sys.executable, str(HERE / "run.py"), "--worker", str(spec)],
                              env=child_env(threads),
                              preexec_fn=lambda: os.sched_setaffinity(0, mine))
        if proc.returncode not in (0, 3) or not out.exists():  # 3: stopped on a mismatch
            raise SystemExit(proc.returncode or 1)
        return json.loads(out.read_text())


def worker_main(spec_path: str) -> int:
    cfg = json.loads(Path(spec_path).read_text())
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) != cfg["threads"]:  # started by hand, not by run_threads: libraries are loaded
        raise SystemExit(f"a worker must start on {cfg['threads']} CPUs, it has {len(cpus)}")
    import worker

    result = worker.run(cfg)
    Path(cfg["out"]).write_text(json.dumps(result, indent=1, default=float))
    return 3 if result["stopped"] else 0


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model or platform.processor(), "cpus_available": len(os.sched_getaffinity(0)),
            "os": platform.platform(), "python": platform.python_version(),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    from report import table

    if args.quick:  # DyNet holds its memory from the start: tiny forests need little
        os.environ.setdefault("FASTRNN_BENCH_DYNET_MEM", "128")

    cfg = {"backends": args.backends, "cells": args.cells, "shapes": args.shapes,
           "stacked": args.stacked, "trees": args.trees, "tree_size": args.tree_size,
           "tree_words": args.tree_words, "modes": args.modes, "repeats": args.repeats,
           "rounds": args.rounds,
           "warmup": args.warmup, "gemm_n": args.gemm_size, "seed": args.seed,
           "warm_s": 0.0 if args.quick else WARM_S,
           "min_s": args.min_time if args.min_time is not None else (0.0 if args.quick else MIN_TIME_S),
           "pause": 0.0 if args.quick else PAUSE_S}
    started = datetime.datetime.now(datetime.timezone.utc)
    runs = []
    for t in args.threads:
        runs.append(run_threads(t, cfg))
        if runs[-1].get("stopped"):
            break
    result = {"started": started.isoformat(timespec="seconds"),
              "seconds": (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(),
              "quick": args.quick, "config": cfg, "machine": machine(), "runs": runs}
    path = args.json or HERE / "results" / f"bench-{started:%Y%m%d-%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=float))
    print(table(result))
    print(f"\nJSON: {path}")
    if args.plot is not None:
        from plot import plot

        png = Path(args.plot) if args.plot else path.with_suffix(".png")
        note = plot(result, png)
        print(note)
    stopped = [r["stopped"] for r in runs if r.get("stopped")]
    if stopped:
        print("\n" + stopped[0], file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
