"""The table a person reads: per thread count, the GEMM rates, then one line per case and mode.

Times are medians in milliseconds (fastrnn's min and max beside it; every backend's in the JSON).
`peer/fr` is the fastest peer's median over fastrnn's (above 1: fastrnn is faster); `bound` is
the case's GEMM FLOPs at the best GEMM rate measured in the same process; `of bound` is the
fraction of that rate fastrnn reaches; `kept` is the memory fastrnn's training mode keeps for
backward.
"""

from __future__ import annotations

from typing import List

BACKEND_ORDER = ("fastrnn", "reference", "torch", "onnx", "jax", "torch_node", "torch_level",
                 "dynet")


def _ms(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds == "checked":
        return "ok"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _width(name: str) -> int:
    return max(9, len(name))


def _figure(row: dict, name: str) -> str:
    if name in row.get("mismatches", {}):
        return "MISMATCH"
    res = row["results"].get(name)
    return "-" if res is None else _ms(res.get("median_s", "checked"))


def _backends(run: dict) -> List[str]:
    names = list(run["backends"])
    return sorted(names, key=lambda n: BACKEND_ORDER.index(n) if n in BACKEND_ORDER else 99)


def _gemm_line(run: dict) -> str:
    """Each GEMM's rate at the start and the end of the run (start/end)."""
    rates, notes, n = {}, {}, "?"
    for g in run["gemm"]:
        if "gflops" in g:
            n = g["n"]
            bad = "" if g.get("ok") else f" (wrong product, error {g['error']:.1e})"
            rates.setdefault(g["name"], []).append(f"{g['gflops']:.1f}{bad}")
        else:
            notes[g["name"]] = g["note"]
    parts = [f"{name} {'/'.join(r)}" + ("*" if name == run["gemm_best"] else "")
             for name, r in rates.items()]
    parts += [f"{name}: {note}" for name, note in notes.items()]
    return (f"float32 GEMM {n}^3, GFLOP/s at start/end (* = the bound, "
            f"{run['bound_gflops'] or 0:.1f}): " + ", ".join(parts))


def run_table(run: dict) -> str:
    if "skipped" in run:
        return f"threads {run['threads']}: {run['skipped']}"
    names = _backends(run)
    lines = [f"threads {run['threads']} (CPUs {run['cpus']})"]
    if run["gemm"]:
        lines.append(_gemm_line(run))
    if run.get("round_trip_ns"):
        start, end = run["round_trip_ns"]
        lines.append(f"thread round trip (one thread signals another and sees its answer; a step "
                     f"split over threads waits at least this): {start:.0f} ns at start, "
                     f"{end:.0f} at end")
    fr = run["backends"].get("fastrnn", {}).get("info") or {}
    if fr:
        lines.append(f"fastrnn {fr.get('version')} ({fr.get('path')}): isa {fr.get('isa')}, "
                     f"{fr.get('blas')}")
    for n in names:
        note = run["backends"][n]["note"]
        if note:
            lines.append(f"{n}: skipped, {note}")
    case_w = max([len(r["case"]) for r in run["rows"]] + [4])
    head = (f"{'case':{case_w}s}  {'mode':7s}  {'fastrnn ms [min, max]':>24s}  "
            + "  ".join(f"{n:>{_width(n)}s}" for n in names if n != "fastrnn")
            + f"  {'peer/fr':>17s}  {'bound ms':>8s}  {'of bound':>8s}  {'kept MiB':>8s}")
    lines += ["", head, "-" * len(head)]
    notes = {}
    for r in run["rows"]:
        res = r["results"]
        f = res.get("fastrnn")
        fcell = ("-" if not f else "checked" if "median_s" not in f
                 else f"{_ms(f['median_s'])} [{_ms(f['min_s'])}, {_ms(f['max_s'])}]")
        others = [f"{_figure(r, n):>{_width(n)}s}" for n in names if n != "fastrnn"]
        for n, note in r["notes"].items():
            if not run["backends"][n]["note"]:  # a skipped backend is said once, above
                notes.setdefault((n, note), []).append(r["case"])
        ratio = (f"{r['ratio']:.2f} {r['fastest_peer'][:11]}" if r.get("ratio") else "-")
        frac = f"{100 * r['fraction_of_bound']:.1f}%" if r.get("fraction_of_bound") else "-"
        kept = f"{r['kept_bytes'] / 2**20:.3g}" if r.get("kept_bytes") is not None else "-"
        mode = {"forward": "forward", "train": "fwd+bwd"}[r["mode"]]
        lines.append(f"{r['case']:{case_w}s}  {mode:7s}  {fcell:>24s}  " + "  ".join(others)
                     + f"  {ratio:>17s}  {_ms(r.get('bound_s')):>8s}  {frac:>8s}  {kept:>8s}")
    for (n, note), cases in notes.items():
        lines.append(f"  {n}: {note} ({len(cases)} rows)")
    if run.get("stopped"):
        lines.append(run["stopped"])
    return "\n".join(lines)


def table(result: dict) -> str:
    """The whole report as text."""
    m = result["machine"]
    head = [f"fastrnn benchmark, {result['started']}, {m['cpu']} ({m['cpus_available']} CPUs), "
            f"Python {m['python']}"]
    if result.get("quick"):
        head.append("--quick: a smoke run on tiny shapes; the figures mean nothing")
    return "\n\n".join(["\n".join(head)] + [run_table(r) for r in result["runs"]])
