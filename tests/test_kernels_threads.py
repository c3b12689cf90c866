"""The compiled kernels give the same bits on any number of threads: batched training (the
lanes split into groups that depend on the batch size only) and evaluation (per-segment
totals summed in order). numba fixes its thread count at import (NUMBA_NUM_THREADS), so
runs at other counts than this process's go to child processes; numba.set_num_threads
lowers it inside this one. The vanilla RNN's parameters are built in the assignment's names
(model.Params) and handed to the kernels as to_network(params), the same arrays; a lane's
state is (layers = 1, 1, m)."""

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
from charnn.backends import compiled
from charnn.model import Params, to_network
from charnn.backends.calls import Optimiser, Windows

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

LANES = (3, 5, 8, 32)
HIDDEN = (32, 20)       # whole register tiles in both dtypes (AVX2 and AVX-512), and not
U, TAU, K = 5, 9, 13


def schedule(B, rng):
    """Windows of uneven lengths (some lanes idle in some updates, one never active), and
    resets here and there."""
    n = 40 * B * TAU
    starts = rng.integers(0, n - TAU - 1, (U, B)).astype(np.int64)
    lengths = rng.integers(1, TAU + 1, (U, B)).astype(np.int32)
    lengths[rng.random((U, B)) < 0.2] = 0
    lengths[:, 0] = np.maximum(lengths[:, 0], 1)
    if B > 3:
        lengths[:, B - 2] = 0
    resets = (rng.random((U, B)) < 0.25).astype(np.uint8)
    return n, starts, lengths, resets


def runs() -> dict[str, np.ndarray]:
    """Every result of a set of batched trainings and evaluations, by name."""
    out = {}
    for dtype in (np.float64, np.float32):
        for optimizer in ("adagrad", "adam"):
            for B in LANES:
                for m in HIDDEN:
                    rng = np.random.default_rng([B, m, len(optimizer), np.dtype(dtype).itemsize])
                    n, starts, lengths, resets = schedule(B, rng)
                    text = rng.integers(0, K, n)
                    data = text.astype(np.uint8 if m == 20 else np.int32)
                    params = Params.initial(m, K, 0.3, rng, dtype=dtype)
                    params.b[:] = 0.1 * rng.standard_normal(m)
                    state = optim.initial_state(optimizer, to_network(params))
                    h = (0.5 * rng.standard_normal((B, 1, 1, m))).astype(dtype)
                    eta = optim.DEFAULT_ETA[optimizer]
                    losses = compiled.train_updates(to_network(params),
                                                    Optimiser(optimizer, state, 3, eta, 5.0), h,
                                                    Windows(data, starts, lengths, resets, 0, U))
                    key = f"{np.dtype(dtype).name}-{optimizer}-B{B}-m{m}"
                    out[f"{key}-losses"] = losses
                    out[f"{key}-h"] = h
                    for name, a in params.items():
                        out[f"{key}-{name}"] = a
                    for name, a in state.items():
                        out[f"{key}-{name}"] = a
        rng = np.random.default_rng(7)
        params = Params.initial(24, K, 0.4, rng, dtype=dtype)
        data = rng.integers(0, K, 5000).astype(np.int32)
        edges = np.sort(rng.choice(5000, 60, replace=False))
        segments = np.stack([edges[:-1], edges[1:]], axis=1)
        h0 = (0.5 * rng.standard_normal((len(segments), 1, 1, 24))).astype(dtype)
        name = np.dtype(dtype).name
        out[f"{name}-total"] = np.array(compiled.total_loss(to_network(params), data, segments))
        out[f"{name}-total-h0"] = np.array(compiled.total_loss(to_network(params), data,
                                                               segments, h0))
    return out


def assert_same_bits(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert a[key].tobytes() == b[key].tobytes(), f"{key} differs {what}"


def in_child(threads: int, tmp_path: Path) -> dict[str, np.ndarray]:
    """runs() in a new process started with NUMBA_NUM_THREADS = threads."""
    out = tmp_path / f"threads-{threads}.npz"
    src = str(Path(charnn.__file__).resolve().parents[1])
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, __file__, str(out)], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(threads)
    with np.load(out) as f:
        return {key: f[key] for key in f.files}


@pytest.fixture(scope="module")
def one_thread():
    launched = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return runs()
    finally:
        numba.set_num_threads(launched)


def test_the_groups_depend_on_the_lanes_alone():
    groups = {B: compiled.lane_groups(B) for B in (2, 3, 5, 8, 16, 32, 64, 128, 1000)}
    assert all(1 <= g <= B for B, g in groups.items())
    assert groups[8] >= 2                      # two cores busy at B = 8


@pytest.mark.parametrize("threads", [2, 3])
def test_batched_training_and_evaluation_give_the_same_bits_on_fewer_threads(one_thread,
                                                                             threads):
    """numba.set_num_threads inside this process, up to the count it was started with."""
    launched = numba.get_num_threads()
    if threads > launched:
        pytest.skip(f"this process runs {launched} numba threads")
    numba.set_num_threads(threads)
    try:
        got = runs()
    finally:
        numba.set_num_threads(launched)
    assert_same_bits(got, one_thread, f"at {threads} threads and at 1")


@pytest.mark.parametrize("threads", [1, 3])
def test_batched_training_and_evaluation_give_the_same_bits_in_a_process_of_n_threads(
        one_thread, threads, tmp_path):
    """A child process started with NUMBA_NUM_THREADS = 1 or 3 (more threads than this
    machine may have cores)."""
    assert_same_bits(in_child(threads, tmp_path), one_thread,
                     f"in a process of {threads} threads and at 1 thread here")


if __name__ == "__main__":
    np.savez(sys.argv[1], **runs())
    print(numba.get_num_threads())
