"""The compiled kernels against the numpy reference (model.py, backends/reference.py),
level by level: one window's loss and gradients, many training updates, evaluation, advance,
sampling.

The tests build the assignment's parameters (model.Params: b, c, U, W, V) and hand the
backends to_network(params): the same arrays in the vanilla RNN cell's names (W_ih0, W_hh0,
b_ih0, V, c), so that an edit such as params.W[3, 5] = nan reaches them. A lane's state is
(layers = 1, 1, m) there, a batch of lanes (B, 1, 1, m); model.py's functions take h (m,)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from charnn import corpus as corpus_module
from charnn import model, optim
from charnn.backends import compiled, reference
from charnn.backends.compiled import cache, lanes, numerics, optimisers, products
from charnn.model import NETWORK_NAMES, Params, to_network
from charnn.backends.calls import Optimiser, Windows

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def random_params(m, K, rng, sigma=0.1, dtype=np.float64):
    params = Params.initial(m, K, sigma, rng, dtype=dtype)
    params.b[:] = 0.1 * rng.standard_normal(m)
    params.c[:] = 0.1 * rng.standard_normal(K)
    return params


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def walk_schedule(U, B, tau, n_data, rng, zero_lengths=False, resets=False):
    """B streams walking the data tau characters at a time; optionally some lanes idle
    (length 0) or shortened, and some hidden states reset."""
    stream = (n_data - 1) // B
    starts = (np.arange(U)[:, None] * tau + np.arange(B)[None, :] * stream) % (stream - tau)
    starts = starts.astype(np.int64)
    lengths = np.full((U, B), tau, np.int32)
    reset = np.zeros((U, B), np.uint8)
    reset[0] = 1
    if zero_lengths:
        lengths[rng.random((U, B)) < 0.2] = 0
        short = rng.random((U, B)) < 0.2
        lengths[short] = rng.integers(1, tau + 1, short.sum())
    if resets:
        reset[rng.random((U, B)) < 0.2] = 1
    return starts, lengths, reset


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("N", [128, 100])       # whole register tiles, and the loop kernels
def test_products_equal_numpy(dtype, transpose_a, N):
    """C (+)= A B or A^T B for row counts that use every tile height (8, 4, 1) and depths
    down to 1; rows of C beyond the product are left alone."""
    rng = np.random.default_rng(N + transpose_a)
    for R, depth in [(1, 1), (3, 7), (4, 40), (5, 2), (8, 25), (13, 9), (77, 30)]:
        for accumulate in (False, True):
            A = rng.standard_normal((depth, R) if transpose_a else (R, depth)).astype(dtype)
            B = rng.standard_normal((depth, N)).astype(dtype)
            C = rng.standard_normal((R + 2, N)).astype(dtype)
            expected = C.copy()
            product = (A.T if transpose_a else A).astype(np.float64) @ B
            expected[:R] = product + (C[:R] if accumulate else 0)
            products._gemm(A, B, C, transpose_a, accumulate)
            tol = 1e-12 if dtype == np.float64 else 1e-5
            assert rel_err(C, expected) <= tol, (R, depth, accumulate)
            assert np.array_equal(C[R:], expected[R:])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("N,depth", [(96, 32), (128, 128), (112, 48), (100, 20)])
def test_packed_copies_give_the_same_bits(dtype, N, depth):
    """A W^T read from the copy packed in panels (a training session's) gives the same bits
    as from the plain transposed copy, for every tile height, a last panel narrower than the
    rest (N = 112), a square W (the backward kind's panels) and rows that are not whole
    vectors (N = 100: both read the plain copy); the packing threads' shares cover every
    panel once."""
    rng = np.random.default_rng(N + depth)
    W = rng.standard_normal((N, depth)).astype(dtype)
    plain = np.ascontiguousarray(W.T).reshape(-1)
    P = products._panel_width(N, depth, W)
    if P:
        panels = -(-N // P)
        packed = np.full(N * depth, np.nan, dtype)
        for share in range(3):                        # three threads' shares
            products._pack_panels(W, packed, share * panels // 3, (share + 1) * panels // 3)
        assert not np.isnan(packed).any()
    else:
        packed = plain
    for R in (1, 4, 8, 13, 21):
        A = rng.standard_normal((R, depth)).astype(dtype)
        C_plain = np.zeros((R, N), dtype)
        C_packed = np.zeros((R, N), dtype)
        products._gemm_wt(A, plain, 0, False, C_plain)
        products._gemm_wt(A, packed, 0, True, C_packed)
        assert np.array_equal(C_packed, C_plain), R
        tol = 1e-12 if dtype == np.float64 else 1e-5
        assert rel_err(C_plain, A.astype(np.float64) @ W.T) <= tol


@pytest.mark.parametrize("m,K,tau", [(5, 4, 1), (7, 11, 9), (16, 3, 25), (33, 13, 40),
                                     (100, 80, 25), (64, 77, 1)])
def test_window_loss_and_gradients_equal_numpy(m, K, tau):
    rng = np.random.default_rng(m * 1000 + K * 10 + tau)
    params = random_params(m, K, rng)
    inputs = rng.integers(0, K, tau)
    targets = rng.integers(0, K, tau)
    h_prev = 0.5 * rng.standard_normal(m)
    loss, grads, h_last = model.loss_and_gradients(params, inputs, targets, h_prev)
    c_loss, c_grads, c_h = compiled.loss_and_gradients(to_network(params), inputs, targets,
                                                       h_prev.reshape(1, 1, m))
    assert abs(c_loss - loss) <= 1e-10 * abs(loss)
    assert rel_err(c_h.reshape(m), h_last) <= 1e-10
    for name in model.PARAM_NAMES:
        err = rel_err(c_grads[NETWORK_NAMES[name]], getattr(grads, name))
        assert err <= 1e-10, f"d{name}: relative error {err:.3g}"


@pytest.mark.parametrize("m", [256, 512])
def test_window_gradients_equal_numpy_for_larger_models(m):
    rng = np.random.default_rng(m)
    K, tau = 30, 25
    params = random_params(m, K, rng, sigma=0.05)
    inputs, targets = rng.integers(0, K, tau), rng.integers(0, K, tau)
    h_prev = 0.5 * rng.standard_normal(m)
    _, grads, _ = model.loss_and_gradients(params, inputs, targets, h_prev)
    _, c_grads, _ = compiled.loss_and_gradients(to_network(params), inputs, targets,
                                                h_prev.reshape(1, 1, m))
    for name in model.PARAM_NAMES:
        assert rel_err(c_grads[NETWORK_NAMES[name]], getattr(grads, name)) <= 1e-10


@pytest.mark.parametrize("optimizer", optim.OPTIMIZERS)
@pytest.mark.parametrize("B,irregular", [(1, False), (1, True), (3, True), (8, True)])
def test_train_updates_equal_numpy(optimizer, B, irregular):
    # seeded from the case itself (Python's hash() of a string changes every process)
    rng = np.random.default_rng([optim.OPTIMIZERS.index(optimizer), B, int(irregular)])
    m, K, tau, U = 24, 17, 12, 10
    # AdaGrad's first steps amplify rounding (g / sqrt(g^2 + eps) is steep near g = 0) and
    # training is chaotic, so the two paths drift apart at ~1e-16 * e^u: compare 8 updates.
    data = rng.integers(0, K, 3000).astype(np.int32)
    starts, lengths, resets = walk_schedule(U, B, tau, len(data), rng, irregular, irregular)
    lengths[:, 0] = np.maximum(lengths[:, 0], 1)        # every update has a lane with data
    params = random_params(m, K, rng)
    state = optim.initial_state(optimizer, to_network(params))
    h = 0.3 * rng.standard_normal((B, 1, 1, m))
    ref = (params.copy(), {k: v.copy() for k, v in state.items()}, h.copy())
    eta = optim.DEFAULT_ETA[optimizer]
    losses = compiled.train_updates(to_network(params), Optimiser(optimizer, state, 7, eta, 5.0),
                                    h, Windows(data, starts, lengths, resets.astype(bool), 2, U))
    r_losses = reference.train_updates(to_network(ref[0]),
                                       Optimiser(optimizer, ref[1], 7, eta, 5.0), ref[2],
                                       Windows(data, starts, lengths, resets, 2, U))
    assert np.array_equal(np.isnan(losses), np.isnan(r_losses))
    ok = ~np.isnan(r_losses)
    assert np.allclose(losses[ok], r_losses[ok], rtol=1e-10, atol=0)
    for name, a in params.items():
        assert rel_err(a, getattr(ref[0], name)) <= 1e-9, name
    for key, a in state.items():
        assert rel_err(a, ref[1][key]) <= 1e-9, key
    assert rel_err(h, ref[2]) <= 1e-9



@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_train_updates_equal_numpy_for_a_wide_batch(dtype):
    """B = 32 lanes advancing together (the batched path), some of them idle (length 0) or
    shortened in some updates, some reset; float32 must stay in float32."""
    rng = np.random.default_rng(32)
    m, K, tau, U, B = 64, 19, 15, 6, 32
    data = rng.integers(0, K, 6000).astype(np.int32)
    starts, lengths, resets = walk_schedule(U, B, tau, len(data), rng, True, True)
    lengths[:, 0] = np.maximum(lengths[:, 0], 1)
    lengths[:, 5] = 0                                    # a lane that never has a window
    lengths[2, 7:20] = 0                                 # many idle lanes in one update
    params = random_params(m, K, rng)
    state = optim.initial_state("adagrad", to_network(params))
    h = 0.3 * rng.standard_normal((B, 1, 1, m))
    ref = (params.copy(), {k: v.copy() for k, v in state.items()}, h.copy())
    r_losses = reference.train_updates(to_network(ref[0]),
                                       Optimiser("adagrad", ref[1], 0, 0.05, 5.0), ref[2],
                                       Windows(data, starts, lengths, resets, 0, U))
    params, h = params.astype(dtype), h.astype(dtype)
    state = {k: v.astype(dtype) for k, v in state.items()}
    losses = compiled.train_updates(to_network(params),
                                    Optimiser("adagrad", state, 0, 0.05, 5.0), h,
                                    Windows(data, starts, lengths, resets, 0, U))
    tol = 1e-9 if dtype == np.float64 else 2e-3
    assert np.allclose(losses, r_losses, rtol=tol, atol=0)
    assert params.W.dtype == dtype and h.dtype == dtype
    for name, a in params.items():
        assert rel_err(a, getattr(ref[0], name)) <= tol, name
    assert rel_err(h, ref[2]) <= tol
    assert np.array_equal(h[5], ref[2][5].astype(dtype))         # the idle lane is untouched

def thousand_updates(train_updates, optimizer, eta, nudge=False, U=1000):
    """Smooth loss (0.999 smooth + 0.001 loss, from the first loss) of each of U updates of
    the assignment's model (m 100, seq_length 25, clip 5) on the bundled text."""
    corpus = corpus_module.load_corpus()
    m, K, tau = 100, len(corpus.vocab), 25
    data = corpus.encoded()[: U * tau + 1]
    starts = (np.arange(U) * tau)[:, None].astype(np.int64)
    lengths = np.full((U, 1), tau, np.int32)
    resets = np.zeros((U, 1), np.uint8)
    resets[0] = 1
    params = Params.initial(m, K, 0.01, np.random.default_rng(0))
    if nudge:
        params.W[0, 0] = np.nextafter(params.W[0, 0], 1.0)      # one ulp
    state = optim.initial_state(optimizer, to_network(params))
    losses = train_updates(to_network(params), Optimiser(optimizer, state, 0, eta, 5.0),
                           np.zeros((1, 1, 1, m)), Windows(data, starts, lengths, resets, 0, U))
    smooth = np.empty(U)
    s = losses[0]
    for i, loss in enumerate(losses):
        s = 0.999 * s + 0.001 * loss
        smooth[i] = s
    return smooth


@pytest.mark.parametrize("optimizer,eta", [("adagrad", 0.02), ("rmsprop", 0.002),
                                           ("adam", 0.002)])
def test_thousand_updates_give_the_same_smooth_loss(optimizer, eta):
    numpy_run = thousand_updates(reference.train_updates, optimizer, eta)
    compiled_run = thousand_updates(compiled.train_updates, optimizer, eta)
    assert abs(compiled_run[-1] - numpy_run[-1]) <= 1e-6 * abs(numpy_run[-1])


def test_at_the_assignments_eta_compiled_is_as_close_as_numpy_is_to_itself():
    """With AdaGrad at eta 0.1 this model's training is chaotic: moving one weight of the
    numpy run by one ulp changes the smooth loss after 1,000 updates by about 1%, so no two
    implementations that round differently can agree to 1e-6 there. The compiled run must
    then stay as close to numpy as that one-ulp nudge does, and agree tightly early on."""
    numpy_run = thousand_updates(reference.train_updates, "adagrad", 0.1)
    nudged = thousand_updates(reference.train_updates, "adagrad", 0.1, nudge=True)
    compiled_run = thousand_updates(compiled.train_updates, "adagrad", 0.1)
    intrinsic = abs(nudged[-1] - numpy_run[-1])
    assert intrinsic > 1e-4 * numpy_run[-1]                     # the chaos is real
    assert abs(compiled_run[-1] - numpy_run[-1]) <= 5 * intrinsic
    np.testing.assert_allclose(compiled_run[:10], numpy_run[:10], rtol=1e-9)


def test_total_loss_and_advance_equal_numpy():
    rng = np.random.default_rng(11)
    m, K = 20, 9
    params = random_params(m, K, rng, sigma=0.3)
    data = rng.integers(0, K, 500).astype(np.int32)
    segments = np.array([[0, 100], [100, 101], [101, 103], [150, 500], [7, 7]])
    net = to_network(params)
    total, count = reference.total_loss(net, data, segments)
    c_total, c_count = compiled.total_loss(net, data, segments)
    assert c_count == count
    assert abs(c_total - total) <= 1e-10 * abs(total)
    h = 0.2 * rng.standard_normal((1, 1, m))
    assert rel_err(compiled.advance(net, h, data[:50]),
                   reference.advance(net, h, data[:50])) <= 1e-12


SAMPLING = [dict(), dict(temperature=0.6), dict(temperature=1.7), dict(top_k=5),
            dict(top_p=0.8), dict(top_k=3, top_p=0.5, temperature=0.8), dict(greedy=True),
            dict(stop_index=2)]


@pytest.mark.parametrize("options", SAMPLING, ids=lambda o: ",".join(o) or "plain")
def test_sample_indices_identical_for_the_same_uniforms(options):
    rng = np.random.default_rng(3)
    m, K = 30, 12
    params = random_params(m, K, rng, sigma=0.15)       # not chaotic: h errors do not grow
    h = 0.1 * rng.standard_normal((1, 1, m))
    uniforms = rng.random(400)
    h_ref, h_got = h.copy(), h.copy()
    ref = reference.sample_indices(to_network(params), h_ref, 1, uniforms, **options)
    got = compiled.sample_indices(to_network(params), h_got, 1, uniforms, **options)
    assert got.dtype == np.int64
    assert np.array_equal(got, ref)
    assert rel_err(h_got, h_ref) <= 1e-12                  # h left where sampling stopped
    if "stop_index" in options:
        assert got[-1] == 2 and len(got) < len(uniforms)


def test_tanh_is_within_a_few_ulps_of_libm():
    x = np.concatenate([np.linspace(-30, 30, 2001), np.logspace(-300, 1.2, 500),
                        -np.logspace(-300, 1.2, 500), [0.0]])
    n = x.size
    params = Params(b=x.copy(), c=np.zeros(1), U=np.zeros((n, 1)), W=np.zeros((n, n)),
                    V=np.zeros((1, n)))
    h = compiled.advance(to_network(params), np.zeros((1, 1, n)),    # tanh(0 h + 0 + b)
                         np.array([0])).reshape(n)
    assert np.all(np.abs(h - np.tanh(x)) <= 8 * np.spacing(np.abs(np.tanh(x))))


def test_float32_runs_and_stays_close():
    rng = np.random.default_rng(9)
    m, K, tau, U = 64, 30, 25, 200
    data = rng.integers(0, K, U * tau + 1).astype(np.int32)
    starts = (np.arange(U) * tau)[:, None].astype(np.int64)
    lengths = np.full((U, 1), tau, np.int32)
    resets = np.zeros((U, 1), np.uint8)
    p64 = Params.initial(m, K, 0.01, rng)
    p32 = p64.astype(np.float32)
    n64, n32 = to_network(p64), to_network(p32)
    s64, s32 = optim.initial_state("adagrad", n64), optim.initial_state("adagrad", n32)
    h64, h32 = np.zeros((1, 1, 1, m)), np.zeros((1, 1, 1, m), np.float32)
    l64 = reference.train_updates(n64, Optimiser("adagrad", s64, 0, 0.1, 5.0), h64,
                                  Windows(data, starts, lengths, resets, 0, U))
    l32 = compiled.train_updates(n32, Optimiser("adagrad", s32, 0, 0.1, 5.0), h32,
                                 Windows(data, starts, lengths, resets, 0, U))
    assert l32.dtype == np.float64 and p32.W.dtype == np.float32 and h32.dtype == np.float32
    assert np.allclose(l32[:3], l64[:3], rtol=1e-4)    # later they drift apart (see above)
    assert abs(l32[-50:].mean() - l64[-50:].mean()) < 2e-2 * l64[-50:].mean()
    assert np.all(np.isfinite(p32.W))
    total, count = compiled.total_loss(n32, data, np.array([[0, 1000]]))
    r_total, _ = reference.total_loss(to_network(p32.astype(np.float64)), data,
                                      np.array([[0, 1000]]))
    assert count == 999 and abs(total - r_total) < 1e-4 * r_total
    draws = compiled.sample_indices(n32, h32[0].copy(), 0, rng.random(100), top_p=0.9)
    assert draws.dtype == np.int64 and len(draws) == 100 and draws.max() < K


def test_kernels_cache_in_charnns_folder_even_when_numba_was_imported_first(tmp_path):
    env = {**os.environ, "CHARNN_CACHE_DIR": str(tmp_path)}
    env.pop("NUMBA_CACHE_DIR", None)
    code = "import numba; from charnn.backends import compiled; print(numba.config.CACHE_DIR)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert Path(out) == tmp_path / "numba"


def test_ensure_compiled_announces_and_counts_only_what_is_asked_once(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "_marker", lambda family, job, dtype:
                        tmp_path / f"{family}-{job}-{np.dtype(dtype).name}.ok")
    assert not compiled.is_compiled("rnn", ("sample",), "float64")
    messages = []
    compiled.ensure_compiled(messages.append, dtypes=("float64",), networks=("rnn",),
                             jobs=("sample", "evaluate"))
    assert messages[0].startswith("compiling the kernels this needs, once for this machine: ")
    assert "vanilla RNN sample (float64)" in messages[0] and "evaluate" in messages[0]
    assert [m.split(":")[0] for m in messages[1:]] == ["  compiled 1/2", "  compiled 2/2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rnn-evaluate-float64.ok",
                                                          "rnn-sample-float64.ok"]
    assert compiled.is_compiled("rnn", ("sample", "evaluate"), "float64")
    assert not compiled.is_compiled("rnn", ("train-one",), "float64")
    assert not compiled.is_compiled("gru", ("sample",), "float64")
    compiled.ensure_compiled(messages.append, dtypes=("float64",), networks=("rnn",),
                             jobs=("sample",))
    assert len(messages) == 3                                 # nothing more to say


def test_the_compile_markers_name_the_cpu_numba_compiles_for(monkeypatch):
    # a compile for another CPU (NUMBA_CPU_NAME) is a compile of its own, and is announced
    current = cache._marker("rnn", "sample", "float64")
    other = "znver4" if cache.numba.config.CPU_NAME == "haswell" else "haswell"
    monkeypatch.setattr(cache.numba.config, "CPU_NAME", other)
    monkeypatch.setattr(cache.numba.config, "CPU_FEATURES", "")
    assert cache._marker("rnn", "sample", "float64") != current


# --------------------------------------------------------------------------------------
# NaN and infinity: a diverged model must show, never be hidden by a clamp.
# --------------------------------------------------------------------------------------

@numba.njit
def call_vexp(v):
    numerics._vexp(v, v.size)


@numba.njit
def call_vtanh(v):
    numerics._vtanh(v, v.size)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vexp_and_vtanh_keep_nan_and_map_infinities_as_numpy(dtype):
    x = np.linspace(-60, 0, 37).astype(dtype)
    special = {3: np.nan, 17: -np.inf, 18: np.inf, 34: np.nan, 36: -np.inf}   # in the vector
    for i, value in special.items():                                        # body and tail
        x[i] = value
    e = x.copy()
    call_vexp(e)
    t = x.copy()
    call_vtanh(t)
    with np.errstate(all="ignore"):
        e_ref, t_ref = np.exp(x), np.tanh(x)
    for got, ref in ((e, e_ref), (t, t_ref)):
        assert np.array_equal(np.isnan(got), np.isnan(ref))
        assert np.array_equal(got[np.isinf(x)], ref[np.isinf(x)])
        finite = np.isfinite(x)
        assert np.allclose(got[finite], ref[finite], rtol=8 * np.finfo(dtype).eps, atol=0)
    assert e[17] == 0 and e[18] == np.inf and t[17] == -1 and t[18] == 1


def test_vexp_is_within_a_few_ulps_of_libm():
    x = np.concatenate([np.linspace(-700, 0, 4001), -np.logspace(-300, 2.8, 500), [0.0]])
    got = x.copy()
    call_vexp(got)
    assert np.all(np.abs(got - np.exp(x)) <= 4 * np.spacing(np.exp(x)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clipping_keeps_nan_and_clips_infinities(dtype):
    assert np.isnan(optimisers._clip(dtype(np.nan), dtype(5.0)))
    assert optimisers._clip(dtype(np.inf), dtype(5.0)) == 5.0
    assert optimisers._clip(dtype(-np.inf), dtype(5.0)) == -5.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("optimizer", optim.OPTIMIZERS)
def test_an_update_with_nan_and_infinite_gradients_and_state_is_numpys(dtype, optimizer):
    """One step of each rule on a gradient holding NaN, +-inf and huge values, from a state
    holding inf and NaN here and there: the same NaN, the same infinities, close elsewhere."""
    rng = np.random.default_rng(5)
    n = 41
    theta = rng.standard_normal(n).astype(dtype)
    grad = rng.standard_normal(n).astype(dtype)
    grad[[2, 20, 33]] = np.nan
    grad[[5, 25]] = np.inf
    grad[[6, 37]] = -np.inf
    grad[8] = 1e30
    state = optim.initial_state(optimizer, Params(dict(zip(model.PARAM_NAMES, (theta,) * 5))))
    first = state["m_b"]
    first[:] = np.abs(rng.standard_normal(n))
    first[[10, 30]] = np.inf
    first[12] = np.nan
    ref = Params({n: theta.copy() for n in model.PARAM_NAMES})
    ref_state = {k: v.copy() for k, v in state.items()}
    grads = Params({n: grad.copy() for n in model.PARAM_NAMES})
    with np.errstate(all="ignore"):
        optim.clip_(grads, 5.0)
        optim.step_(optimizer, ref, grads, ref_state, 0.1, 4)
    opt = optimisers._OPT_CODE[optimizer]
    consts = optimisers._constants(dtype, 0.1, 5.0)
    bcs = np.zeros(2, dtype)
    optimisers._bias_corrections(opt, consts, np.array([optim.ADAM_BETA1, optim.ADAM_BETA2]),
                              bcs, 4)
    s1 = state["m_b"]
    s2 = state["v_b"] if optimizer == "adam" else s1
    optimisers._update_dense(theta, grad.copy(), s1, s2, opt, consts, bcs[0], bcs[1])
    for got, want in ((theta, ref.b), (s1, ref_state["m_b"])):
        assert np.array_equal(np.isnan(got), np.isnan(want))
        assert np.array_equal(np.isinf(got), np.isinf(want))
        ok = np.isfinite(want)
        tol = 1e-12 if dtype == np.float64 else 1e-5
        assert np.allclose(got[ok], want[ok], rtol=tol, atol=0)


@pytest.mark.parametrize("B", [1, 4])
@pytest.mark.parametrize("backend,dtype", [(reference, np.float64), (compiled, np.float64),
                                           (compiled, np.float32)])
def test_training_a_model_with_one_nan_weight_gives_nan_losses(backend, dtype, B):
    rng = np.random.default_rng(B)
    m, K, tau, U = 16, 11, 8, 4
    data = rng.integers(0, K, 2000).astype(np.int32)
    starts, lengths, resets = walk_schedule(U, B, tau, len(data), rng)
    params = random_params(m, K, rng, dtype=dtype)
    params.W[3, 5] = np.nan
    for optimizer in ("adagrad", "adam"):
        p = params.copy()
        state = optim.initial_state(optimizer, to_network(p))
        h = np.zeros((B, 1, 1, m), dtype)
        losses = backend.train_updates(to_network(p), Optimiser(optimizer, state, 0, 0.01, 5.0),
                                       h, Windows(data, starts, lengths, resets, 0, U))
        assert np.all(np.isnan(losses)), (optimizer, losses)
        assert np.all(np.isnan(p.W)) and np.all(np.isnan(h))


def test_a_nan_weight_spreads_as_in_numpy():
    """Which parameters and state entries end up NaN after training from one NaN weight."""
    rng = np.random.default_rng(12)
    m, K, tau, U = 16, 11, 8, 3
    data = rng.integers(0, K - 3, 2000).astype(np.int32)     # some characters never seen
    for B in (1, 4):
        starts, lengths, resets = walk_schedule(U, B, tau, len(data), rng)
        for optimizer in optim.OPTIMIZERS:
            params = random_params(m, K, rng)
            params.W[3, 5] = np.nan
            runs = []
            for backend in (reference, compiled):
                p = params.copy()
                state = optim.initial_state(optimizer, to_network(p))
                h = np.zeros((B, 1, 1, m))
                backend.train_updates(to_network(p), Optimiser(optimizer, state, 0, 0.01, 5.0),
                                      h, Windows(data, starts, lengths, resets, 0, U))
                runs.append((p, state))
            (p_ref, s_ref), (p_got, s_got) = runs
            for name, a in p_got.items():
                assert np.array_equal(np.isnan(a), np.isnan(getattr(p_ref, name))), name
            for key, a in s_got.items():
                assert np.array_equal(np.isnan(a), np.isnan(s_ref[key])), key


@pytest.mark.parametrize("backend", [reference, compiled])
def test_total_loss_of_a_model_with_a_nan_is_nan(backend):
    rng = np.random.default_rng(4)
    m, K = 12, 7
    params = random_params(m, K, rng)
    data = rng.integers(0, K, 300).astype(np.int32)
    segments = np.array([[0, 100], [100, 300]])
    net = to_network(params)                           # the same arrays: the NaN reaches it
    total, count = backend.total_loss(net, data, segments)
    assert np.isfinite(total) and count == 298
    params.V[2, 7] = np.nan
    total, count = backend.total_loss(net, data, segments)
    assert np.isnan(total) and count == 298
    params.V[2, 7] = 0.0
    h0 = np.zeros((2, 1, 1, m))
    h0[1, 0, 0, 3] = np.nan                            # a NaN in one segment's start
    total, _ = backend.total_loss(net, data, segments, h0)
    assert np.isnan(total)


@pytest.mark.parametrize("options", [dict(greedy=True), dict(), dict(top_p=0.5)])
def test_sampling_from_a_model_with_a_nan_draws_what_numpy_draws(options):
    rng = np.random.default_rng(6)
    m, K = 10, 8
    for where in ("W", "V"):
        params = random_params(m, K, rng, sigma=0.3)
        getattr(params, where)[3, 2] = np.nan
        uniforms = rng.random(6)
        with np.errstate(all="ignore"):
            ref = reference.sample_indices(to_network(params), np.zeros((1, 1, m)), 1, uniforms,
                                           **options)
        got = compiled.sample_indices(to_network(params), np.zeros((1, 1, m)), 1, uniforms,
                                      **options)
        assert np.array_equal(got, ref), where


# --------------------------------------------------------------------------------------
# Evaluation from given states, and the text as uint8 (a memmap too).
# --------------------------------------------------------------------------------------

def test_total_loss_from_given_states_equals_numpy():
    rng = np.random.default_rng(21)
    m, K = 20, 9
    params = random_params(m, K, rng, sigma=0.3)
    data = rng.integers(0, K, 500).astype(np.int32)
    segments = np.array([[0, 100], [100, 101], [101, 103], [150, 500], [7, 7], [3, 60]])
    net = to_network(params)
    h0 = 0.5 * rng.standard_normal((len(segments), 1, 1, m))
    for states in (h0, h0[4], None, np.zeros((len(segments), 1, 1, m))):
        total, count = reference.total_loss(net, data, segments, states)
        c_total, c_count = compiled.total_loss(net, data, segments, states)
        assert c_count == count == 99 + 1 + 349 + 56
        assert abs(c_total - total) <= 1e-10 * abs(total)
    zero, _ = compiled.total_loss(net, data, segments)
    assert compiled.total_loss(net, data, segments, np.zeros((1, 1, m)))[0] == zero
    assert compiled.total_loss(net, data, segments, h0)[0] != zero
    # a segment from h0 scores the same characters as the window that led there
    loss, h_mid = model.sequence_loss(params, data[0:49], data[1:50], np.zeros(m))
    split, _ = reference.total_loss(net, data, np.array([[49, 100]]), h_mid.reshape(1, 1, m))
    whole, _ = reference.total_loss(net, data, np.array([[0, 100]]))
    assert abs(loss + split - whole) <= 1e-10 * whole
    c_split, _ = compiled.total_loss(net, data, np.array([[49, 100]]), h_mid.reshape(1, 1, m))
    assert abs(c_split - split) <= 1e-10 * split
    for backend in (reference, compiled):
        with pytest.raises(ValueError):
            backend.total_loss(net, data, segments, h0[:2])


def test_the_text_reaches_the_kernels_without_a_copy(tmp_path):
    text = np.arange(1000) % 7
    for dtype in (np.uint8, np.int32):
        a = text.astype(dtype)
        view, width = lanes._text(a)
        assert width == a.itemsize and view.size == a.size * width
        assert np.shares_memory(view, a) and a.flags.writeable and not view.flags.writeable
        path = tmp_path / f"text-{np.dtype(dtype).name}.bin"
        a.tofile(path)
        mapped = np.memmap(path, dtype=dtype, mode="r")
        assert np.shares_memory(lanes._text(mapped)[0], mapped)
        assert [lanes._char(view, width, i) for i in (0, 6, 7, 999)] == [0, 6, 0, 999 % 7]
    big = np.array([0, 70000, 2**31 - 1], np.int32)           # every byte of an int32 counts
    assert [lanes._char(*lanes._text(big), i) for i in range(3)] == list(big)
    assert lanes._text(text)[1] == 4                        # int64 is converted to int32


@pytest.mark.parametrize("B", [1, 3])
def test_uint8_and_memmapped_text_train_and_evaluate_as_int32(B, tmp_path):
    rng = np.random.default_rng(30 + B)
    m, K, tau, U = 24, 17, 10, 5
    text = rng.integers(0, K, 3000)
    path = tmp_path / "text.bin"
    text.astype(np.uint8).tofile(path)
    texts = {"int32": text.astype(np.int32), "uint8": text.astype(np.uint8),
             "memmap": np.memmap(path, dtype=np.uint8, mode="r")}
    starts, lengths, resets = walk_schedule(U, B, tau, len(text), rng, True, True)
    lengths[:, 0] = np.maximum(lengths[:, 0], 1)
    params0 = random_params(m, K, rng)
    segments = np.array([[0, 400], [400, 1000], [2000, 2999]])
    h0 = 0.2 * rng.standard_normal((3, 1, 1, m))
    for backend in (reference, compiled):
        results = {}
        for name, data in texts.items():
            params = params0.copy()
            net = to_network(params)
            state = optim.initial_state("adam", net)
            h = np.zeros((B, 1, 1, m))
            losses = backend.train_updates(net, Optimiser("adam", state, 0, 0.005, 5.0), h,
                                           Windows(data, starts, lengths, resets, 0, U))
            results[name] = [losses, h, *(a for _, a in params.items()),
                             np.array(backend.total_loss(net, data, segments)),
                             np.array(backend.total_loss(net, data, segments, h0)),
                             backend.advance(net, h[0], data[100:140])]
        for name in ("uint8", "memmap"):
            for a, b in zip(results[name], results["int32"]):
                assert np.array_equal(a, b), (backend.__name__, name)


@pytest.mark.parametrize("name", ["compiled", "numpy", "torch"])
def test_every_registered_backend_speaks_the_backend_protocol(name):
    from charnn.backends import BACKENDS, EXTRAS, Backend, get_backend, import_backend
    from charnn.errors import CharnnError
    assert name in BACKENDS
    if name in EXTRAS:                                # an optional extra: only where installed
        pytest.importorskip(EXTRAS[name][0], reason=f"the {name} backend needs "
                            f"{EXTRAS[name][1]}")
    backend = import_backend(name)
    assert isinstance(backend, Backend), name
    assert "rnn" in backend.NETWORKS and "float64" in backend.DTYPES
    for network in ("lstm", "gru"):
        assert get_backend("compiled", network=network, jobs=("sample",)).__name__ == \
            "charnn.backends.compiled"
    with pytest.raises(CharnnError, match="unknown"):
        get_backend("cuda")
