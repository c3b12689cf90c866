"""The torch backend against the numpy reference: the same losses, gradients, updates, dropout
masks and checkpoints, for every network (on the CPU, in float64)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason='PyTorch is not installed (pip install -e ".[torch]")')

from charnn import TrainConfig, Trainer, load_checkpoint, load_corpus, resume_trainer  # noqa: E402
from charnn import optim  # noqa: E402
from charnn.backends import get_backend, import_backend  # noqa: E402
from charnn.model import Params  # noqa: E402
from charnn.networks import NETWORKS, Network, dropout as charnn_dropout, state_shape  # noqa: E402
from charnn.backends.calls import Dropout, Optimiser, Windows

pytorch = get_backend("torch")
reference = get_backend("numpy")
torch.set_num_threads(1)            # the suite shares its cores; results do not depend on it

K, M, B, S = 9, 6, 5, 7
# (cell, layers, dropout between layers, dropout on the top's output)
NETS = [("rnn", 1, 0.0, 0.0), ("rnn", 2, 0.0, 0.3), ("lstm", 1, 0.0, 0.3), ("lstm", 2, 0.0, 0.0),
        ("lstm", 3, 0.4, 0.2), ("gru", 1, 0.0, 0.0), ("gru", 2, 0.3, 0.0), ("gru", 3, 0.0, 0.3),
        ("mlstm", 1, 0.0, 0.0), ("mlstm", 2, 0.3, 0.3)]


def network_params(model, layers, seed=1, sigma=0.4):
    return Params(NETWORKS[model].initial_params(K, M, layers, sigma, np.random.default_rng(seed)))


def schedule(rng, n, data_len):
    """n updates of B lanes with windows of different lengths, lanes sitting out (length 0),
    and resets."""
    starts = rng.integers(0, data_len - S - 1, (n, B))
    lengths = rng.integers(0, S + 1, (n, B))
    lengths[:, 0] = S                                     # at least one lane runs
    resets = (rng.random((n, B)) < 0.3).astype(np.uint8)
    return starts, lengths, resets


def reference_gradients(params, h, data, starts, lengths, resets, update, dropout):
    """One update's loss and gradient by the reference networks, a lane at a time, and the
    states after it (h changes in place)."""
    network = Network.of_params(params).module
    layers = 1 if h.ndim == 2 else h.shape[1]
    grads = {name: np.zeros_like(a) for name, a in params.items()}
    total, active = 0.0, 0
    for lane in range(B):
        L, s = int(lengths[lane]), int(starts[lane])
        if L == 0:
            continue
        if resets[lane]:
            h[lane] = 0
        masks = network.dropout_masks(dropout.p, L, M, layers, (dropout.seed, update, lane),
                                      output=dropout.output)
        state = h[lane].reshape(1, 1, M) if h.ndim == 2 else h[lane]
        loss, g, last = network.loss_and_gradients(params, data[s:s + L], data[s + 1:s + L + 1],
                                                   state, masks)
        h[lane] = last.reshape(h[lane].shape)
        for name in grads:
            grads[name] += g[name]
        total += loss
        active += 1
    return total / active, {name: g / active for name, g in grads.items()}


@pytest.mark.parametrize("model,layers,p,output", NETS)
def test_loss_and_every_gradient_equal_the_reference_in_float64(model, layers, p, output):
    rng = np.random.default_rng(3)
    data = rng.integers(0, K, 300).astype(np.uint8)
    params = network_params(model, layers)
    h = rng.uniform(-0.5, 0.5, (B,) + state_shape(params))
    starts, lengths, resets = schedule(rng, 3, len(data))
    session = pytorch.open_session(params, "adagrad", optim.initial_state("adagrad", params),
                                   h, device="cpu", dropout=Dropout(p, 11, output))
    h_ref = h.copy()
    for u in range(3):                                   # states carried from update to update
        loss, active = session.update_gradients(data, starts[u], lengths[u], resets[u], u + 1,
                                                Dropout(p, 11, output))
        want_loss, want = reference_gradients(params, h_ref, data, starts[u], lengths[u],
                                              resets[u], u + 1, Dropout(p, 11, output))
        assert float(loss) / active == pytest.approx(want_loss, rel=1e-10)
        for name, param in zip(session.names, session.train_params):
            got = param.grad.numpy()
            scale = np.abs(want[name]).max()
            assert scale > 0, name
            assert np.abs(got - want[name]).max() <= 1e-10 * scale, (name, u)
            param.grad = None
    session.sync()
    np.testing.assert_allclose(h, h_ref, rtol=0, atol=1e-12)
    session.close()


@pytest.mark.parametrize("model,layers,p,output,optimizer", [
    ("rnn", 1, 0.0, 0.0, "adagrad"), ("lstm", 2, 0.3, 0.0, "adam"),
    ("gru", 2, 0.0, 0.2, "rmsprop"), ("mlstm", 2, 0.3, 0.3, "adam"),
    ("lstm", 1, 0.0, 0.3, "adam")])
def test_two_hundred_updates_agree_with_the_reference(model, layers, p, output, optimizer):
    rng = np.random.default_rng(4)
    data = rng.integers(0, K, 400).astype(np.uint8)
    starts, lengths, resets = schedule(rng, 200, len(data))
    runs = []
    for backend in (reference, pytorch):
        params = network_params(model, layers, sigma=0.2)
        state = optim.initial_state(optimizer, params)
        h = np.zeros((B,) + state_shape(params))
        eta = {"adagrad": 0.02, "rmsprop": 0.002, "adam": 0.002}[optimizer]
        losses = np.concatenate([                         # split into calls as the trainer does
            backend.train_updates(params, Optimiser(optimizer, state, first, eta, 5.0), h,
                                  Windows(data, starts, lengths, resets, first, last),
                                  Dropout(p, 3, output))
            for first, last in ((0, 1), (1, 60), (60, 200))])
        runs.append((losses, params, state, h))
    (l0, p0, s0, h0), (l1, p1, s1, h1) = runs
    start = network_params(model, layers, sigma=0.2)
    assert max(np.abs(p0[n] - a).max() for n, a in start.items()) > 0.05   # they moved
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    for name, a in p0.items():
        np.testing.assert_allclose(p1[name], a, rtol=1e-6, atol=1e-8, err_msg=name)
    for name, a in s0.items():
        np.testing.assert_allclose(s1[name], a, rtol=1e-6, atol=1e-10, err_msg=name)
    np.testing.assert_allclose(h1, h0, rtol=1e-6, atol=1e-8)


def test_dropout_masks_are_the_hash_of_dropout_py_bit_for_bit():
    lanes = torch.tensor([0, 3, 17, 2**20 + 5])
    for seed, update in ((0, 1), (123, 77), (2**40 + 9, 2**31 + 3)):
        for p, output in ((0.37, 0.0), (0.37, 0.21), (0.0, 0.21)):
            got = pytorch.dropout_masks(Dropout(p, seed, output), 4, 11, 3, update, lanes,
                                        torch.float64)
            for i, lane in enumerate(lanes.tolist()):
                want = charnn_dropout.dropout_masks(p, 4, 11, 3, (seed, update, lane),
                                                    output=output)
                assert len(got) == len(want) == (3 if output else 2)
                for l in range(len(want)):
                    np.testing.assert_array_equal(got[l][:, i].numpy(), want[l])


@pytest.mark.parametrize("optimizer", optim.OPTIMIZERS)
def test_the_update_rules_are_charnns(optimizer):
    """step_ on tensors is optim.step_; and where torch.optim's rule is the same (Adam) it
    agrees with it, where it is not (eps inside the square root) it does not."""
    rng = np.random.default_rng(6)
    theta, state = rng.standard_normal(50), {"m_x": np.zeros(50), "v_x": np.zeros(50)}
    t_theta = torch.tensor(theta)
    slots = {"m": [torch.zeros(50)], "v": [torch.zeros(50)]}
    slots = {k: [s.double() for s in v] for k, v in slots.items()}
    theirs = torch.tensor(theta, requires_grad=True)
    torch_rule = {"adagrad": lambda p: torch.optim.Adagrad(p, lr=0.1, eps=optim.EPS),
                  "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.1, alpha=optim.RMSPROP_GAMMA,
                                                           eps=optim.EPS),
                  "adam": lambda p: torch.optim.Adam(p, lr=0.1, eps=optim.EPS)}[optimizer]([theirs])
    for t in range(1, 6):
        g = rng.standard_normal(50) * 1e-3                 # small: where eps matters
        optim.step_(optimizer, Params(x=theta), Params(x=g), state, 0.1, t)
        pytorch.step_(optimizer, [t_theta], [torch.tensor(g)], slots, 0.1, t)
        theirs.grad = torch.tensor(g)
        torch_rule.step()
    np.testing.assert_allclose(t_theta.numpy(), theta, rtol=1e-13)
    differs = np.abs(theirs.detach().numpy() - theta).max()
    assert (differs < 1e-12) if optimizer == "adam" else (differs > 1e-6)


@pytest.mark.parametrize("model,layers", [("rnn", 1), ("lstm", 2), ("gru", 3), ("mlstm", 2)])
def test_total_loss_and_single_sequence_gradients_equal_the_reference(model, layers):
    rng = np.random.default_rng(8)
    data = rng.integers(0, K, 3000).astype(np.uint8)
    params = network_params(model, layers)
    segments = np.array([[0, 2500], [100, 101], [40, 60], [2000, 2990], [5, 7]])
    shape = state_shape(params)
    for h0 in (None, rng.uniform(-0.5, 0.5, shape),
               rng.uniform(-0.5, 0.5, (len(segments),) + shape)):
        got, want = pytorch.total_loss(params, data, segments, h0), \
            reference.total_loss(params, data, segments, h0)
        assert got[1] == want[1]
        assert got[0] == pytest.approx(want[0], rel=1e-11)
    h = rng.uniform(-0.5, 0.5, shape)
    got = pytorch.loss_and_gradients(params, data[:20], data[1:21], h)
    network = NETWORKS[model]
    want = network.loss_and_gradients(params, data[:20], data[1:21],
                                      h.reshape(1, 1, M) if model == "rnn" else h)
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    for name, g in want[1].items():
        np.testing.assert_allclose(got[1][name], g, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got[2].reshape(-1), want[2].reshape(-1), rtol=1e-12)


# -- checkpoints across backends ---------------------------------------------------------------

SMALL = dict(hidden=8, batch_size=3, seq_length=10, sample_every=20, sample_length=30,
             log_every=10, checkpoint_every=20, seed=2, val_frac=0.1, eval_every=20)


def cpu_backend(model):
    """The compiled backend where it runs `model`, else the numpy one."""
    return "compiled" if model in import_backend("compiled").NETWORKS else "numpy"


@pytest.mark.parametrize("model,layers,dropout", [("rnn", 1, 0.0), ("lstm", 2, 0.25),
                                                  ("gru", 2, 0.0), ("mlstm", 2, 0.25)])
def test_runs_move_between_torch_and_the_cpu_backends(tiny_text_file, tmp_path, model, layers,
                                                      dropout):
    """Trained by torch and resumed by the compiled (or numpy) backend, and the reverse: the
    same model as one uninterrupted run; and either backend scores and samples it alike."""
    corpus = load_corpus(tiny_text_file)
    other = cpu_backend(model)
    config = dict(SMALL, model=model, layers=layers, dropout=dropout, updates=40,
                  optimizer="adam", eta=0.01)
    Trainer(corpus, TrainConfig(**config, backend=other), tmp_path / "whole").run()
    for first, then in (("torch", other), (other, "torch")):
        run = tmp_path / f"{first}-{then}"
        device = "cpu" if first == "torch" else "auto"
        Trainer(corpus, TrainConfig(**dict(config, updates=20), backend=first, device=device),
                run).run()
        resume_trainer(run, updates=40, backend=then).run()
        whole, split = load_checkpoint(tmp_path / "whole"), load_checkpoint(run)
        assert split.meta["state"]["iteration"] == 40
        for name, a in whole.params.items():
            np.testing.assert_allclose(split.params[name], a, rtol=1e-9, atol=1e-12,
                                       err_msg=f"{first} then {then}: {name}")
        np.testing.assert_allclose(split.h, whole.h, rtol=1e-9, atol=1e-12)

    import charnn
    text = tiny_text_file.read_text()[:600]
    on_torch, on_cpu = charnn.load(tmp_path / "torch-" f"{other}", "torch"), \
        charnn.load(tmp_path / "torch-" f"{other}", other)
    assert on_torch.evaluate(text).nats == pytest.approx(on_cpu.evaluate(text).nats, rel=1e-10)
    assert on_torch.generate(80, prime="All:", seed=3) == on_cpu.generate(80, prime="All:", seed=3)
