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


def test_char_rnn_numpy_gradients_match_torch_autograd():
    torch = pytest.importorskip("torch")
    import numpy as np

    example = load_example("char_rnn")
    rng = np.random.default_rng(0)
    model = example.CharLSTM(vocab=7, embed=3, hidden=5, layers=2, rng=rng)
    ids, targets = rng.integers(0, 7, (6, 4)), rng.integers(0, 7, (6, 4))
    loss = model.loss_and_backward(ids, targets)

    params = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
              for k, v in model.params.items()}
    lstm = torch.nn.LSTM(3, 5, num_layers=2, dtype=torch.float64)
    x = params["embedding"][torch.from_numpy(ids)]
    y, _ = torch.func.functional_call(
        lstm, {k: v for k, v in params.items() if k in dict(lstm.named_parameters())}, (x,))
    logits = y @ params["out_weight"].T + params["out_bias"]
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 7),
                                            torch.from_numpy(targets).reshape(-1))
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-5)
    assert set(model.grads) == set(params)
    for name, p in params.items():
        np.testing.assert_allclose(model.grads[name], p.grad.numpy(), rtol=1e-5, atol=1e-7,
                                   err_msg=name)
