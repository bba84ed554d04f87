"""examples/tree_expressions.py runs end to end (a few steps) and its data are right."""

import importlib.util
import pathlib

import numpy as np

import fastrnn

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "tree_expressions.py"


def load_example():
    spec = importlib.util.spec_from_file_location("tree_expressions", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_expressions_parse_to_trees_with_the_right_value_and_depth():
    ex = load_example()
    parents, value, depth = ex.parse(["-", "3", "*", "4", "+", "2", "5"])  # 3 - 4 * (2 + 5)
    assert parents.tolist() == [-1, 0, 0, 2, 2, 4, 4]
    assert (value, depth) == ((3 - 28) % 10, 3)
    rng = np.random.default_rng(0)
    for d in (0, 1, 5, 9):
        assert ex.parse(ex.random_expression(rng, d))[2] == d


def test_tree_expressions_example_smoke(capsys):
    ex = load_example()
    threads = fastrnn.get_num_threads()
    try:
        results = ex.main(["--steps", "3", "--batch", "8", "--hidden", "8", "--test-size", "16",
                           "--threads", "1"])
    finally:
        fastrnn.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "Tree-LSTM" in out and "sequence LSTM" in out and "deeper than training" in out
    for seconds, accs in results.values():
        assert seconds > 0 and all(0 <= a <= 1 for a in accs.values())
