"""The benchmark harness (bench/): the smoke run end to end, and the checks that stop a run.

No timing assertions: figures are only checked to exist and be positive numbers.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import forests  # noqa: E402
import harness  # noqa: E402
from cases import SequenceCase, StackedLSTMCase, TreeCase  # noqa: E402
from peers import reference_peer  # noqa: E402

TREE_PEERS = ("torch_node", "torch_level", "dynet")


def _env():
    """The test's environment; the checkout's own build first when there is one (as bench/run.py
    does), else the installed package."""
    env = dict(os.environ)
    in_tree = ROOT / "python"
    if any((in_tree / "fastrnn").glob("_C*.so")):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(in_tree), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    proc = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--json", str(out)],
                          env=_env(), capture_output=True, text=True, timeout=600)
    return proc, out


def test_quick_run_exits_zero_and_prints_the_table(quick_run):
    proc, _ = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "peer/fr" in proc.stdout and "of bound" in proc.stdout


def test_quick_run_writes_json_with_every_figure(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert {"started", "machine", "config", "runs"} <= set(result)
    assert result["quick"] is True
    (run,) = result["runs"]  # --quick: one thread count
    assert run["threads"] == 1 and len(run["cpus"]) == 1
    assert {"backends", "gemm", "gemm_best", "bound_gflops", "rows"} <= set(run)
    assert run["bound_gflops"] > 0
    measured = [g for g in run["gemm"] if "gflops" in g]
    assert any(g["name"] == "openblas (fastrnn)" for g in measured)
    assert all(g["gflops"] > 0 and g["ok"] for g in measured)
    cells = {(r["cell"], r["kind"]) for r in run["rows"]}
    assert {("rnn_tanh", "sequence"), ("rnn_relu", "sequence"), ("lstm", "sequence"),
            ("gru", "sequence"), ("lstm", "stacked"), ("tree_childsum", "tree"),
            ("tree_nary", "tree")} <= cells
    for row in run["rows"]:
        assert {"case", "mode", "shape", "flops", "bound_s", "results", "notes"} <= set(row)
        assert row["flops"] > 0 and row["bound_s"] > 0
        for name, fig in row["results"].items():
            assert fig["min_s"] <= fig["median_s"] <= fig["max_s"], name
            assert len(fig["times_s"]) == result["config"]["repeats"]
            assert fig["error"] <= harness.tolerance(row["cell"], "dx")
        if row["kind"] == "sequence":
            assert "fastrnn" in row["results"] and "reference" in row["results"]
            assert row["fraction_of_bound"] > 0
            if row["mode"] == "train":
                assert row["kept_bytes"] > 0
            if any(run["backends"][n]["compare"] and n in row["results"]
                   for n in run["backends"]):
                assert row["ratio"] > 0 and row["fastest_peer"] in row["results"]
        if row["kind"] == "tree":
            assert {"fastrnn", "reference", "torch_node", "torch_level"} <= set(row["results"])
            assert row["fraction_of_bound"] > 0
            assert row["fastest_peer"] in TREE_PEERS and row["ratio"] > 0
            assert row["shape"]["trees"] == 3 and row["shape"]["nodes"] > 3
            for name in ("torch", "onnx", "jax"):
                assert name in row["notes"]
            for name in TREE_PEERS:
                assert name not in run["backends"] or name in row["results"] or name in row["notes"]
        else:  # a tree peer's note: its rows are the trees', or why it is missing here
            for name in TREE_PEERS:
                missing = run["backends"][name]["note"]
                assert row["notes"][name] == (missing or "Tree-LSTM rows only")


def test_quick_run_notes_every_backend_it_skips(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads(out.read_text())["runs"][0]
    for row in run["rows"]:
        for name in run["backends"]:
            assert (name in row["results"]) != (name in row["notes"]), (row["case"], name)


def test_flops_follow_the_issue_formula():
    case = SequenceCase("gru", 100, 16, 256, 128)
    assert case.flops("forward") == 2 * 100 * 16 * (256 + 128) * 3 * 128
    assert case.flops("train") == 3 * case.flops("forward")
    stacked = StackedLSTMCase(10, 2, 6, 4)
    layer0 = 2 * 10 * 2 * (6 + 4) * 4 * 4
    layer1 = 2 * 10 * 2 * (8 + 4) * 4 * 4
    assert stacked.flops("forward") == 2 * (layer0 + layer1)


def test_tree_flops_follow_the_formula_in_the_readme():
    case = TreeCase("tree_childsum", 4, 7, 5, words=(3, 9), seed=3)
    k = np.bincount(case.parents[case.parents >= 0], minlength=case.n_nodes)
    n_inner, n_edges = np.count_nonzero(k), case.n_nodes - case.trees
    assert k.sum() == n_edges and case.input_nodes.size == case.n_nodes
    want = 2 * 5 * (4 * 7 * case.n_nodes + 3 * 5 * n_inner + 5 * n_edges)
    assert case.flops("forward") == want and case.flops("train") == 3 * want
    nary = TreeCase("tree_nary", 4, 7, 5, words=(3, 9), seed=3)
    n_leaves = (nary.n_nodes + nary.trees) // 2  # full binary trees: 2*leaves - 1 nodes each
    assert nary.input_nodes.size == n_leaves
    want = 2 * 5 * (4 * 7 * n_leaves + 10 * 5 * (nary.n_nodes - n_leaves))
    assert nary.flops("forward") == want and nary.flops("train") == 3 * want


@pytest.mark.parametrize("kind", ["binarized", "dependency"])
def test_forests_are_seeded_trees_of_the_promised_shape(kind):
    parents = forests.make_forest(kind, 40, (5, 50), seed=7)
    assert np.array_equal(parents, forests.make_forest(kind, 40, (5, 50), seed=7))
    assert not np.array_equal(parents, forests.make_forest(kind, 40, (5, 50), seed=8))
    import fastrnn

    forest = fastrnn.Forest(parents)  # in range, no cycle
    assert forest.n_trees == 40
    assert np.array_equal(forests.heights(parents), forest.heights)
    root = np.arange(parents.size)  # each node's root, by following parents
    while np.any(parents[root] >= 0):
        root = np.where(parents[root] >= 0, parents[root], root)
    _, first, sizes = np.unique(root, return_index=True, return_counts=True)
    starts = np.sort(first)
    assert np.array_equal(np.diff(np.append(starts, parents.size)), sizes[np.argsort(first)])
    kids = forest.n_children
    if kind == "binarized":
        assert set(np.unique(kids)) == {0, 2}  # full binary trees
        words = (sizes + 1) // 2
        inner = np.flatnonzero(parents >= 0)
        assert np.all(parents[inner] < inner)  # pre-order: a parent before its children
    else:
        assert kids.max() <= forests.MAX_CHILDREN
        words = sizes
        assert np.any(parents[starts] >= 0)  # shuffled: a tree's first node is not always its root
    assert words.min() >= 5 and words.max() <= 50


def test_a_smaller_forest_is_the_start_of_a_larger_one():
    for cell in ("tree_childsum", "tree_nary"):
        small, large = TreeCase(cell, 25, 3, 2), TreeCase(cell, 256, 3, 2)
        assert np.array_equal(small.parents, large.parents[:small.n_nodes])


@pytest.mark.parametrize("cell", ["tree_childsum", "tree_nary"])
@pytest.mark.parametrize("mode", ["forward", "train"])
def test_tree_peers_match_the_reference_on_a_small_forest(cell, mode, monkeypatch):
    pytest.importorskip("torch")
    from peers import load, tree_dynet

    if tree_dynet.dy is None:  # DyNet allocates its memory when it loads: a little is enough
        monkeypatch.setattr(tree_dynet, "MEMORY_MB", "128")

    case = TreeCase(cell, 4, 5, 3, words=(2, 9), seed=1)
    inputs = case.make_inputs(np.random.default_rng(4))
    want = reference_peer.expected(case, mode, inputs)
    assert set(want) == ({"h", "c"} if mode == "forward" else
                         {"h", "c", "dx", "dw_ih", "dw_hh", "db_ih", "db_hh"})
    for name in ("fastrnn", "torch_node", "torch_level", "dynet"):
        mod = load(name)
        if mod.available():
            assert name == "dynet", mod.available()
            continue
        mod.configure(1)
        prepared = mod.prepare(case, mode, inputs)
        got = prepared.fetch(prepared.run())
        if mode == "train":
            assert got["dx"].shape == (case.input_nodes.size, case.I)
        assert harness.check(name, case.key, got, want, cell) < 1e-5, name


def test_tree_reference_gradients_match_torch_autograd():
    torch = pytest.importorskip("torch")
    from peers import tree_torch_levels

    case = TreeCase("tree_nary", 3, 4, 3, words=(2, 7), seed=2)
    inputs = case.make_inputs(np.random.default_rng(5))
    want = reference_peer.expected(case, "train", inputs)
    p = {k: torch.from_numpy(inputs[k].astype(np.float64)).requires_grad_()
         for k in ("w_ih", "w_hh", "b_ih", "b_hh")}
    x_in = torch.from_numpy(inputs["x"][case.input_nodes].astype(np.float64)).requires_grad_()
    levels = tree_torch_levels.schedule(case.parents, 2)
    h, c = tree_torch_levels.nary_forward(p, x_in, torch.from_numpy(case.input_nodes), levels,
                                          case.n_nodes, case.H, 2)
    h.sum().backward()
    np.testing.assert_allclose(want["h"], h.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(want["dx"], x_in.grad.numpy(), rtol=1e-10, atol=1e-12)
    for k, t in p.items():
        np.testing.assert_allclose(want["d" + k], t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_a_dynet_mismatch_is_a_note_and_the_run_goes_on(tmp_path):
    import shutil

    copy = tmp_path / "bench"
    shutil.copytree(BENCH, copy, ignore=shutil.ignore_patterns("results", "__pycache__"))
    peer = copy / "peers" / "tree_dynet.py"
    text = peer.read_text()
    old = '            got["dx"] = table.grad_as_array()\n'
    assert old in text
    peer.write_text(text.replace(old, '            got["dx"] = 1.5 * table.grad_as_array()\n'))
    out = tmp_path / "noted.json"
    proc = subprocess.run([sys.executable, str(copy / "run.py"), "--quick", "--cells", "tree_nary",
                           "--backends", "fastrnn,reference,torch_level,dynet", "--json", str(out)],
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads(out.read_text())["runs"][0]
    if run["backends"]["dynet"]["note"]:
        pytest.skip(run["backends"]["dynet"]["note"])
    forward, train = run["rows"]
    assert "dynet" in forward["results"] and "median_s" in forward["results"]["dynet"]
    assert "dynet" not in train["results"] and "'dx'" in train["mismatches"]["dynet"]
    assert train["notes"]["dynet"].startswith("MISMATCH, not timed")
    assert train["fastest_peer"] == "torch_level"
    assert "MISMATCH" in proc.stdout


def test_check_stops_on_a_wrong_array_and_on_a_missing_one():
    want = {"y": np.ones((3, 2, 4)), "h_n": np.ones((2, 4))}
    ok = {k: v.astype(np.float32) for k, v in want.items()}
    assert harness.check("x", "case", ok, want) == 0.0
    bad = dict(ok, h_n=ok["h_n"] * 1.01)
    with pytest.raises(harness.Mismatch, match="'h_n'"):
        harness.check("x", "case", bad, want)
    with pytest.raises(harness.Mismatch, match="no 'h_n'"):
        harness.check("x", "case", {"y": ok["y"]}, want)
    nan = dict(ok, y=np.full((3, 2, 4), np.nan))
    with pytest.raises(harness.Mismatch):
        harness.check("x", "case", nan, want)


def test_stacked_reference_matches_torch_gradients():
    torch = pytest.importorskip("torch")
    case = StackedLSTMCase(4, 3, 5, 2)
    inputs = case.make_inputs(np.random.default_rng(1))
    want = reference_peer.expected(case, "train", inputs)
    m = torch.nn.LSTM(5, 2, num_layers=2, bidirectional=True).double()
    m.load_state_dict({k: torch.from_numpy(v.astype(np.float64))
                       for k, v in case.state_dict(inputs).items()})
    x = torch.from_numpy(inputs["x"].astype(np.float64)).requires_grad_()
    y, (h_n, c_n) = m(x)
    (y.sum() + h_n.sum()).backward()
    np.testing.assert_allclose(want["y"], y.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(want["c_n"], c_n.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(want["dx"], x.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, p in m.named_parameters():
        np.testing.assert_allclose(want["d" + name], p.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_onnx_without_the_gate_reordering_is_caught():
    onnx_peer = pytest.importorskip("peers.onnx_peer")
    if onnx_peer.available():
        pytest.skip(onnx_peer.available())
    onnx_peer.configure(1)
    case = SequenceCase("lstm", 5, 2, 3, 4)
    inputs = case.make_inputs(np.random.default_rng(2))
    want = reference_peer.expected(case, "forward", inputs)
    prepared = onnx_peer.prepare(case, "forward", inputs)
    assert harness.check("onnx", case.key, prepared.fetch(prepared.run()), want) < 1e-5
    order = onnx_peer._TORCH_TO_ONNX
    try:
        onnx_peer._TORCH_TO_ONNX = dict(order, lstm=[0, 1, 2, 3])  # torch's order, unconverted
        wrong = onnx_peer.prepare(case, "forward", inputs)
        with pytest.raises(harness.Mismatch):
            harness.check("onnx", case.key, wrong.fetch(wrong.run()), want)
    finally:
        onnx_peer._TORCH_TO_ONNX = order


def test_a_missing_peer_is_skipped_with_a_note(tmp_path):
    fake = tmp_path / "jax"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('jax is hidden for this test')\n")
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    out = tmp_path / "quick.json"
    proc = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--backends",
                           "fastrnn,reference,jax", "--cells", "gru", "--no-stacked",
                           "--json", str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads(out.read_text())["runs"][0]
    assert "not installed" in run["backends"]["jax"]["note"]
    assert "jax: skipped" in proc.stdout
    for row in run["rows"]:
        assert "jax" not in row["results"] and "jax" in row["notes"]
        assert "fastrnn" in row["results"]


def test_a_mismatch_stops_the_run_with_exit_3_and_keeps_what_was_measured(tmp_path):
    import shutil

    copy = tmp_path / "bench"
    shutil.copytree(BENCH, copy, ignore=shutil.ignore_patterns("results", "__pycache__"))
    harness_py = copy / "harness.py"
    text = harness_py.read_text()
    assert "\nTOLERANCE = 1e-4\n" in text
    harness_py.write_text(text.replace("\nTOLERANCE = 1e-4\n", "\nTOLERANCE = 1e-12\n"))
    out = tmp_path / "stopped.json"
    proc = subprocess.run([sys.executable, str(copy / "run.py"), "--quick", "--cells", "lstm",
                           "--backends", "fastrnn,reference", "--json", str(out)], env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "MISMATCH" in proc.stderr and "fastrnn on lstm" in proc.stderr
    run = json.loads(out.read_text())["runs"][0]
    assert run["stopped"].startswith("MISMATCH") and run["rows"] == []


def test_time_calls_warms_up_and_times_at_least_the_calls_and_seconds_asked():
    starts = []

    def fn():
        starts.append(time.perf_counter())
        time.sleep(0.002)

    t = harness.time_calls(fn, 3, 1, warm_s=0.02, min_s=0.03)
    warm = len(starts) - len(t.times_s)
    assert warm >= 2 and starts[warm] - starts[0] >= 0.02  # timed calls begin after the warm-up
    assert len(t.times_s) >= 3 and sum(t.times_s) >= 0.03
    assert t.min_s <= t.median_s <= t.max_s
    starts.clear()
    t = harness.time_calls(fn, 2, 0, min_s=10.0, max_calls=4)  # the cap ends a long minimum
    assert len(t.times_s) == 4 and len(starts) == 4
    t = harness.time_calls(fn, 5, 0)
    assert len(t.times_s) == 5


def test_time_rounds_interleaves_the_backends_of_a_row_and_pools_their_calls():
    order, pauses = [], []

    def backend(name):
        return lambda: order.append(name)

    timings = harness.time_rounds({n: backend(n) for n in "abc"}, rounds=3, repeats=5, warmup=0,
                                  pause_s=0.25, sleep=pauses.append)
    # Each round every backend in turn, one later each round; 5 calls over 3 rounds: 2 per turn.
    assert "".join(order) == "aabbcc" + "bbccaa" + "ccaabb"
    assert pauses == [0.25] * 9  # an idle pause before every turn
    for t in timings.values():
        assert len(t.times_s) == 6 and t.min_s <= t.median_s <= t.max_s
    order.clear()
    one = harness.time_rounds({"a": backend("a")}, rounds=1, repeats=5, warmup=1, sleep=pauses.append)
    assert order == ["a"] * 6 and len(one["a"].times_s) == 5  # a warm-up call, then 5 timed


def test_thread_round_trip_is_measured_with_two_threads_and_shown_in_the_table():
    import fastrnn
    import report
    import worker

    assert worker.measure_round_trip(1, "start") is None
    ns = worker.measure_round_trip(2, "start")
    assert np.isfinite(ns) and ns > 0
    with pytest.raises(ValueError, match="rounds"):
        fastrnn._C.core_round_trip_ns(0)
    run = {"threads": 2, "cpus": [0, 1], "gemm": [], "backends": {}, "rows": [],
           "round_trip_ns": [ns, 2 * ns]}
    assert f"{ns:.0f} ns at start, {2 * ns:.0f} at end" in report.run_table(run)
    assert "thread round trip" not in report.run_table(dict(run, round_trip_ns=None))
