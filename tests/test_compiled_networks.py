"""The compiled stacked networks (LSTM, GRU, mLSTM) against the numpy reference (networks/lstm.py, gru.py, stack.py
and backends/reference.py), level by level: one window's loss and every gradient of every
layer, many training updates with each optimiser (dropout, short and empty lanes, resets),
evaluation, advance, sampling, float32, and the same bits on any number of threads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

import charnn
from charnn import optim
from charnn.backends import compiled, reference
from charnn.backends.compiled import stack
from charnn.model import Params
from charnn.networks import NETWORKS
from charnn.backends.calls import Dropout, Optimiser, Windows

# every cell the compiled backend registers, run on its stack (layers of any number)
CELLS = list(compiled.CELLS)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

K = 11


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def random_params(net, m, layers, rng, sigma=0.3, dtype=np.float64):
    """Weights ~ N(0, sigma^2) and random biases, so that no gate sits at its start."""
    params = Params(NETWORKS[net].initial_params(K, m, layers, sigma, rng, dtype))
    for name, a in params.items():
        if name.startswith("b") or name == "c":
            a[:] = 0.2 * rng.standard_normal(a.shape)
    return params


def random_state(net, m, layers, rng, lanes=None):
    shape = (layers, NETWORKS[net].STATE_VECTORS, m)
    return 0.5 * rng.standard_normal(shape if lanes is None else (lanes,) + shape)


def schedule(U, B, tau, n, rng):
    """Windows of uneven lengths: some lanes short, some idle (length 0), resets here and
    there; lane 0 is never idle, so every update has a lane to learn from."""
    starts = rng.integers(0, n - tau - 1, (U, B)).astype(np.int64)
    lengths = np.full((U, B), tau, np.int32)
    short = rng.random((U, B)) < 0.3
    lengths[short] = rng.integers(0, tau + 1, short.sum())
    lengths[:, 0] = np.maximum(lengths[:, 0], 1)
    resets = (rng.random((U, B)) < 0.2).astype(np.uint8)
    return starts, lengths, resets


@pytest.mark.parametrize("net", CELLS)
@pytest.mark.parametrize("layers,m,L", [(1, 13, 9), (2, 16, 1), (3, 7, 5), (2, 64, 6),
                                        (1, 128, 4)])
@pytest.mark.parametrize("dropout,output", [(0.0, 0.0), (0.4, 0.0), (0.0, 0.3), (0.4, 0.3)])
def test_loss_and_every_gradient_of_every_layer_equal_the_reference(net, layers, m, L,
                                                                    dropout, output):
    """m = 13 and 7 are no whole register tiles, 64 and 128 are (the tiled products); L = 1 is
    a one-character window; dropout between layers and on the top's output."""
    rng = np.random.default_rng([layers, m, L, int(10 * dropout)])
    params = random_params(net, m, layers, rng)
    inputs, targets = rng.integers(0, K, L), rng.integers(0, K, L)
    state = random_state(net, m, layers, rng)
    masks = NETWORKS[net].dropout_masks(dropout, L, m, layers, (3, 1, 0), output=output)
    loss, grads, last = compiled.loss_and_gradients(params, inputs, targets, state, masks)
    r_loss, r_grads, r_last = NETWORKS[net].loss_and_gradients(params, inputs, targets, state,
                                                               masks)
    assert abs(loss - r_loss) <= 1e-12 * abs(r_loss)
    assert list(grads) == list(r_grads)
    for name in r_grads:
        assert rel_err(grads[name], r_grads[name]) <= 1e-10, name
    assert rel_err(last, r_last) <= 1e-12


def train_both(net, optimizer, layers, m, B, U, tau, dropout, seed, dtype=np.float64,
               sigma=0.3, output=0.0):
    """The same updates by the compiled backend and by the reference: (compiled, reference),
    each (losses, params, optimiser state, h)."""
    rng = np.random.default_rng(seed)
    params = random_params(net, m, layers, rng, sigma, dtype=dtype)
    n = 40 * tau * B
    data = rng.integers(0, K, n).astype(np.uint8)
    starts, lengths, resets = schedule(U, B, tau, n, rng)
    h = random_state(net, m, layers, rng, B).astype(dtype)
    eta = optim.DEFAULT_ETA[optimizer]
    out = []
    for backend in (compiled, reference):
        p, state, hh = params.copy(), optim.initial_state(optimizer, params), h.copy()
        losses = backend.train_updates(p, Optimiser(optimizer, state, 4, eta, 5.0), hh,
                                       Windows(data, starts, lengths, resets, 0, U),
                                       Dropout(dropout, 77, output))
        out.append((losses, p, state, hh))
    return out


@pytest.mark.parametrize("net", CELLS)
@pytest.mark.parametrize("optimizer", optim.OPTIMIZERS)
@pytest.mark.parametrize("layers,m,B,dropout,output", [
    (1, 13, 1, 0.0, 0.0), (2, 9, 5, 0.3, 0.0), (3, 6, 3, 0.5, 0.25), (2, 32, 17, 0.2, 0.0),
    (1, 16, 4, 0.0, 0.3), (1, 12, 1, 0.0, 0.3), (2, 8, 3, 0.0, 0.4)])
def test_training_updates_equal_the_reference(net, optimizer, layers, m, B, dropout, output):
    """Losses, every parameter, the optimiser's state and the lanes' states after 6 updates:
    one lane and several (lane groups, B = 17 has a padded group), dropout between layers and
    on the top's output (one layer of the vanilla RNN then trains on the stack's kernels)."""
    (losses, p, state, h), (r_losses, r_p, r_state, r_h) = train_both(
        net, optimizer, layers, m, B, 6, 7, dropout, [layers, m, B, len(optimizer)],
        output=output)
    assert rel_err(losses, r_losses) <= 1e-10
    for name, a in r_p.items():
        assert rel_err(p[name], a) <= 1e-10, name
    for name, a in r_state.items():
        assert rel_err(state[name], a) <= 1e-9, name
    assert rel_err(h, r_h) <= 1e-10


@pytest.mark.parametrize("net", CELLS)
@pytest.mark.parametrize("optimizer", optim.OPTIMIZERS)
def test_a_thousand_updates_stay_with_the_reference(net, optimizer):
    """Rounding differences do not grow into different runs: 1,000 updates of a 2-layer
    network, 2 lanes, with dropout."""
    (losses, p, _, h), (r_losses, r_p, _, r_h) = train_both(
        net, optimizer, 2, 5, 2, 1000, 3, 0.2, [1000, len(optimizer)])
    assert rel_err(losses, r_losses) <= 1e-8
    for name, a in r_p.items():
        assert rel_err(p[name], a) <= 1e-8, name
    assert rel_err(h, r_h) <= 1e-8


@pytest.mark.parametrize("net", CELLS)
def test_evaluation_and_advance_equal_the_reference(net):
    rng = np.random.default_rng(5)
    layers, m = 2, 13
    params = random_params(net, m, layers, rng)
    data = rng.integers(0, K, 400).astype(np.int32)
    segments = np.array([[0, 90], [90, 91], [91, 250], [250, 400], [5, 5]])
    h0 = random_state(net, m, layers, rng, len(segments))
    for states in (None, h0, h0[1]):
        total, count = compiled.total_loss(params, data, segments, states)
        r_total, r_count = reference.total_loss(params, data, segments, states)
        assert count == r_count and abs(total - r_total) <= 1e-12 * abs(r_total)
    got = compiled.advance(params, h0[0], data[:40].astype(np.uint8))
    assert rel_err(got, reference.advance(params, h0[0], data[:40])) <= 1e-12


@pytest.mark.parametrize("net", CELLS)
@pytest.mark.parametrize("m, dtype", [(32, np.float32), (13, np.float64)])
def test_a_text_in_chunks_gives_the_bits_of_one_character_at_a_time(net, m, dtype):
    # evaluation and advance take a text through each layer a chunk at a time; a chunk's
    # products compute each element as a single character's do (register tiles at m = 32 in
    # float32, the loop kernels at m = 13), so any chunk gives the same bits
    rng = np.random.default_rng(8)
    params = random_params(net, m, 3, rng, dtype=dtype)
    h = random_state(net, m, 3, rng).astype(dtype)
    data = rng.integers(0, K, 300).astype(np.uint8)
    segments = np.array([[0, 300], [10, 11], [20, 150]])
    cell = compiled.CELLS[net]
    one = stack.advance(cell, params, h, data, chunk=1)
    whole = stack.total_loss(cell, params, data, segments, h, chunk=1)
    # one segment: its layers side by side on the threads, chunk after chunk (_segment_loss);
    # twice the same segment goes the way of several segments (_total_loss)
    single = stack.total_loss(cell, params, data, segments[:1], h, chunk=1)
    assert stack.total_loss(cell, params, data, segments[[0, 0]], h, chunk=1)[0] == \
        2 * single[0]
    for chunk in (7, stack.CHUNK, 1000):
        np.testing.assert_array_equal(stack.advance(cell, params, h, data, chunk=chunk), one)
        assert stack.total_loss(cell, params, data, segments, h, chunk=chunk) == whole
        assert stack.total_loss(cell, params, data, segments[:1], h, chunk=chunk) == single
    step = h.copy()                                   # and the public calls, a character a call
    for t in range(len(data)):
        step = compiled.advance(params, step, data[t:t + 1])
    np.testing.assert_array_equal(compiled.advance(params, h, data), step)
    np.testing.assert_array_equal(one, step)


@pytest.mark.parametrize("net", CELLS)
@pytest.mark.parametrize("options", [{}, {"temperature": 0.6, "top_k": 4},
                                     {"top_p": 0.8}, {"greedy": True}, {"stop_index": 3}])
def test_sampling_draws_the_same_characters(net, options):
    rng = np.random.default_rng(6)
    # sigma 0.8 gives sharp distributions; the mLSTM's products and the vanilla RNN's
    # recurrence (spectral radius 0.8 sqrt(16) = 3.2) are chaotic there (the reference's and the
    # kernels' rounding grow 1e-14 -> 1 in 150 steps), so they get smaller weights
    params = random_params(net, 16, 2, rng, sigma={"mlstm": 0.5, "rnn": 0.25}.get(net, 0.8))
    h = random_state(net, 16, 2, rng)
    uniforms = rng.random(300)
    h_ref, h_got = h.copy(), h.copy()
    ref = reference.sample_indices(params, h_ref, 1, uniforms, **options)
    got = compiled.sample_indices(params, h_got, 1, uniforms, **options)
    assert len(ref) == (300 if "stop_index" not in options else list(ref).index(3) + 1)
    np.testing.assert_array_equal(got, ref)
    assert rel_err(h_got, h_ref) <= 1e-12


@pytest.mark.parametrize("net", CELLS)
def test_float32_stays_within_float32_rounding(net):
    # the vanilla RNN at sigma 0.3 (spectral radius 1.7) is chaotic over the 500 characters
    # scored below, and float32's rounding grows with it: it gets the radius of 0.85
    sigma = 0.15 if net == "rnn" else 0.3
    (losses, p, _, h), (r_losses, r_p, _, r_h) = (
        train_both(net, "adam", 2, 32, 8, 5, 8, 0.2, 9, np.float32, sigma)[0],
        train_both(net, "adam", 2, 32, 8, 5, 8, 0.2, 9, np.float64, sigma)[1])
    assert p["V"].dtype == np.float32 and h.dtype == np.float32
    assert rel_err(losses, r_losses) <= 1e-5
    for name, a in r_p.items():
        assert rel_err(p[name], a) <= 1e-4, name
    params32 = p
    data = np.random.default_rng(1).integers(0, K, 500).astype(np.int32)
    total, _ = compiled.total_loss(params32, data, np.array([[0, 500]]))
    r_total, _ = reference.total_loss(params32.astype(np.float64), data, np.array([[0, 500]]))
    assert abs(total - r_total) <= 1e-5 * r_total


# --------------------------------------------------------------------------------------
# The same bits on any number of threads (as tests/test_kernels_threads.py for the RNN).
# --------------------------------------------------------------------------------------

def runs() -> dict[str, np.ndarray]:
    out = {}
    for net in CELLS:
        for B in (3, 8, 20):
            for dtype in (np.float64, np.float32):
                c, _ = train_both(net, "adam", 2, 32, B, 4, 6, 0.25, [B, 3], dtype)
                key = f"{net}-B{B}-{np.dtype(dtype).name}"
                out[f"{key}-losses"], out[f"{key}-h"] = c[0], c[3]
                for name, a in c[1].items():
                    out[f"{key}-{name}"] = a
        rng = np.random.default_rng(2)
        params = random_params(net, 20, 2, rng)
        data = rng.integers(0, K, 3000).astype(np.int32)
        edges = np.sort(rng.choice(3000, 30, replace=False))
        out[f"{net}-total"] = np.array(compiled.total_loss(
            params, data, np.stack([edges[:-1], edges[1:]], axis=1)))
        out[f"{net}-one-segment"] = np.array(compiled.total_loss(   # layers side by side
            params, data, np.array([[0, 3000]])))
    return out


def test_the_same_bits_in_processes_of_one_and_three_threads(tmp_path):
    results = []
    src = str(Path(charnn.__file__).resolve().parents[1])
    for threads in (1, 3):
        path = tmp_path / f"threads-{threads}.npz"
        env = {**os.environ, "NUMBA_NUM_THREADS": str(threads),
               "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run([sys.executable, __file__, str(path)], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(threads)
        with np.load(path) as f:
            results.append({key: f[key] for key in f.files})
    one, three = results
    assert one.keys() == three.keys()
    for key in one:
        assert one[key].tobytes() == three[key].tobytes(), f"{key} differs"


if __name__ == "__main__":
    np.savez(sys.argv[1], **runs())
    print(numba.get_num_threads())


# --------------------------------------------------------------------------------------
# Training sessions: what a run keeps from call to call changes no number.
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("net,layers,B,dropout,dtype", [
    ("rnn", 1, 1, 0.0, np.float64), ("rnn", 1, 5, 0.0, np.float32),
    ("lstm", 2, 5, 0.3, np.float32), ("gru", 1, 3, 0.0, np.float64),
    ("mlstm", 2, 1, 0.2, np.float64)])
def test_a_sessions_calls_give_the_bits_of_one_call(net, layers, B, dropout, dtype):
    rng = np.random.default_rng(11)
    m, U, tau = 16, 9, 7
    params = random_params(net, m, layers, rng, dtype=dtype)
    n = 40 * tau * B
    data = rng.integers(0, K, n).astype(np.uint8)
    starts, lengths, resets = schedule(U, B, tau, n, rng)
    lengths[6:] = np.minimum(lengths[6:], 3)           # the last calls' windows shorter
    lengths[2, 0] = tau + 4                            # and one longer: the scratch grows
    h = random_state(net, m, layers, rng, B).astype(dtype)
    one = params.copy(), optim.initial_state("adam", params), h.copy()
    p, state, hh = one
    expected = compiled.train_updates(p, Optimiser("adam", state, 0, 0.01, 5.0), hh,
                                      Windows(data, starts, lengths, resets, 0, U),
                                      Dropout(dropout, 5))
    p, state, hh = params.copy(), optim.initial_state("adam", params), h.copy()
    session = compiled.open_session(p, "adam", state, hh)
    losses, done = [], 0
    for count in (1, 2, 3, 1, 2):                      # calls of uneven lengths
        losses.extend(session.train_updates(p, Optimiser("adam", state, done, 0.01, 5.0), hh,
                                            Windows(data, starts, lengths, resets, done,
                                                    done + count), Dropout(dropout, 5)))
        done += count
    session.sync()
    assert np.array_equal(losses, expected)
    assert np.array_equal(hh, one[2])
    for name in params:
        assert np.array_equal(p[name], one[0][name]), name
        assert np.array_equal(state[f"m_{name}"], one[1][f"m_{name}"]), name
        assert np.array_equal(state[f"v_{name}"], one[1][f"v_{name}"]), name
    session.close()


@pytest.mark.parametrize("net,B", [("rnn", 1), ("rnn", 4), ("lstm", 4)])
def test_a_session_trains_only_the_arrays_it_was_opened_on(net, B):
    rng = np.random.default_rng(3)
    params = random_params(net, 8, 1, rng)
    state, h = optim.initial_state("adagrad", params), random_state(net, 8, 1, rng, B)
    session = compiled.open_session(params, "adagrad", state, h)
    data = rng.integers(0, K, 200).astype(np.uint8)
    starts, lengths, resets = schedule(2, B, 5, 200, rng)
    windows = Windows(data, starts, lengths, resets, 0, 2)
    with pytest.raises(ValueError, match="opened on"):
        session.train_updates(params.copy(), Optimiser("adagrad", state, 0, 0.1, 5.0), h,
                              windows)
    with pytest.raises(ValueError, match="opened on"):
        session.train_updates(params, Optimiser("adam", state, 0, 0.1, 5.0), h, windows)
    before = params.copy()
    session.train_updates(params, Optimiser("adagrad", state, 0, 0.1, 5.0), h, windows)
    session.sync()
    assert any(not np.array_equal(params[name], before[name]) for name in params)
