"""Smoke tests of the examples: a few training steps each, seconds in all."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SMALL = ["--steps", "12", "--batch", "8", "--seq", "16", "--hidden", "32", "--embed", "8",
         "--lr", "1e-2", "--sample", "25"]


def check_run(result, capsys):
    losses = result["losses"]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < losses[0] - 0.3       # it learns something in 12 steps
    assert losses[0] == pytest.approx(4.1, abs=0.3)     # starts near ln(61), a uniform guess
    assert result["sample"].startswith("When in the Course")
    assert len(result["sample"]) == len("When in the Course") + 25
    out = capsys.readouterr().out
    assert "held-out" in out and "sample:" in out


def test_char_rnn_numpy_loop_trains_and_samples(capsys):
    check_run(load_example("char_rnn").main(SMALL), capsys)


def test_char_rnn_torch_loop_trains_and_samples(capsys):
    pytest.importorskip("torch")
    check_run(load_example("char_rnn").main(SMALL + ["--torch"]), capsys)
