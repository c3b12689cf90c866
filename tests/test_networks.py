"""The LSTM and GRU references: gradients against centred differences, step() against forward(),
and, where PyTorch is installed, logits, loss, state and every gradient against nn.LSTM / nn.GRU."""

import math

import numpy as np
import pytest

from charnn.model import softmax
from charnn.networks import NETWORKS, gru, lstm
from charnn.backends.calls import Dropout, Optimiser, Windows

NETS = list(NETWORKS)                 # every cell, each in layers
INTERFACE = ("STATE_VECTORS", "param_shapes", "initial_params", "zero_state", "step", "forward",
             "loss_and_gradients", "sequence_loss", "dropout_masks")


def make_problem(net, K, m, layers, tau, dropout, seed, sigma=0.5, output=0.0):
    """A network at a generic point (weights and biases ~ N(0, sigma^2)), a random window, a
    nonzero initial state and, with dropout, masks for p = 0.3 between the layers (and for
    `output` on the top's output)."""
    rng = np.random.default_rng(seed)
    params = net.initial_params(K, m, layers, sigma, rng)
    for name, a in params.items():
        if name.startswith("b") or name == "c":
            a += sigma * rng.standard_normal(a.shape)
    state = np.tanh(rng.standard_normal((layers, net.STATE_VECTORS, m)))
    inputs, targets = rng.integers(0, K, tau), rng.integers(0, K, tau)
    masks = net.dropout_masks(0.3 if dropout else 0.0, tau, m, layers, (seed, 1, 0),
                              output=output)
    return params, inputs, targets, state, masks


def gradient_check(net, params, inputs, targets, state, masks=None, gradient_fn=None,
                   step=1e-5):
    """For every element of every parameter, the analytic gradient a against the centred
    difference n = (L(theta + step) - L(theta - step)) / (2 step), relative difference
    |a - n| / max(|a| + |n|, 1e-12). The loss is evaluated with the parameters, state and masks
    cast to extended precision (np.longdouble, a 64-bit mantissa on x86), so its rounding
    (~1e-18 of the loss) stays far below the differences looked at.

    Returns {name: (max relative difference, index, analytic, numeric) at the worst element}."""
    gradient_fn = gradient_fn or net.loss_and_gradients
    _, grads, _ = gradient_fn(params, inputs, targets, state, masks)
    wide = {name: a.astype(np.longdouble) for name, a in params.items()}
    wide_state = state.astype(np.longdouble)
    wide_masks = None if masks is None else [mask.astype(np.longdouble) for mask in masks]

    def loss():
        _, P, _ = net.forward(wide, inputs, wide_state, wide_masks)
        return -np.log(P[np.arange(len(targets)), targets]).sum()

    rows = {}
    for name, theta in wide.items():
        worst = (0.0, None, 0.0, 0.0)
        for i in np.ndindex(theta.shape):
            saved = theta[i]
            theta[i] = saved + step
            loss_plus = loss()
            theta[i] = saved - step
            loss_minus = loss()
            theta[i] = saved
            numeric = float((loss_plus - loss_minus) / (2 * step))
            analytic = float(grads[name][i])
            rel = abs(analytic - numeric) / max(abs(analytic) + abs(numeric), 1e-12)
            if rel >= worst[0]:
                worst = (rel, i, analytic, numeric)
        rows[name] = worst
    return rows


def assert_gradients_match(rows, threshold=1e-6):
    failed = [f"{name}{list(i)}: analytic {a:.10g}, numeric {n:.10g}, relative difference {rel:.2e}"
              for name, (rel, i, a, n) in rows.items() if rel > threshold]
    assert not failed, "gradient check failed for " + "; ".join(failed)


# layers and dropout: one layer has nothing to drop
STACKS = [(1, False), (2, False), (2, True), (3, False), (3, True)]


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("layers,dropout", STACKS)
@pytest.mark.parametrize("tau", [1, 7])
def test_gradients_match_centred_differences(name, layers, dropout, tau):
    net = NETWORKS[name]
    problem = make_problem(net, K=6, m=5 if layers < 3 else 4, layers=layers, tau=tau,
                           dropout=dropout, seed=100 * layers + 10 * tau + dropout)
    rows = gradient_check(net, *problem)
    assert list(rows) == list(net.param_shapes(6, 5, layers))
    assert_gradients_match(rows)


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("layers,dropout", [(1, False), (2, False), (2, True)])
def test_gradients_match_centred_differences_with_dropout_on_the_output(name, layers, dropout):
    net = NETWORKS[name]
    problem = make_problem(net, K=6, m=5, layers=layers, tau=7, dropout=dropout,
                           seed=200 + 10 * layers + dropout, output=0.4)
    assert len(problem[-1]) == layers                            # the top's mask comes last
    assert_gradients_match(gradient_check(net, *problem))


@pytest.mark.parametrize("name", NETS)
def test_gradient_check_catches_a_wrong_gradient(name):
    net = NETWORKS[name]
    m = 5
    problem = make_problem(net, K=6, m=m, layers=2, tau=5, dropout=True, seed=7)

    wrong = [n for n in net.param_shapes(6, m, 2)                # the top layer's first
             if n.endswith("1") and n.startswith("W") and n != "W_ih1"][0]   # recurrent weight

    def two_rows_sign_flipped(*args):
        # the kind of slip a hand-written backward makes: some rows of a weight negated
        loss, grads, state = net.loss_and_gradients(*args)
        grads[wrong][1:3] *= -1
        return loss, grads, state

    rows = gradient_check(net, *problem, gradient_fn=two_rows_sign_flipped)
    with pytest.raises(AssertionError, match=rf"failed for {wrong}\[\d+(, \d+)?\]") as failure:
        assert_gradients_match(rows)
    assert [n for n, row in rows.items() if row[0] > 1e-6] == [wrong], str(failure.value)


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("layers", [1, 3])
def test_step_repeated_gives_forwards_outputs_and_state(name, layers):
    net = NETWORKS[name]
    params, inputs, targets, state, _ = make_problem(net, K=6, m=5, layers=layers, tau=9,
                                                     dropout=False, seed=layers)
    _, P, state_last = net.forward(params, inputs, state)
    s = state
    for t, x in enumerate(inputs):
        s, o = net.step(params, x, s)
        np.testing.assert_allclose(softmax(o), P[t], rtol=1e-12, atol=0)
    np.testing.assert_allclose(s, state_last, rtol=1e-12, atol=1e-15)
    assert state_last.shape == (layers, net.STATE_VECTORS, 5)

    loss, grads, state_after = net.loss_and_gradients(params, inputs, targets, state)
    assert net.sequence_loss(params, inputs, targets, state)[0] == pytest.approx(loss, rel=1e-14)
    np.testing.assert_array_equal(state_after, state_last)
    assert loss == pytest.approx(-np.log(P[np.arange(9), targets]).sum(), rel=1e-14)


@pytest.mark.parametrize("name", NETS)
def test_forward_leaves_the_state_it_was_given_alone(name):
    net = NETWORKS[name]
    params, inputs, targets, state, masks = make_problem(net, 6, 4, 2, 5, True, seed=3)
    before = state.copy()
    _, _, state_last = net.forward(params, inputs, state, masks)
    net.loss_and_gradients(params, inputs, targets, state, masks)
    np.testing.assert_array_equal(state, before)
    assert not np.shares_memory(state_last, state)


@pytest.mark.parametrize("name", NETS)
def test_initial_loss_is_about_seq_length_ln_K(name):
    net = NETWORKS[name]
    K, m, layers, tau = 30, 16, 2, 20
    rng = np.random.default_rng(5)
    params = net.initial_params(K, m, layers, 0.01, rng)
    data = rng.integers(0, K, tau + 1)
    loss, state = net.sequence_loss(params, data[:-1], data[1:], net.zero_state(m, layers))
    assert loss == pytest.approx(tau * math.log(K), rel=1e-3)
    assert state.shape == (layers, net.STATE_VECTORS, m)


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_param_shapes_match_initial_params(name, dtype):
    net = NETWORKS[name]
    K, m, layers = 7, 3, 3
    G = net.GATES                                    # blocks of m rows in W_ih
    own = {"rnn": {"W_hh": (m, m)},
           "lstm": {"W_hh": (4 * m, m), "b_hh": (4 * m,)},
           "gru": {"W_hh": (3 * m, m), "b_hh": (3 * m,)},
           "mlstm": {"W_mh": (m, m), "W_hm": (4 * m, m)}}[name]
    shapes = net.param_shapes(K, m, layers)
    assert set(shapes) == {f"{w}{l}" for l in range(layers)
                           for w in ("W_ih", "b_ih", *own)} | {"V", "c"}
    assert list(shapes)[-2:] == ["V", "c"] and list(shapes)[0] == "W_ih0"
    assert shapes["W_ih0"] == (G * m, K) and shapes["W_ih2"] == (G * m, m)
    assert shapes["b_ih1"] == (G * m,)
    for w, shape in own.items():
        assert shapes[f"{w}1"] == shape
    assert shapes["V"] == (K, m) and shapes["c"] == (K,)

    params = net.initial_params(K, m, layers, 0.1, np.random.default_rng(9), dtype)
    again = net.initial_params(K, m, layers, 0.1, np.random.default_rng(9), dtype)
    assert list(params) == list(shapes)
    for key, shape in shapes.items():
        assert params[key].shape == shape and params[key].dtype == dtype
        np.testing.assert_array_equal(params[key], again[key])
    # weights drawn in param_shapes' order, one standard normal draw each
    rng = np.random.default_rng(9)
    for key, shape in shapes.items():
        if key.startswith("W") or key == "V":
            drawn = (0.1 * rng.standard_normal(shape)).astype(dtype)
            np.testing.assert_array_equal(params[key], drawn)
    assert net.zero_state(m, layers, dtype).shape == (layers, net.STATE_VECTORS, m)
    assert not net.zero_state(m, layers, dtype).any()


def test_lstm_forget_gate_bias_starts_at_one_and_other_biases_at_zero():
    m, layers = 4, 3
    params = lstm.initial_params(5, m, layers, 0.1, np.random.default_rng(0))
    for l in range(layers):
        b_ih = params[f"b_ih{l}"]
        np.testing.assert_array_equal(b_ih[m:2 * m], 1.0)          # gates i, f, g, o: f second
        assert not b_ih[:m].any() and not b_ih[2 * m:].any()
        assert not params[f"b_hh{l}"].any()
    assert not params["c"].any()
    assert not any(a.any() for n, a in gru.initial_params(5, m, layers, 0.1,
                   np.random.default_rng(0)).items() if n.startswith("b"))


def test_state_vectors_and_interface():
    assert lstm.STATE_VECTORS == 2 and gru.STATE_VECTORS == 1
    for net in NETWORKS.values():
        for attribute in INTERFACE:
            assert hasattr(net, attribute), (net.__name__, attribute)


@pytest.mark.parametrize("name", NETS)
def test_dropout_masks(name):
    net = NETWORKS[name]
    assert net.dropout_masks(0.0, 5, 4, 3, (0, 1, 0)) is None
    assert net.dropout_masks(0.5, 5, 4, 1, (0, 1, 0)) is None
    masks = net.dropout_masks(0.25, 400, 50, 3, (0, 1, 0))
    assert len(masks) == 2 and all(mask.shape == (400, 50) for mask in masks)
    for mask in masks:
        assert set(np.unique(mask)) == {0.0, 1 / 0.75}
        assert (mask == 0).mean() == pytest.approx(0.25, abs=0.01)
    assert (masks[0] != masks[1]).any()                              # each layer its own
    # the same draws for either network, and a draw depends on its coordinates alone
    other = NETWORKS["gru" if name == "lstm" else "lstm"]
    for a, b in zip(masks, other.dropout_masks(0.25, 400, 50, 3, (0, 1, 0))):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(net.dropout_masks(0.25, 7, 50, 3, (0, 1, 0))[1], masks[1][:7])
    for key in ((1, 1, 0), (0, 2, 0), (0, 1, 1), (2**32, 1, 0)):     # seed, update, lane
        assert (net.dropout_masks(0.25, 400, 50, 3, key)[0] != masks[0]).mean() > 0.3
    with pytest.raises(ValueError, match="dropout probability"):
        net.dropout_masks(1.0, 5, 4, 2, (0, 1, 0))
    # dropout on the output: the masks between layers are unchanged (all ones without p), the
    # top's is drawn as layer layers - 1's would be, with its own probability
    with_top = net.dropout_masks(0.25, 400, 50, 3, (0, 1, 0), output=0.5)
    assert len(with_top) == 3
    for a, b in zip(masks, with_top):
        np.testing.assert_array_equal(a, b)
    assert set(np.unique(with_top[2])) == {0.0, 2.0}
    assert (with_top[2] == 0).mean() == pytest.approx(0.5, abs=0.01)
    only_top = net.dropout_masks(0.0, 400, 50, 3, (0, 1, 0), output=0.5)
    assert all((mask == 1).all() for mask in only_top[:2])
    np.testing.assert_array_equal(only_top[2], with_top[2])
    one_layer = net.dropout_masks(0.25, 400, 50, 1, (0, 1, 0), output=0.5)
    assert len(one_layer) == 1 and (one_layer[0] == 0).mean() == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match="dropout probability"):
        net.dropout_masks(0.0, 5, 4, 2, (0, 1, 0), output=1.0)


def test_dropout_hash_is_fixed():
    # the masks are part of a run's definition: every backend computes this same hash
    from charnn.networks.dropout import fmix32, lane_key, mix
    assert int(fmix32(np.uint32(1))) == 0x514E28B7                   # MurmurHash3's fmix32
    assert int(mix(0, 0)) == 0x4BC0FBEB and int(mix(123456789, 987654321)) == 0xC8A1C06F
    # lane_key(5, 3, 2, 1) as dropout.py's docstring defines it, in Python's integers
    assert int(lane_key(5, 3, 2, 1)) == 0xFF1EBDBB


@pytest.mark.parametrize("name", NETS)
def test_dropout_masks_enter_only_between_layers(name):
    # all-ones masks change nothing; a zero mask cuts layer 0 off from the layers above it
    net = NETWORKS[name]
    params, inputs, targets, state, _ = make_problem(net, 6, 4, 2, 5, False, seed=11)
    _, P, last = net.forward(params, inputs, state)
    _, P_ones, last_ones = net.forward(params, inputs, state, [np.ones((5, 4))])
    np.testing.assert_array_equal(P, P_ones)
    np.testing.assert_array_equal(last, last_ones)
    _, P_cut, _ = net.forward(params, inputs, state, [np.zeros((5, 4))])
    _, grads, _ = net.loss_and_gradients(params, inputs, targets, state, [np.zeros((5, 4))])
    assert not any(grads[n].any() for n in params if n.endswith("0"))   # layer 0's, all
    _, P_other, _ = net.forward(params, (inputs + 1) % 6, state, [np.zeros((5, 4))])
    np.testing.assert_array_equal(P_cut, P_other)                    # the input no longer matters


@pytest.mark.parametrize("name", NETS)
def test_a_mask_on_the_output_enters_only_the_output_layer(name):
    # the top's mask (after the masks between layers) scales what V reads, never the state
    net = NETWORKS[name]
    params, inputs, targets, state, _ = make_problem(net, 6, 4, 2, 5, False, seed=12)
    ones, zeros = np.ones((5, 4)), np.zeros((5, 4))
    _, P, last = net.forward(params, inputs, state)
    _, P_cut, last_cut = net.forward(params, inputs, state, [ones, zeros])
    np.testing.assert_array_equal(last_cut, last)                    # the states go on as before
    c = params["c"]
    np.testing.assert_allclose(P_cut, np.tile(np.exp(c) / np.exp(c).sum(), (5, 1)))
    _, grads, _ = net.loss_and_gradients(params, inputs, targets, state, [ones, zeros])
    assert not any(grads[n].any() for n in params if n != "c")       # only c still learns
    half = np.full((5, 4), 0.5)
    _, P_half, _ = net.forward(params, inputs, state, [ones, half])
    params_half = dict(params, V=0.5 * params["V"])
    np.testing.assert_allclose(P_half, net.forward(params_half, inputs, state)[1], rtol=1e-14)


# --- against PyTorch ---------------------------------------------------------------------------

def torch_run(name, params, inputs, targets, state, masks):
    """The same network in PyTorch, float64: nn.LSTM / nn.GRU on one-hot inputs (batch of one,
    batch_first) and a Linear(m, K) holding V, c. Without masks one module of `layers` layers;
    with masks one single-layer module per layer, its output multiplied by our mask, which is
    what nn.LSTM(dropout=p) does between layers with masks of its own drawing.

    Returns the logits (tau, K), the loss, {param name: gradient} and the last state."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    Module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[name]
    layers, S, m = state.shape
    K = params["V"].shape[0]
    if masks is None:
        modules = [Module(K, m, num_layers=layers, batch_first=True, dtype=torch.float64)]
        where = {l: (modules[0], l) for l in range(layers)}
    else:
        modules = [Module(K if l == 0 else m, m, batch_first=True, dtype=torch.float64)
                   for l in range(layers)]
        where = {l: (modules[l], 0) for l in range(layers)}
    linear = torch.nn.Linear(m, K, dtype=torch.float64)
    tensors = {"V": linear.weight, "c": linear.bias}
    for l, (module, k) in where.items():
        for ours, theirs in (("W_ih", "weight_ih"), ("W_hh", "weight_hh"),
                             ("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
            tensors[f"{ours}{l}"] = getattr(module, f"{theirs}_l{k}")
    assert sorted(tensors) == sorted(params)
    with torch.no_grad():
        for n, tensor in tensors.items():
            assert tuple(tensor.shape) == params[n].shape, n
            tensor.copy_(torch.from_numpy(params[n]))

    x = F.one_hot(torch.from_numpy(inputs), K).to(torch.float64)[None]   # (1, tau, K)
    h0 = torch.from_numpy(state[:, 0].copy())[:, None]                   # (layers, 1, m)
    c0 = torch.from_numpy(state[:, 1].copy())[:, None] if S == 2 else None

    def initial(lo, hi):
        return (h0[lo:hi], c0[lo:hi]) if S == 2 else h0[lo:hi]

    if masks is None:
        out, last = modules[0](x, initial(0, layers))
        last = [last] if S == 1 else list(last)
    else:
        out, finals = x, []
        for l, module in enumerate(modules):
            out, last_l = module(out, initial(l, l + 1))
            finals.append([last_l] if S == 1 else list(last_l))
            if l < layers - 1:
                out = out * torch.from_numpy(masks[l])[None]
        last = [torch.cat([f[s] for f in finals]) for s in range(S)]
    logits = linear(out[0])                                               # (tau, K)
    loss = F.cross_entropy(logits, torch.from_numpy(targets), reduction="sum")
    loss.backward()
    grads = {n: tensor.grad.numpy() for n, tensor in tensors.items()}
    state_last = np.stack([s[:, 0].detach().numpy() for s in last], axis=1)   # (layers, S, m)
    return logits.detach().numpy(), loss.item(), grads, state_last


def relative_difference(ours, theirs):
    """max |ours - theirs| over max |theirs|: the difference relative to the tensor's scale."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-300))


@pytest.mark.parametrize("name", ["gru", "lstm"])          # the cells PyTorch has modules of
@pytest.mark.parametrize("layers,dropout", [(1, False), (2, False), (2, True), (3, True)])
def test_matches_pytorch(name, layers, dropout):
    pytest.importorskip("torch", reason="PyTorch is not installed: the comparison needs it")
    net = NETWORKS[name]
    K, m, tau = 7, 5, 11
    params, inputs, targets, state, masks = make_problem(net, K, m, layers, tau, dropout,
                                                         seed=40 + 10 * layers + dropout)
    logits, loss_torch, grads_torch, last_torch = torch_run(name, params, inputs, targets,
                                                            state, masks)

    loss, grads, state_last = net.loss_and_gradients(params, inputs, targets, state, masks)
    cache, P, _ = net.forward(params, inputs, state, masks)
    assert abs(loss - loss_torch) / abs(loss_torch) <= 1e-10
    assert relative_difference(cache["H"] @ params["V"].T + params["c"], logits) <= 1e-10
    assert relative_difference(P, softmax(logits)) <= 1e-10
    assert relative_difference(state_last, last_torch) <= 1e-10
    for n in params:
        assert relative_difference(grads[n], grads_torch[n]) <= 1e-10, n
    if masks is None:                      # step() has no dropout: compare it where none is used
        s, ours = state, []
        for x in inputs:
            s, o = net.step(params, x, s)
            ours.append(o)
        assert relative_difference(ours, logits) <= 1e-10


# -- the networks through charnn's own gradient check and command line ------------------------

@pytest.mark.parametrize("name", list(NETWORKS))
def test_the_product_gradient_check_passes_every_layer_and_names_a_wrong_one(name):
    from charnn.gradcheck import check_network_gradients, gradcheck_problem
    from charnn.networks import NETWORKS
    network, layers = NETWORKS[name], 2
    data = np.random.default_rng(5).integers(0, 6, 40)
    params, inputs, targets, states = gradcheck_problem(data, 6, hidden=4, seq_length=6,
                                                        sigma=0.5, seed=1, batch_size=2,
                                                        network=name, layers=layers)
    rows = check_network_gradients(network, params, inputs, targets, states, step=1e-5)
    assert [r.name for r in rows] == list(network.param_shapes(6, 4, layers))
    assert all(r.passed for r in rows), rows
    wrong = [n for n in network.param_shapes(6, 4, layers) if n.endswith("1")][1]

    def broken(p, x, y, state, masks=None):
        loss, grads, last = network.loss_and_gradients(p, x, y, state, masks)
        grads[wrong] = -grads[wrong]
        return loss, grads, last

    rows = check_network_gradients(network, params, inputs, targets, states, step=1e-5,
                                   gradient_fn=broken)
    assert [r.name for r in rows if not r.passed] == [wrong]


def test_the_rnn_cell_of_one_layer_is_the_assignments_model_bit_for_bit():
    from charnn import model
    from charnn.networks import rnn
    rng = np.random.default_rng(2)
    params = model.Params(rnn.initial_params(7, 5, 1, 0.3, np.random.default_rng(8)))
    assignment = model.to_assignment(params)
    drawn = model.Params.initial(5, 7, 0.3, np.random.default_rng(8))   # the same draws
    for name in model.PARAM_NAMES:
        assert np.array_equal(assignment[name], drawn[name]), name
    inputs, targets = rng.integers(0, 7, 9), rng.integers(0, 7, 9)
    h = np.tanh(rng.standard_normal(5))
    loss, grads, last = rnn.loss_and_gradients(params, inputs, targets, h.reshape(1, 1, 5))
    ref_loss, ref_grads, ref_last = model.loss_and_gradients(assignment, inputs, targets, h)
    assert loss == ref_loss and np.array_equal(last[0, 0], ref_last)
    for name, g in ref_grads.items():
        assert np.array_equal(grads[model.NETWORK_NAMES[name]], g), name
    state, o = rnn.step(params, int(inputs[0]), h.reshape(1, 1, 5))
    _, P = model.forward(assignment, inputs[:1], h)
    assert np.array_equal(model.softmax(o), P[0])


@pytest.mark.parametrize("name", NETS)
def test_charnn_gradcheck_checks_every_layer_of_a_stacked_network(name, capsys):
    from charnn.cli import main
    assert main(["gradcheck", "--model", name, "--layers", "2", "--dropout", "0.3",
                 "--seq-length", "8"]) == 0
    out = capsys.readouterr().out
    assert f"gradient check ({name} x 2 layers, numpy)" in out and "all gradients pass" in out
    names = list(NETWORKS[name].param_shapes(5, 4, 2))   # every layer's, V and c
    for param in names:
        assert f"\n{param} " in out, param
    # the compiled kernels' gradients, checked the same way
    assert main(["gradcheck", "--model", name, "--layers", "2", "--dropout", "0.3",
                 "--seq-length", "8", "--backend", "compiled"]) == 0
    out = capsys.readouterr().out
    assert f"gradient check ({name} x 2 layers, compiled)" in out and "all gradients pass" in out
    for param in names:
        assert f"\n{param} " in out, param
    # and with dropout on the top's output too, one layer or two
    for layers in ("1", "2"):
        assert main(["gradcheck", "--model", name, "--layers", layers, "--dropout", "0.3",
                     "--output-dropout", "0.4", "--seq-length", "8", "--backend",
                     "compiled"]) == 0
        out = capsys.readouterr().out
        dropped = "0.3 between layers and 0.4" if layers == "2" else "0.4"
        assert f"dropout {dropped} on the output (fixed masks)" in out
        assert "all gradients pass" in out


# -- the numpy backend runs every network ------------------------------------------------------

def _schedule(data_len, lanes, tau, updates, rng):
    starts = rng.integers(0, data_len - tau - 1, (updates, lanes)).astype(np.int64)
    lengths = np.full((updates, lanes), tau, np.int32)
    resets = np.zeros((updates, lanes), np.uint8)
    resets[0] = 1
    return starts, lengths, resets


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("optimizer", ["adagrad", "adam"])
def test_the_numpy_backend_trains_a_stacked_network(name, optimizer):
    from charnn import optim
    from charnn.backends import reference
    from charnn.model import Params
    from charnn.networks import NETWORKS, state_shape
    net, rng = NETWORKS[name], np.random.default_rng(4)
    text = np.tile(np.array([0, 1, 2, 3, 4, 2, 1, 5], np.uint8), 40)   # a pattern to learn
    params = Params(net.initial_params(6, 16, 2, 0.3, rng))
    state = optim.initial_state(optimizer, params)
    h = np.zeros((2,) + state_shape(params))
    assert h.shape == (2, 2, net.STATE_VECTORS, 16)
    starts, lengths, resets = _schedule(len(text), 2, 12, 300, rng)
    eta = 0.1 if optimizer == "adagrad" else 0.01
    losses = reference.train_updates(params, Optimiser(optimizer, state, 0, eta, 5.0), h,
                                     Windows(text, starts, lengths, resets, 0, 300),
                                     Dropout(0.1, 3))
    assert losses[0] == pytest.approx(12 * np.log(6), rel=0.3)   # about tau ln K at first
    assert losses[-10:].mean() < 0.3 * losses[0]                # then the pattern is learnt
    assert np.isfinite(h).all() and h.any()


@pytest.mark.parametrize("name", NETS)
def test_any_split_of_the_updates_gives_the_same_run_with_dropout(name):
    from charnn import optim
    from charnn.backends import reference
    from charnn.model import Params
    from charnn.networks import NETWORKS, state_shape
    net, rng = NETWORKS[name], np.random.default_rng(5)
    text = rng.integers(0, 6, 400).astype(np.uint8)
    schedule = _schedule(len(text), 3, 8, 20, rng)
    runs = []
    for cuts in ([0, 20], [0, 7, 8, 20]):
        params = Params(net.initial_params(6, 8, 2, 0.3, np.random.default_rng(1)))
        state = optim.initial_state("adam", params)
        h = np.zeros((3,) + state_shape(params))
        losses = [reference.train_updates(params, Optimiser("adam", state, a, 0.01, 5.0), h,
                                          Windows(text, *schedule, a, b), Dropout(0.3, 9))
                  for a, b in zip(cuts, cuts[1:])]
        runs.append((params, h, np.concatenate(losses)))
    (p1, h1, l1), (p2, h2, l2) = runs
    assert np.array_equal(l1, l2) and np.array_equal(h1, h2)
    for key, a in p1.items():
        assert np.array_equal(a, p2[key]), key


@pytest.mark.parametrize("name", NETS)
def test_evaluation_advance_and_sampling_follow_the_network(name):
    from charnn.backends import reference
    from charnn.model import Params
    from charnn.networks import NETWORKS
    net, rng = NETWORKS[name], np.random.default_rng(6)
    params = Params(net.initial_params(7, 5, 2, 0.5, rng))
    data = rng.integers(0, 7, 60).astype(np.int32)
    h0 = np.tanh(rng.standard_normal((2,) + net.zero_state(5, 2).shape))
    total, count = reference.total_loss(params, data, np.array([[0, 30], [30, 60]]), h0)
    expected = sum(net.sequence_loss(params, data[a:b - 1], data[a + 1:b], h0[q])[0]
                   for q, (a, b) in enumerate([(0, 30), (30, 60)]))
    assert count == 58 and total == pytest.approx(expected, rel=1e-12)
    state = h0[0]
    for x in data[:10]:
        state, _ = net.step(params, int(x), state)
    np.testing.assert_array_equal(reference.advance(params, h0[0], data[:10]), state)
    h = h0[0].copy()
    drawn = reference.sample_indices(params, h, 3, np.zeros(12), greedy=True)
    state, x = h0[0], 3
    for d in drawn:
        state, o = net.step(params, x, state)
        x = int(np.argmax(o))
        assert d == x
    np.testing.assert_array_equal(h, state)
