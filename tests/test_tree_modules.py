"""fastrnn.TreeLSTM (NumPy) and the torch.nn TreeLSTM of fastrnn._torch_tree."""

import numpy as np
import pytest

import fastrnn
from fastrnn import reference
from _tree_util import random_forest


@pytest.mark.parametrize("arity", [None, 2])
def test_numpy_tree_lstm_module_matches_reference_and_accumulates_gradients(arity):
    rng = np.random.default_rng(20)
    n, inp, hidden = 30, 4, 6
    forest = fastrnn.Forest(random_forest(rng, n, arity=arity))
    m = fastrnn.TreeLSTM(inp, hidden, arity=arity, dtype=np.float64, seed=1)
    p = m.params
    hh = (4 * hidden, hidden) if arity is None else (5 * hidden, 2 * hidden)
    assert p["weight_hh"].shape == hh
    assert np.all(np.abs(p["weight_ih"]) <= 1 / np.sqrt(hidden))
    x = rng.standard_normal((n, inp))
    h, c = m.forward(x, forest)
    want = reference.tree_lstm_forward(x, forest, p["weight_ih"], p["weight_hh"], p["bias_ih"],
                                       p["bias_hh"], arity=arity)
    np.testing.assert_allclose(h, want.h, rtol=1e-10, atol=1e-12)
    dh = rng.standard_normal((n, hidden))
    dx = m.backward(dh)
    g = reference.tree_lstm_backward(want, dh)
    np.testing.assert_allclose(dx, g.dx, rtol=1e-10, atol=1e-12)
    m.forward(x, forest)
    m.backward(dh)
    np.testing.assert_allclose(m.grads["weight_hh"], 2 * g.dw_hh, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m.grads["bias_ih"], 2 * g.db_ih, rtol=1e-10, atol=1e-12)
    m.zero_grad()
    assert all(not v.any() for v in m.grads.values())


def test_numpy_tree_lstm_state_dict_round_trip_and_checks():
    a = fastrnn.TreeLSTM(3, 5, arity=3, bias=False, seed=0)
    b = fastrnn.TreeLSTM(3, 5, arity=3, bias=False, seed=1)
    assert sorted(a.state_dict()) == ["weight_hh", "weight_ih"]
    b.load_state_dict(a.state_dict())
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    with pytest.raises(ValueError, match="keys"):
        b.load_state_dict({"weight_ih": a.params["weight_ih"]})
    bad = a.state_dict()
    bad["weight_hh"] = bad["weight_hh"][:, :5]
    with pytest.raises(ValueError, match=r"weight_hh must have shape \(30, 15\)"):
        b.load_state_dict(bad)
    with pytest.raises(ValueError, match="backward needs a forward"):
        b.backward(np.zeros((1, 5), np.float32))


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("arity", [None, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_torch_tree_lstm_gradients_match_reference(arity, bias):
    from fastrnn.torch import TreeLSTM

    rng = np.random.default_rng(21)
    n, inp, hidden = 25, 3, 4
    parents = random_forest(rng, n, arity=arity)
    m = TreeLSTM(inp, hidden, arity=arity, bias=bias, dtype=torch.float64)
    x = torch.tensor(rng.standard_normal((n, inp)), requires_grad=True)
    h, c = m(x, parents)
    a, b = rng.standard_normal((n, hidden)), rng.standard_normal((n, hidden))
    ((h * torch.from_numpy(a)).sum() + (c * torch.from_numpy(b)).sum()).backward()
    w = [None if p is None else p.detach().numpy()
         for p in (m.weight_ih, m.weight_hh, m.bias_ih, m.bias_hh)]
    want = reference.tree_lstm_forward(x.detach().numpy(), parents, *w, arity=arity)
    np.testing.assert_allclose(h.detach().numpy(), want.h, rtol=1e-10, atol=1e-12)
    g = reference.tree_lstm_backward(want, a, b)
    np.testing.assert_allclose(x.grad.numpy(), g.dx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m.weight_hh.grad.numpy(), g.dw_hh, rtol=1e-10, atol=1e-12)
    if bias:
        np.testing.assert_allclose(m.bias_hh.grad.numpy(), g.db_hh, rtol=1e-10, atol=1e-12)
    else:
        assert m.bias_ih is None and "bias_ih" not in m.state_dict()


def test_torch_tree_lstm_passes_gradcheck_and_runs_without_grad():
    from fastrnn.torch import TreeLSTM

    torch.manual_seed(0)
    forest = fastrnn.Forest.from_trees([[-1, 0, 0, 1], [-1, 0]])
    m = TreeLSTM(2, 3, dtype=torch.float64)
    x = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: torch.cat(m(x, forest), 1), (x,))
    assert torch.autograd.gradcheck(lambda w: _with_weight(m, w, x, forest),
                                    (m.weight_hh.detach().clone().requires_grad_(),))
    with torch.no_grad():
        h, c = m(x, forest)
    assert not h.requires_grad and torch.allclose(h, m(x, forest)[0])
    with pytest.raises(TypeError, match="dtype"):
        m(x.float(), forest)
    with pytest.raises(ValueError, match="x must be a CPU or CUDA tensor, got one on device meta"):
        m(x.to("meta"), forest)
    with pytest.raises(ValueError, match="parameter weight_ih must be a CPU or CUDA tensor, got one on device meta"):
        TreeLSTM(2, 3, dtype=torch.float64, device="meta")(x, forest)
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got ndarray"):
        m(x.detach().numpy(), forest)


def _with_weight(m, w, x, forest):
    from fastrnn._torch_tree import _TreeLSTMFunction

    h, c = _TreeLSTMFunction.apply(x.detach(), m.weight_ih, w, m.bias_ih, m.bias_hh,
                                   forest, m.arity, None)
    return h


@pytest.mark.parametrize("arity", [None, 2])
def test_modules_take_input_nodes_and_match_the_full_input(arity):
    # x of the input nodes only (leaves, in shuffled order) against x with a row per node.
    from fastrnn.torch import TreeLSTM as TorchTreeLSTM

    rng = np.random.default_rng(5)
    n, inp, hidden = 30, 3, 4
    parents = random_forest(rng, n, arity=arity)
    leaves = np.setdiff1d(np.arange(n), parents[parents >= 0])
    nodes = rng.permutation(leaves)
    x_in = rng.standard_normal((nodes.size, inp))
    x_full = np.zeros((n, inp))
    x_full[nodes] = x_in
    dh = rng.standard_normal((n, hidden))

    m = fastrnn.TreeLSTM(inp, hidden, arity=arity, dtype=np.float64, seed=1)
    h_full, _ = m.forward(x_full, parents)
    dx_full = m.backward(dh)
    grads_full = {k: v.copy() for k, v in m.grads.items()}
    m.zero_grad()
    h, _ = m.forward(x_in, parents, input_nodes=nodes)
    dx = m.backward(dh)
    np.testing.assert_allclose(h, h_full, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, dx_full[nodes], rtol=1e-10, atol=1e-12)
    for name, g in m.grads.items():
        np.testing.assert_allclose(g, grads_full[name], rtol=1e-10, atol=1e-12)

    t = TorchTreeLSTM(inp, hidden, arity=arity, dtype=torch.float64)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    xt = torch.tensor(x_in, requires_grad=True)
    h_t, _ = t(xt, parents, torch.from_numpy(nodes))
    (h_t * torch.from_numpy(dh)).sum().backward()
    np.testing.assert_allclose(h_t.detach().numpy(), h_full, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(xt.grad.numpy(), dx_full[nodes], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(t.weight_ih.grad.numpy(), grads_full["weight_ih"], rtol=1e-10,
                               atol=1e-12)
    with torch.no_grad():
        assert torch.equal(t(xt, parents, nodes)[0], h_t)


def test_numpy_state_dict_loads_into_the_torch_module():
    from fastrnn.torch import TreeLSTM

    a = fastrnn.TreeLSTM(3, 4, arity=2, dtype=np.float32, seed=3)
    b = TreeLSTM(3, 4, arity=2)
    b.load_state_dict({k: torch.from_numpy(v) for k, v in a.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    parents = np.array([2, 2, -1, 4, -1])
    with torch.no_grad():
        h_t, _ = b(torch.from_numpy(x), parents)
    h_n, _ = a.forward(x, parents, training=False)
    np.testing.assert_array_equal(h_t.numpy(), h_n)
