"""Whole networks (fastrnn.stack_forward/backward and the RNN/LSTM/GRU modules) against torch.nn:
outputs, final states and every gradient, over random configurations."""

import itertools

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastrnn
from fastrnn import stack_backward, stack_forward

TORCH_CLASS = {"rnn_tanh": torch.nn.RNN, "rnn_relu": torch.nn.RNN, "lstm": torch.nn.LSTM,
               "gru": torch.nn.GRU}
TOLERANCE = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-6)}
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


def torch_module(cell, input_size, hidden, *, layers, bidirectional, bias, proj, dtype, seed):
    torch.manual_seed(seed)
    kwargs = dict(num_layers=layers, bias=bias, bidirectional=bidirectional)
    if cell.startswith("rnn"):
        kwargs["nonlinearity"] = cell[4:]
    if proj:
        kwargs["proj_size"] = proj
    return TORCH_CLASS[cell](input_size, hidden, **kwargs).to(TORCH_DTYPE[dtype])


def torch_run(module, x, lengths, h0, c0, dy, dh_n, dc_n):
    """torch's y (padded), h_n, c_n and the gradients of sum(y*dy) + sum(h_n*dh_n) + ...."""
    module.zero_grad()
    xt = torch.tensor(x, requires_grad=True)
    hx = None
    inputs = [xt]
    if h0 is not None:
        h0t = torch.tensor(h0, requires_grad=True)
        inputs.append(h0t)
        hx = h0t
        if c0 is not None:
            c0t = torch.tensor(c0, requires_grad=True)
            inputs.append(c0t)
            hx = (h0t, c0t)
    if lengths is not None:
        packed = pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False)
        out, h = module(packed, hx)
        y, _ = pad_packed_sequence(out, total_length=x.shape[0])
    else:
        y, h = module(xt, hx)
    h_n, c_n = h if isinstance(h, tuple) else (h, None)
    loss = (y * torch.tensor(dy)).sum() + (h_n * torch.tensor(dh_n)).sum()
    if c_n is not None:
        loss = loss + (c_n * torch.tensor(dc_n)).sum()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    ins = [t.grad.numpy() for t in inputs]
    return dict(y=y.detach().numpy(), h_n=h_n.detach().numpy(),
                c_n=None if c_n is None else c_n.detach().numpy(), grads=grads, inputs=ins)


def random_lengths(rng, steps, batch):
    lengths = rng.integers(1, steps + 1, batch)
    lengths[rng.integers(batch)] = steps  # torch's pad_packed_sequence pads to the longest
    return lengths


def make_configs():
    """Two configurations per cell, dtype, direction and lengths, the rest drawn at random (sizes
    include 1 and ones past a SIMD vector), and the LSTM with everything at once."""
    rng = np.random.default_rng(2024)
    configs = []
    for cell, dtype, bidirectional, with_lengths, _ in itertools.product(
            ["rnn_tanh", "rnn_relu", "lstm", "gru"], [np.float64, np.float32], [False, True],
            [False, True], range(2)):
        hidden = int(rng.choice([1, 2, 3, 5, 8, 17]))
        configs.append(dict(
            cell=cell, dtype=dtype, bidirectional=bidirectional, with_lengths=with_lengths,
            layers=int(rng.integers(1, 4)), bias=bool(rng.integers(2)),
            proj=int(rng.integers(1, hidden)) if cell == "lstm" and hidden > 1 and rng.integers(2)
            else 0,
            steps=int(rng.integers(1, 8)), batch=int(rng.integers(1, 6)),
            input_size=int(rng.integers(1, 10)), hidden=hidden, with_h0=bool(rng.integers(2)),
            seed=int(rng.integers(1000))))
    for dtype in (np.float64, np.float32):
        configs.append(dict(cell="lstm", dtype=dtype, bidirectional=True, with_lengths=True,
                            layers=3, bias=True, proj=3, steps=6, batch=4, input_size=5,
                            hidden=9, with_h0=True, seed=1))
    return configs


CONFIGS = make_configs()


def config_id(c):
    return (f"{c['cell']}-{np.dtype(c['dtype']).name}-L{c['layers']}"
            f"{'-bi' if c['bidirectional'] else ''}{'-len' if c['with_lengths'] else ''}"
            f"{'' if c['bias'] else '-nobias'}{'-proj' if c['proj'] else ''}")


@pytest.mark.parametrize("c", CONFIGS, ids=config_id)
def test_stack_matches_torch_outputs_states_and_gradients(c):
    rng = np.random.default_rng(c["seed"])
    dtype, cell = c["dtype"], c["cell"]
    module = torch_module(cell, c["input_size"], c["hidden"], layers=c["layers"],
                          bidirectional=c["bidirectional"], bias=c["bias"], proj=c["proj"],
                          dtype=dtype, seed=c["seed"])
    d = 2 if c["bidirectional"] else 1
    s = c["proj"] or c["hidden"]
    t, b, ld = c["steps"], c["batch"], c["layers"] * d
    x = rng.standard_normal((t, b, c["input_size"])).astype(dtype)
    lengths = random_lengths(rng, t, b) if c["with_lengths"] else None
    h0 = rng.standard_normal((ld, b, s)).astype(dtype) if c["with_h0"] else None
    c0 = (rng.standard_normal((ld, b, c["hidden"])).astype(dtype)
          if c["with_h0"] and cell == "lstm" else None)
    dy = rng.standard_normal((t, b, d * s)).astype(dtype)
    if lengths is not None:  # torch's padded outputs do not depend on the input
        dy[np.arange(t)[:, None] >= lengths[None, :]] = 0
    dh_n = rng.standard_normal((ld, b, s)).astype(dtype)
    dc_n = rng.standard_normal((ld, b, c["hidden"])).astype(dtype) if cell == "lstm" else None
    expected = torch_run(module, x, lengths, h0, c0, dy, dh_n, dc_n)

    weights = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    result = stack_forward(cell, x, h0, c0, weights, num_layers=c["layers"],
                           bidirectional=c["bidirectional"], proj_size=c["proj"], lengths=lengths)
    tol = TOLERANCE[dtype]
    assert result.y.dtype == dtype and result.y.shape == (t, b, d * s)
    np.testing.assert_allclose(result.y, expected["y"], **tol)
    np.testing.assert_allclose(result.h_n, expected["h_n"], **tol)
    if cell == "lstm":
        np.testing.assert_allclose(result.c_n, expected["c_n"], **tol)
    else:
        assert result.c_n is None

    grads = stack_backward(result, dy, dh_n, dc_n)
    np.testing.assert_allclose(grads.dx, expected["inputs"][0], **tol)
    if h0 is not None:
        np.testing.assert_allclose(grads.dh0, expected["inputs"][1], **tol)
        if c0 is not None:
            np.testing.assert_allclose(grads.dc0, expected["inputs"][2], **tol)
    assert list(grads.grads) == list(expected["grads"])
    for name, g in grads.grads.items():
        np.testing.assert_allclose(g, expected["grads"][name], err_msg=name, **tol)

    # Inference mode gives the same numbers and keeps nothing for backward.
    inference = stack_forward(cell, x, h0, c0, weights, num_layers=c["layers"],
                              bidirectional=c["bidirectional"], proj_size=c["proj"],
                              lengths=lengths, training=False)
    np.testing.assert_allclose(inference.y, result.y, rtol=0, atol=0)
    np.testing.assert_allclose(inference.h_n, result.h_n, rtol=0, atol=0)


def test_steps_past_length_give_zero_outputs_and_zero_input_gradients():
    rng = np.random.default_rng(1)
    module = fastrnn.LSTM(3, 4, 2, bidirectional=True, dtype=np.float64, seed=0)
    x = rng.standard_normal((7, 3, 3))
    lengths = np.array([2, 7, 4])
    y, (h_n, c_n) = module.forward(x, lengths=lengths)
    past = np.arange(7)[:, None] >= lengths[None, :]
    assert np.all(y[past] == 0) and np.all(y[~past] != 0)
    dx, _ = module.backward(rng.standard_normal(y.shape))
    assert np.all(dx[past] == 0)
    # Values of x past a sequence's length do not matter.
    x2 = x.copy()
    x2[past] = 1e3
    y2, (h2, c2) = module(x2, lengths=lengths)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(h2, h_n)


def test_reverse_direction_starts_at_each_sequences_last_step():
    """A sequence of length L inside a longer batch gives what it gives alone."""
    rng = np.random.default_rng(2)
    module = fastrnn.GRU(2, 3, bidirectional=True, dtype=np.float64, seed=1)
    x = rng.standard_normal((6, 2, 2))
    y, h_n = module(x, lengths=[3, 6])
    y_alone, h_alone = module(x[:3, :1])
    np.testing.assert_allclose(y[:3, :1], y_alone, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(h_n[:, :1], h_alone, rtol=1e-13, atol=1e-14)


# ---- modules ------------------------------------------------------------------------------


MODULE_CASES = [
    ("RNN", dict(nonlinearity="relu", num_layers=2, bidirectional=True)),
    ("LSTM", dict(num_layers=3, batch_first=True, proj_size=2)),
    ("LSTM", dict(num_layers=1, bidirectional=True, bias=False)),
    ("GRU", dict(num_layers=2, batch_first=True, bidirectional=True)),
]


@pytest.mark.parametrize("name, kwargs", MODULE_CASES)
def test_module_matches_torch_module(name, kwargs):
    rng = np.random.default_rng(3)
    torch.manual_seed(0)
    reference = getattr(torch.nn, name)(3, 4, **kwargs).double()
    module = getattr(fastrnn, name)(3, 4, **kwargs, dtype=np.float64, seed=5)
    module.load_state_dict(reference.state_dict())  # a torch state dict loads as is
    batch_first = kwargs.get("batch_first", False)
    x = rng.standard_normal((2, 5, 3) if batch_first else (5, 2, 3))
    lstm = name == "LSTM"
    xt = torch.tensor(x, requires_grad=True)
    lengths = np.array([3, 5]) if kwargs.get("bidirectional") else None
    if lengths is None:
        y_ref, h_ref = reference(xt)
    else:
        packed = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=batch_first,
                                      enforce_sorted=False)
        out, h_ref = reference(packed)
        y_ref, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=5)
    y, h = module.forward(x, lengths=lengths)
    np.testing.assert_allclose(y, y_ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    h_pairs = zip(h, h_ref) if lstm else [(h, h_ref)]
    for mine, theirs in h_pairs:
        np.testing.assert_allclose(mine, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    (y_ref * torch.tensor(dy)).sum().backward()
    dx, dhx = module.backward(dy)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    if lstm:
        assert isinstance(dhx, tuple) and len(dhx) == 2
    for key, p in reference.named_parameters():
        np.testing.assert_allclose(module.grads[key], p.grad.numpy(), rtol=1e-10, atol=1e-12)
    # ... and back: torch loads the module's state dict.
    other = getattr(torch.nn, name)(3, 4, **kwargs).double()
    other.load_state_dict({k: torch.from_numpy(v) for k, v in module.state_dict().items()})
    np.testing.assert_allclose(other(torch.tensor(x))[0].detach().numpy(), module(x)[0],
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_module_unbatched_input_and_hx_match_torch(name):
    rng = np.random.default_rng(4)
    torch.manual_seed(1)
    reference = getattr(torch.nn, name)(2, 3, num_layers=2, bidirectional=True).double()
    module = getattr(fastrnn, name)(2, 3, num_layers=2, bidirectional=True, dtype=np.float64)
    module.load_state_dict(reference.state_dict())
    x = rng.standard_normal((4, 2))
    h0 = rng.standard_normal((4, 3))
    c0 = rng.standard_normal((4, 3))
    lstm = name == "LSTM"
    xt, h0t, c0t = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    y_ref, h_ref = reference(xt, (h0t, c0t) if lstm else h0t)
    y, h = module.forward(x, (h0, c0) if lstm else h0)
    assert y.shape == (4, 6)
    np.testing.assert_allclose(y, y_ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    h_n, h_n_ref = (h[0], h_ref[0]) if lstm else (h, h_ref)
    assert h_n.shape == (4, 3)
    np.testing.assert_allclose(h_n, h_n_ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    dy, dh_n = rng.standard_normal(y.shape), rng.standard_normal(h_n.shape)
    ((y_ref * torch.tensor(dy)).sum() + (h_n_ref * torch.tensor(dh_n)).sum()).backward()
    dx, dhx = module.backward(dy, dh_n)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    dh0 = dhx[0] if lstm else dhx
    np.testing.assert_allclose(dh0, h0t.grad.numpy(), rtol=1e-10, atol=1e-12)
    if lstm:
        np.testing.assert_allclose(dhx[1], c0t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_module_backward_accumulates_and_zero_grad_clears():
    module = fastrnn.GRU(2, 3, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 2, 2))
    y, _ = module.forward(x)
    module.backward(np.ones_like(y))
    once = {k: g.copy() for k, g in module.grads.items()}
    assert all(np.any(g != 0) for g in once.values())
    module.backward(np.ones_like(y))
    for k, g in module.grads.items():
        np.testing.assert_allclose(g, 2 * once[k], rtol=1e-14)
    module.zero_grad()
    assert all(np.all(g == 0) for g in module.grads.values())


def test_module_inference_call_does_not_disturb_training_forward():
    module = fastrnn.LSTM(2, 3, dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 2))
    y, _ = module.forward(x)
    dy = rng.standard_normal(y.shape)
    dx, _ = module.backward(dy)
    module.forward(x)
    module(rng.standard_normal((3, 5, 2)))  # an inference call in between
    dx2, _ = module.backward(dy)
    np.testing.assert_array_equal(dx, dx2)


def test_module_initialisation_is_uniform_in_torchs_bound_and_seeded():
    a = fastrnn.LSTM(5, 16, 2, bidirectional=True, proj_size=4, seed=7)
    b = fastrnn.LSTM(5, 16, 2, bidirectional=True, proj_size=4, seed=7)
    c = fastrnn.LSTM(5, 16, 2, bidirectional=True, proj_size=4, seed=8)
    reference = torch.nn.LSTM(5, 16, 2, bidirectional=True, proj_size=4)
    assert list(a.params) == list(reference.state_dict())
    values = np.concatenate([p.ravel() for p in a.params.values()])
    assert values.dtype == np.float32
    assert np.abs(values).max() <= 0.25 and np.abs(values).max() > 0.24
    assert abs(values.mean()) < 0.01 and abs(values.std() - 0.25 / np.sqrt(3)) < 0.01
    for k in a.params:
        assert a.params[k].shape == tuple(reference.state_dict()[k].shape)
        np.testing.assert_array_equal(a.params[k], b.params[k])
        assert not np.array_equal(a.params[k], c.params[k])


def test_caller_arrays_are_not_modified():
    rng = np.random.default_rng(0)
    module = fastrnn.LSTM(2, 3, 2, bidirectional=True, dtype=np.float64, seed=0)
    weights = module.state_dict()
    x, h0, c0 = rng.standard_normal((4, 2, 2)), rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 3))
    lengths = np.array([2, 4])
    dy = rng.standard_normal((4, 2, 6))
    copies = [a.copy() for a in (x, h0, c0, lengths, dy)] + [w.copy() for w in weights.values()]
    r = stack_forward("lstm", x, h0, c0, weights, num_layers=2, bidirectional=True, lengths=lengths,
                      dropout=0.5, seed=1)
    stack_backward(r, dy, h0, c0)
    for before, after in zip(copies, [x, h0, c0, lengths, dy] + list(weights.values())):
        np.testing.assert_array_equal(before, after)


# ---- dropout ------------------------------------------------------------------------------


def dropout_probe(dropout, seed, steps=50, batch=20, hidden=10):
    """A 2-layer ReLU RNN whose second layer passes its input through (W_ih = I, W_hh = 0) and
    whose first layer's outputs are all positive, so that y = mask * (first layer's output)."""
    weights = {
        "weight_ih_l0": np.zeros((hidden, 1)), "weight_hh_l0": np.zeros((hidden, hidden)),
        "bias_ih_l0": np.linspace(1, 2, hidden), "bias_hh_l0": np.zeros(hidden),
        "weight_ih_l1": np.eye(hidden), "weight_hh_l1": np.zeros((hidden, hidden)),
        "bias_ih_l1": np.zeros(hidden), "bias_hh_l1": np.zeros(hidden),
    }
    x = np.zeros((steps, batch, 1))
    r = stack_forward("rnn_relu", x, None, None, weights, num_layers=2, bidirectional=False,
                      dropout=dropout, seed=seed)
    return r.y / np.linspace(1, 2, hidden)


def test_dropout_zeroes_a_fraction_p_and_scales_the_rest():
    ratio = dropout_probe(0.3, seed=11)
    kept = ratio != 0
    assert abs(1 - kept.mean() - 0.3) < 0.03
    np.testing.assert_allclose(ratio[kept], 1 / 0.7, rtol=1e-12)
    np.testing.assert_array_equal(dropout_probe(0.3, seed=11), ratio)  # seeded
    assert not np.array_equal(dropout_probe(0.3, seed=12), ratio)
    assert np.all(dropout_probe(1.0, seed=11) == 0)
    np.testing.assert_allclose(dropout_probe(0.0, seed=11), 1, rtol=1e-12)


def test_dropout_only_in_training():
    rng = np.random.default_rng(5)
    torch.manual_seed(0)
    reference = torch.nn.GRU(3, 4, num_layers=3, dropout=0.5).double().eval()
    module = fastrnn.GRU(3, 4, num_layers=3, dropout=0.5, dtype=np.float64)
    module.load_state_dict(reference.state_dict())
    x = rng.standard_normal((5, 2, 3))
    y, _ = module(x)
    np.testing.assert_allclose(y, reference(torch.tensor(x))[0].detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    y_train, _ = module.forward(x)
    assert not np.allclose(y_train, y)
    y_eval, _ = module.forward(x, training=False)
    np.testing.assert_array_equal(y_eval, y)


def test_dropout_gradients_match_central_differences():
    rng = np.random.default_rng(6)
    module = fastrnn.LSTM(2, 3, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    weights = module.state_dict()
    x = rng.standard_normal((4, 3, 2))
    lengths = np.array([4, 2, 3])
    dy = rng.standard_normal((4, 3, 6))

    def loss(x, weights):
        r = stack_forward("lstm", x, None, None, weights, num_layers=2, bidirectional=True,
                          lengths=lengths, dropout=0.4, seed=3)
        return float(np.sum(r.y * dy))

    r = stack_forward("lstm", x, None, None, weights, num_layers=2, bidirectional=True,
                      lengths=lengths, dropout=0.4, seed=3)
    g = stack_backward(r, dy)
    eps = 1e-6
    for index in [(0, 0, 0), (1, 2, 1), (3, 0, 1)]:
        xp, xm = x.copy(), x.copy()
        xp[index] += eps
        xm[index] -= eps
        numeric = (loss(xp, weights) - loss(xm, weights)) / (2 * eps)
        assert abs(numeric - g.dx[index]) < 1e-7 * max(1, abs(numeric))
    for name in ["weight_ih_l1", "weight_hh_l0_reverse", "bias_ih_l1_reverse"]:
        index = (1,) * weights[name].ndim
        wp = {k: v.copy() for k, v in weights.items()}
        wm = {k: v.copy() for k, v in weights.items()}
        wp[name][index] += eps
        wm[name][index] -= eps
        numeric = (loss(x, wp) - loss(x, wm)) / (2 * eps)
        assert abs(numeric - g.grads[name][index]) < 1e-7 * max(1, abs(numeric)), name


# ---- threads and clipping -----------------------------------------------------------------


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_small_layer_with_lengths_and_projection_on_two_threads_matches_torch(cell):
    # Small enough that the steps run on one thread and the input projection on the other, with
    # sequences of several lengths (steps of fewer rows) and, for the LSTM, proj_size.
    rng = np.random.default_rng(11)
    t, b, i, h, proj = 90, 3, 4, 10, (6 if cell == "lstm" else 0)
    module = torch_module(cell, i, h, layers=1, bidirectional=False, bias=True, proj=proj,
                          dtype=np.float64, seed=11)
    s = proj or h
    x = rng.standard_normal((t, b, i))
    lengths = np.array([t, 37, 61])
    dy = rng.standard_normal((t, b, s))
    dy[np.arange(t)[:, None] >= lengths[None, :]] = 0
    dh_n = rng.standard_normal((1, b, s))
    dc_n = rng.standard_normal((1, b, h)) if cell == "lstm" else None
    expected = torch_run(module, x, lengths, None, None, dy, dh_n, dc_n)
    weights = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    before = fastrnn.get_num_threads()
    try:
        fastrnn.set_num_threads(2)
        result = stack_forward(cell, x, None, None, weights, num_layers=1, bidirectional=False,
                               proj_size=proj, lengths=lengths)
        inference = stack_forward(cell, x, None, None, weights, num_layers=1, bidirectional=False,
                                  proj_size=proj, lengths=lengths, training=False)
        grads = stack_backward(result, dy, dh_n, dc_n)
    finally:
        fastrnn.set_num_threads(before)
    tol = TOLERANCE[np.float64]
    np.testing.assert_allclose(result.y, expected["y"], **tol)
    np.testing.assert_allclose(result.h_n, expected["h_n"], **tol)
    np.testing.assert_allclose(inference.y, result.y, rtol=0, atol=0)
    np.testing.assert_allclose(inference.h_n, result.h_n, rtol=0, atol=0)
    np.testing.assert_allclose(grads.dx, expected["inputs"][0], **tol)
    for name, g in grads.grads.items():
        np.testing.assert_allclose(g, expected["grads"][name], err_msg=name, **tol)


def test_one_thread_and_two_give_the_same_results():
    rng = np.random.default_rng(7)
    module = fastrnn.LSTM(3, 8, num_layers=2, bidirectional=True, proj_size=3, dtype=np.float64)
    x = rng.standard_normal((9, 5, 3))
    lengths = rng.integers(1, 10, 5)
    dy = rng.standard_normal((9, 5, 6))
    before = fastrnn.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            fastrnn.set_num_threads(n)
            r = stack_forward("lstm", x, None, None, module.params, num_layers=2,
                              bidirectional=True, proj_size=3, lengths=lengths)
            results.append((r.y, r.h_n, stack_backward(r, dy).grads))
    finally:
        fastrnn.set_num_threads(before)
    (y1, h1, g1), (y2, h2, g2) = results
    np.testing.assert_allclose(y1, y2, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(h1, h2, rtol=1e-13, atol=1e-15)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(max_norm):
    rng = np.random.default_rng(8)
    grads = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
    tensors = [torch.tensor(g) for g in grads.values()]
    params = [torch.nn.Parameter(torch.zeros_like(t)) for t in tensors]
    for p, t in zip(params, tensors):
        p.grad = t.clone()
    expected = torch.nn.utils.clip_grad_norm_(params, max_norm)
    norm = fastrnn.clip_grad_norm(grads, max_norm)
    assert abs(norm - float(expected)) < 1e-12 * float(expected)
    for p, g in zip(params, grads.values()):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-14)
    if max_norm < norm:
        total = np.sqrt(sum(np.sum(g ** 2) for g in grads.values()))
        assert abs(total - max_norm) < 1e-5


@pytest.mark.parametrize("isa", ["base", "avx2", "avx512"])
def test_wide_layers_on_several_threads_match_torch(isa):
    """Sizes at which the kernels' loops split over threads, inside each direction's share."""
    if isa not in fastrnn._C.isa_supported().split(","):
        pytest.skip(f"{isa} is not available here")
    rng = np.random.default_rng(9)
    torch.manual_seed(2)
    reference = torch.nn.LSTM(16, 40, num_layers=2, bidirectional=True, proj_size=24).double()
    module = fastrnn.LSTM(16, 40, num_layers=2, bidirectional=True, proj_size=24,
                          dtype=np.float64)
    module.load_state_dict(reference.state_dict())
    x = rng.standard_normal((5, 64, 16))
    lengths = rng.integers(1, 6, 64)
    lengths[0] = 5
    xt = torch.tensor(x, requires_grad=True)
    out, (h_ref, _) = reference(pack_padded_sequence(xt, torch.tensor(lengths),
                                                     enforce_sorted=False))
    y_ref, _ = pad_packed_sequence(out, total_length=5)
    dy = rng.standard_normal(y_ref.shape)
    (y_ref * torch.tensor(dy)).sum().backward()
    before_threads, before_isa = fastrnn.get_num_threads(), fastrnn._C.isa()
    try:
        fastrnn.set_num_threads(4)
        fastrnn._C.set_isa(isa)
        y, (h_n, _) = module.forward(x, lengths=lengths)
        dx, _ = module.backward(dy)
    finally:
        fastrnn.set_num_threads(before_threads)
        fastrnn._C.set_isa(before_isa)
    np.testing.assert_allclose(y, y_ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_n, h_ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for key, p in reference.named_parameters():
        np.testing.assert_allclose(module.grads[key], p.grad.numpy(), rtol=1e-10, atol=1e-12)
