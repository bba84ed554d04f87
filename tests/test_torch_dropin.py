"""fastrnn.torch against torch.nn: outputs, final states and every gradient for random
configurations; state dicts both ways; gradcheck; dropout semantics; bad input."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import fastrnn.torch as frt  # noqa: E402  (after the skip: it imports torch)

from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}


def make_pair(cell, input_size, hidden, *, dtype=torch.float64, **kwargs):
    """(fastrnn.torch module, torch.nn module) with the same parameters."""
    if cell.startswith("rnn"):
        kwargs["nonlinearity"] = cell[4:]
        ours, theirs = frt.RNN, torch.nn.RNN
    else:
        ours, theirs = {"lstm": (frt.LSTM, torch.nn.LSTM), "gru": (frt.GRU, torch.nn.GRU)}[cell]
    a = ours(input_size, hidden, dtype=dtype, **kwargs)
    b = theirs(input_size, hidden, dtype=dtype, **kwargs)
    b.load_state_dict(a.state_dict())
    return a, b


def random_config(seed):
    """Every cell and dtype in turn; layers, directions, batch_first, lengths, bias, projection
    drawn at random."""
    rng = random.Random(seed)
    cell = CELLS[seed % 4]
    return dict(
        cell=cell, dtype=(torch.float64, torch.float32)[(seed // 4) % 2],
        input_size=rng.randint(1, 5), hidden=rng.randint(2, 6), steps=rng.randint(1, 6),
        batch=rng.randint(1, 4), num_layers=rng.randint(1, 3), bidirectional=rng.random() < 0.5,
        batch_first=rng.random() < 0.5, packed=rng.random() < 0.5, bias=rng.random() < 0.75,
        with_hx=rng.random() < 0.6, proj=cell == "lstm" and rng.random() < 0.5)


def run_both(ours, theirs, x, hx, lengths, gen):
    """Forward both modules on the same data, backward with the same random output gradients;
    return (outputs, grads) per module."""
    results = []
    for module in (ours, theirs):
        xi = x.detach().clone().requires_grad_(True)
        hxi = None if hx is None else [h.detach().clone().requires_grad_(True) for h in hx]
        inp = xi
        if lengths is not None:
            inp = pack_padded_sequence(xi, lengths, batch_first=module.batch_first,
                                       enforce_sorted=False)
        arg = None if hxi is None else (tuple(hxi) if isinstance(module, (frt.LSTM, torch.nn.LSTM))
                                        else hxi[0])
        out, state = module(inp, arg)
        states = list(state) if isinstance(state, tuple) else [state]
        y = out.data if isinstance(out, PackedSequence) else out
        outputs = [y] + states
        torch.manual_seed(gen)
        loss = sum((o * torch.randn(o.shape, dtype=o.dtype).to(o.device)).sum() for o in outputs)
        wrt = [xi] + (hxi or []) + list(module.parameters())
        grads = torch.autograd.grad(loss, wrt)
        results.append((out, outputs, grads))
    return results


@pytest.mark.parametrize("seed", range(48))
def test_outputs_states_and_gradients_match_torch_nn(seed):
    c = random_config(seed)
    torch.manual_seed(seed)
    kwargs = dict(num_layers=c["num_layers"], bias=c["bias"], batch_first=c["batch_first"],
                  bidirectional=c["bidirectional"])
    if c["proj"]:
        kwargs["proj_size"] = c["hidden"] - 1
    ours, theirs = make_pair(c["cell"], c["input_size"], c["hidden"], dtype=c["dtype"], **kwargs)
    shape = (c["batch"], c["steps"]) if c["batch_first"] else (c["steps"], c["batch"])
    x = torch.randn(*shape, c["input_size"], dtype=c["dtype"])
    hx = None
    if c["with_hx"]:
        d = 2 if c["bidirectional"] else 1
        sizes = [kwargs.get("proj_size", c["hidden"])] + ([c["hidden"]] if c["cell"] == "lstm"
                                                          else [])
        hx = [torch.randn(c["num_layers"] * d, c["batch"], s, dtype=c["dtype"]) for s in sizes]
    lengths = None
    if c["packed"]:
        lengths = torch.randint(1, c["steps"] + 1, (c["batch"],))
        lengths[random.Random(seed).randrange(c["batch"])] = c["steps"]
    (out_a, outs_a, grads_a), (out_b, outs_b, grads_b) = run_both(ours, theirs, x, hx, lengths,
                                                                  seed)
    if c["packed"]:
        assert isinstance(out_a, PackedSequence)
        assert torch.equal(out_a.batch_sizes, out_b.batch_sizes)
        assert torch.equal(out_a.sorted_indices, out_b.sorted_indices)
        assert torch.equal(out_a.unsorted_indices, out_b.unsorted_indices)
    assert len(outs_a) == len(outs_b) and len(grads_a) == len(grads_b)
    for a, b in zip(outs_a + list(grads_a), outs_b + list(grads_b)):
        assert a.shape == b.shape and a.dtype == b.dtype
        torch.testing.assert_close(a, b, **TOL[c["dtype"]])


def test_random_configs_cover_every_feature():
    configs = [random_config(s) for s in range(48)]
    for key in ("bidirectional", "batch_first", "packed", "bias", "with_hx", "proj"):
        assert {c[key] for c in configs} == {True, False}, key
    assert {c["num_layers"] for c in configs} == {1, 2, 3}
    assert {(c["cell"], c["dtype"]) for c in configs} == {
        (cell, dt) for cell in CELLS for dt in (torch.float32, torch.float64)}


@pytest.mark.parametrize("cell", CELLS)
def test_state_dict_loads_both_ways_with_torch_nn(cell):
    kwargs = dict(num_layers=2, bidirectional=True, bias=True)
    if cell == "lstm":
        kwargs["proj_size"] = 2
    ours, theirs = make_pair(cell, 3, 4, **kwargs)
    sa, sb = ours.state_dict(), theirs.state_dict()
    assert list(sa) == list(sb)
    assert all(sa[k].shape == sb[k].shape for k in sa)
    fresh_theirs = type(theirs)(3, 4, dtype=torch.float64, **kwargs,
                                **({"nonlinearity": cell[4:]} if cell.startswith("rnn") else {}))
    fresh_theirs.load_state_dict(ours.state_dict(), strict=True)
    fresh_ours = type(ours)(3, 4, dtype=torch.float64, **kwargs,
                            **({"nonlinearity": cell[4:]} if cell.startswith("rnn") else {}))
    fresh_ours.load_state_dict(theirs.state_dict(), strict=True)
    for name, value in theirs.state_dict().items():
        assert torch.equal(fresh_ours.state_dict()[name], value)
        assert torch.equal(fresh_theirs.state_dict()[name], value)
    assert [[p.shape for p in ps] for ps in ours.all_weights] == \
        [[p.shape for p in ps] for ps in theirs.all_weights]


def test_constructor_takes_torch_nn_positional_arguments():
    ours = frt.RNN(3, 4, 2, "relu", False, True, 0.25, True)
    theirs = torch.nn.RNN(3, 4, 2, "relu", False, True, 0.25, True)
    ours_lstm = frt.LSTM(3, 4, 2, False, True, 0.25, True, 2)
    theirs_lstm = torch.nn.LSTM(3, 4, 2, False, True, 0.25, True, 2)
    for a, b in ((ours, theirs), (ours_lstm, theirs_lstm)):
        for attr in ("mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first",
                     "dropout", "bidirectional", "proj_size"):
            assert getattr(a, attr) == getattr(b, attr), attr
        assert repr(a) == repr(b)
        assert list(a.state_dict()) == list(b.state_dict())
    assert ours.nonlinearity == "relu"


def test_default_initialisation_is_uniform_in_one_over_sqrt_hidden():
    torch.manual_seed(0)
    module = frt.GRU(5, 16, num_layers=2)
    values = torch.cat([p.detach().flatten() for p in module.parameters()])
    assert values.dtype == torch.float32
    assert values.abs().max() <= 0.25 and values.abs().max() > 0.24
    assert abs(values.mean().item()) < 0.02


GRADCHECK_CASES = [
    dict(cell="rnn_tanh", num_layers=2, bidirectional=True),
    dict(cell="rnn_relu", num_layers=1, batch_first=True),
    dict(cell="gru", num_layers=2, bidirectional=True, packed=True),
    dict(cell="lstm", num_layers=2, proj_size=2, packed=True),
    dict(cell="lstm", num_layers=1, bidirectional=True, bias=False),
]


@pytest.mark.parametrize("case", GRADCHECK_CASES, ids=lambda c: "-".join(map(str, c.values())))
def test_gradcheck_float64(case):
    case = dict(case)
    cell, packed = case.pop("cell"), case.pop("packed", False)
    torch.manual_seed(1)
    module, _ = make_pair(cell, 2, 3, **case)
    names = [n for n, _ in module.named_parameters()]
    batch_first = module.batch_first
    x = torch.randn(*((2, 4) if batch_first else (4, 2)), 2, dtype=torch.float64)
    d = (2 if module.bidirectional else 1) * module.num_layers
    h0 = torch.randn(d, 2, module.proj_size or 3, dtype=torch.float64)
    c0 = torch.randn(d, 2, 3, dtype=torch.float64)
    lengths = torch.tensor([2, 4])

    def f(x, h0, c0, *params):
        inp = pack_padded_sequence(x, lengths, batch_first=batch_first,
                                   enforce_sorted=False) if packed else x
        hx = (h0, c0) if cell == "lstm" else h0
        out, state = torch.func.functional_call(module, dict(zip(names, params)), (inp, hx))
        y = out.data if packed else out
        states = state if isinstance(state, tuple) else (state,)
        return (y,) + states

    inputs = [t.clone().requires_grad_(True) for t in [x, h0, c0] + list(module.parameters())]
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_unbatched_input_matches_torch_nn(cell):
    torch.manual_seed(2)
    ours, theirs = make_pair(cell, 3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3, dtype=torch.float64)
    h0 = torch.randn(4, 4, dtype=torch.float64)
    hx = (h0, torch.randn(4, 4, dtype=torch.float64)) if cell == "lstm" else h0
    ya, sa = ours(x, hx)
    yb, sb = theirs(x, hx)
    torch.testing.assert_close(ya, yb, rtol=1e-10, atol=1e-12)
    for a, b in zip(sa if cell == "lstm" else [sa], sb if cell == "lstm" else [sb]):
        assert a.shape == b.shape == (4, 4)
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_sorted_packed_sequence_keeps_its_layout():
    torch.manual_seed(12)
    ours, theirs = make_pair("lstm", 3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3, 3, dtype=torch.float64)
    packed = pack_padded_sequence(x, torch.tensor([5, 3, 1]))       # enforce_sorted=True
    hx = (torch.randn(4, 3, 4, dtype=torch.float64), torch.randn(4, 3, 4, dtype=torch.float64))
    (ya, (ha, ca)), (yb, (hb, cb)) = ours(packed, hx), theirs(packed, hx)
    assert ya.sorted_indices is None and ya.unsorted_indices is None
    assert torch.equal(ya.batch_sizes, yb.batch_sizes)
    for a, b in ((ya.data, yb.data), (ha, hb), (ca, cb)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_gradient_through_final_state_only():
    torch.manual_seed(3)
    ours, theirs = make_pair("lstm", 3, 4, num_layers=2)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    grads = []
    for module in (ours, theirs):
        xi = x.clone().requires_grad_(True)
        _, (h_n, _) = module(xi)
        grads.append(torch.autograd.grad(h_n[-1].sum(), [xi] + list(module.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_trains_with_torch_optimizer_like_torch_nn():
    torch.manual_seed(4)
    ours, theirs = make_pair("gru", 3, 5, num_layers=2, batch_first=True)
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    target = torch.randn(4, 7, 5, dtype=torch.float64)
    losses = []
    for module in (ours, theirs):
        opt = torch.optim.Adam(module.parameters(), lr=0.05)
        history = []
        for _ in range(5):
            opt.zero_grad()
            loss = ((module(x)[0] - target) ** 2).mean()
            loss.backward()
            opt.step()
            history.append(loss.item())
        losses.append(history)
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-9)
    assert losses[0][-1] < losses[0][0]
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


# ---- dropout: torch.nn's semantics, fastrnn's masks ----------------------------------------

def test_dropout_is_off_in_eval_mode_and_matches_torch_nn():
    torch.manual_seed(5)
    ours, theirs = make_pair("lstm", 3, 4, num_layers=3, dropout=0.5)
    ours.eval()
    theirs.eval()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=1e-10, atol=1e-12)


def test_dropout_in_training_acts_between_layers_only():
    torch.manual_seed(6)
    module, _ = make_pair("gru", 3, 8, num_layers=2, dropout=0.5, bidirectional=True)
    x = torch.randn(5, 3, 3, dtype=torch.float64)
    module.eval()
    y_eval, h_eval = module(x)
    module.train()
    torch.manual_seed(7)
    y1, h1 = module(x)
    torch.manual_seed(7)
    y2, h2 = module(x)
    torch.manual_seed(8)
    y3, _ = module(x)
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)      # torch.manual_seed reproduces it
    assert not torch.allclose(y1, y3)                       # another seed, another mask
    assert not torch.allclose(y1, y_eval)                   # the mask reaches layer 2
    torch.testing.assert_close(h1[:2], h_eval[:2], rtol=1e-12, atol=1e-14)  # layer 1 untouched


def test_dropout_gradient_passes_gradcheck_with_fixed_seed():
    torch.manual_seed(9)
    module, _ = make_pair("rnn_tanh", 2, 3, num_layers=2, dropout=0.4)
    module.train()
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)

    def f(x):
        torch.manual_seed(10)
        return module(x)[0]

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_dropout_with_one_layer_warns_like_torch_nn():
    with pytest.warns(UserWarning, match="num_layers"):
        frt.LSTM(2, 3, dropout=0.5)


# ---- memory, autograd bookkeeping -------------------------------------------------------------

def test_cpu_tensors_reach_the_stack_without_copies(monkeypatch):
    import fastrnn.layers as layers
    seen = {}
    real = layers.stack_forward

    def spy(cell, x, h0=None, c0=None, weights=None, **kwargs):
        seen.update(x=x, h0=h0, c0=c0, weights=weights)
        return real(cell, x, h0=h0, c0=c0, weights=weights, **kwargs)

    monkeypatch.setattr(layers, "stack_forward", spy)
    module = frt.LSTM(3, 4, num_layers=2, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    h0, c0 = torch.randn(2, 2, 4, dtype=torch.float64), torch.randn(2, 2, 4, dtype=torch.float64)
    module(x, (h0, c0))
    assert np.shares_memory(seen["x"], x.numpy())
    assert np.shares_memory(seen["h0"], h0.numpy())
    assert np.shares_memory(seen["c0"], c0.numpy())
    for name, p in module.named_parameters():
        assert np.shares_memory(seen["weights"][name], p.detach().numpy()), name


def test_no_grad_gives_plain_outputs_equal_to_torch_nn():
    torch.manual_seed(11)
    ours, theirs = make_pair("rnn_relu", 3, 4, num_layers=2)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        ya, ha = ours(x)
        yb, hb = theirs(x)
    assert not ya.requires_grad and ya.grad_fn is None
    torch.testing.assert_close(ya, yb, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ha, hb, rtol=1e-10, atol=1e-12)


def test_changing_the_output_in_place_before_backward_raises():
    module = frt.GRU(3, 4, dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    y, _ = module(x)
    y.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_changing_a_parameter_in_place_before_backward_raises():
    module = frt.LSTM(3, 4, dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    y, _ = module(x)
    with torch.no_grad():
        module.weight_hh_l0.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_caller_tensors_are_not_modified():
    module = frt.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 2, 4, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(4, 2, 4, dtype=torch.float64, requires_grad=True)
    before = [t.detach().clone() for t in [x, h0, c0] + list(module.parameters())]
    y, (h, c) = module(x, (h0, c0))
    (y.sum() + h.sum() + c.sum()).backward()
    after = [x, h0, c0] + list(module.parameters())
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, after))


# ---- bad input ----------------------------------------------------------------------------

def test_other_devices_and_mixed_devices_get_a_clear_error():
    module = frt.GRU(3, 4)
    with pytest.raises(ValueError, match="input must be a CPU or CUDA tensor, got one on device "
                                         "meta"):
        module(torch.empty(4, 2, 3, device="meta"))
    on_meta = frt.GRU(3, 4, device="meta")
    with pytest.raises(ValueError, match="parameter weight_ih_l0 must be a CPU or CUDA tensor"):
        on_meta(torch.randn(4, 2, 3))
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="is on cpu but input is on cuda"):
            module(torch.randn(4, 2, 3, device="cuda"))


needs_gpu = pytest.mark.skipif(
    not torch.cuda.is_available() or not __import__("fastrnn.cuda").cuda.is_available(),
    reason="needs a CUDA device and fastrnn built with CUDA")


@needs_gpu
@pytest.mark.parametrize("seed", range(8))
def test_cuda_tensors_run_on_the_gpu_and_match_torch_nn(seed):
    c = random_config(seed)
    c["dtype"] = torch.float64
    torch.manual_seed(seed)
    kwargs = dict(num_layers=c["num_layers"], bias=c["bias"], batch_first=c["batch_first"],
                  bidirectional=c["bidirectional"])
    if c["proj"]:
        kwargs["proj_size"] = c["hidden"] - 1
    ours, theirs = make_pair(c["cell"], c["input_size"], c["hidden"], **kwargs)
    ours, theirs = ours.cuda(), theirs.cuda()
    shape = (c["batch"], c["steps"]) if c["batch_first"] else (c["steps"], c["batch"])
    x = torch.randn(*shape, c["input_size"], dtype=torch.float64, device="cuda")
    lengths = torch.randint(1, c["steps"] + 1, (c["batch"],)) if c["packed"] else None
    if lengths is not None:
        lengths[0] = c["steps"]
    (out_a, outs_a, grads_a), (_, outs_b, grads_b) = run_both(ours, theirs, x, None, lengths,
                                                              seed)
    for a, b in zip(outs_a + list(grads_a), outs_b + list(grads_b)):
        assert a.is_cuda and a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_bad_inputs_raise_errors_naming_the_argument():
    lstm = frt.LSTM(3, 4, num_layers=2)
    x = torch.randn(5, 2, 3)
    with pytest.raises(TypeError, match="input must have the parameters' dtype torch.float32"):
        lstm(x.double())
    with pytest.raises(ValueError, match="input_size = 3"):
        lstm(torch.randn(5, 2, 4))
    with pytest.raises(ValueError, match=r"input must have shape \(T, B, I\)"):
        lstm(torch.randn(5, 2, 3, 1))
    with pytest.raises(ValueError, match=r"h0 must have shape .* = \(2, 2, 4\), got \(1, 2, 4\)"):
        lstm(x, (torch.zeros(1, 2, 4), torch.zeros(2, 2, 4)))
    with pytest.raises(ValueError, match=r"c0 must have shape .* = \(2, 2, 4\), got \(2, 3, 4\)"):
        lstm(x, (torch.zeros(2, 2, 4), torch.zeros(2, 3, 4)))
    with pytest.raises(TypeError, match="h0 must have the parameters' dtype"):
        lstm(x, (torch.zeros(2, 2, 4, dtype=torch.float64), torch.zeros(2, 2, 4)))
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h0, c0\)"):
        lstm(x, torch.zeros(2, 2, 4))
    with pytest.raises(ValueError, match="at least one time step"):
        lstm(torch.randn(0, 2, 3))
    with pytest.raises(ValueError, match=r"h0 must have shape \(num_layers \* num_directions, "
                                         r"H_out\) = \(1, 4\), got \(1, 1, 4\)"):
        frt.GRU(3, 4)(torch.randn(5, 3), torch.zeros(1, 1, 4))
    with pytest.raises(TypeError, match="torch.Tensor or a PackedSequence"):
        frt.GRU(3, 4)(np.zeros((5, 2, 3), np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        frt.GRU(3, 4, dtype=torch.float16)(torch.randn(5, 2, 3, dtype=torch.float16))


def test_bad_constructor_arguments_raise():
    with pytest.raises(ValueError, match="proj_size"):
        frt.LSTM(3, 4, proj_size=4)
    with pytest.raises(TypeError):
        frt.GRU(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="dropout"):
        frt.GRU(3, 4, num_layers=2, dropout=1.5)
    with pytest.raises(ValueError, match="nonlinearity"):
        frt.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="hidden_size must be an int"):
        frt.RNN(3, 4.0)
    with pytest.raises(ValueError, match="must be >= 1"):
        frt.LSTM(3, 4, num_layers=0)
    with pytest.raises(TypeError, match="batch_first must be a bool"):
        frt.LSTM(3, 4, batch_first=1)


def test_import_fastrnn_does_not_import_torch():
    package_root = str(Path(__import__("fastrnn").__file__).parent.parent)
    code = "import sys, fastrnn; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=package_root)
