"""The PNG: per thread count, one line per case and mode, two panels.

Left: how many times slower each backend is than fastrnn (log scale; right of the line at 1,
fastrnn is faster). Right: the fraction of the measured GEMM rate each backend reaches, fastrnn as
a bar, the others as dots. matplotlib is optional: without it the run says so and goes on.
"""

from __future__ import annotations

from pathlib import Path

COLORS = {"fastrnn": "#d62728", "reference": "#7f7f7f", "torch": "#ff7f0e", "onnx": "#1f77b4",
          "jax": "#2ca02c", "torch_node": "#8c564b", "torch_level": "#e377c2", "dynet": "#9467bd"}
MARKERS = {"reference": "s", "torch": "o", "onnx": "D", "jax": "^", "torch_node": "v",
           "torch_level": ">", "dynet": "P"}


def _label(row: dict) -> str:
    mode = "fwd" if row["mode"] == "forward" else "fwd+bwd"
    return f"{row['case']}  {mode}"


def plot(result: dict, png: Path) -> str:
    """Draw the figure into `png`; a line saying what was done."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import PercentFormatter
    except ImportError:
        return "plot: skipped, matplotlib is not installed (pip install fastrnn[bench])"
    runs = [r for r in result["runs"] if r.get("bound_gflops") and r.get("rows")]
    if not runs:
        return "plot: skipped, no timed rows"
    n_rows = max(len(r["rows"]) for r in runs)
    fig, axes = plt.subplots(len(runs), 2, squeeze=False, sharey="row",
                             figsize=(14, 1.2 + 0.28 * n_rows * len(runs)))
    for (ax_speed, ax_bound), run in zip(axes, runs):
        rows = [dict(r, results={n: f for n, f in r["results"].items() if "median_s" in f})
                for r in run["rows"]]
        ys = range(len(rows))
        names = [n for n in run["backends"] if n != "fastrnn"]
        for name in names:
            pts = [(r["results"][name]["median_s"] / r["results"]["fastrnn"]["median_s"], y)
                   for y, r in zip(ys, rows) if name in r["results"] and "fastrnn" in r["results"]]
            if pts:
                ax_speed.scatter(*zip(*pts), label=name, color=COLORS.get(name),
                                 marker=MARKERS.get(name, "o"), s=28, zorder=3)
            pts = [(r["results"][name]["fraction_of_bound"], y) for y, r in zip(ys, rows)
                   if name in r["results"] and r["results"][name].get("fraction_of_bound")]
            if pts:
                ax_bound.scatter(*zip(*pts), color=COLORS.get(name),
                                 marker=MARKERS.get(name, "o"), s=28, zorder=3)
        fr = [r["results"]["fastrnn"]["fraction_of_bound"] if "fastrnn" in r["results"] else 0
              for r in rows]
        ax_bound.barh(list(ys), fr, color=COLORS["fastrnn"], alpha=0.6, label="fastrnn")
        ax_speed.axvline(1.0, color=COLORS["fastrnn"], lw=1.5)
        ax_speed.set_xscale("log")
        ax_speed.set_yticks(list(ys), [_label(r) for r in rows], fontsize=7)
        ax_speed.invert_yaxis()
        ax_speed.grid(axis="x", which="both", alpha=0.3)
        ax_bound.grid(axis="x", alpha=0.3)
        ax_bound.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax_speed.set_title(f"{run['threads']} thread(s): time / fastrnn's time "
                           "(right of the red line: fastrnn faster)", fontsize=9)
        ax_bound.set_title(f"fraction of the float32 GEMM rate ({run['bound_gflops']:.0f} GFLOP/s, "
                           f"{run['gemm_best']})", fontsize=9)
        ax_speed.legend(fontsize=7, loc="lower right")
        ax_bound.legend(fontsize=7, loc="lower right")
    m = result["machine"]
    fig.suptitle(f"fastrnn benchmark {result['started']}, {m['cpu']}"
                 + (" (--quick: figures mean nothing)" if result.get("quick") else ""), fontsize=10)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return f"plot: {png}"
