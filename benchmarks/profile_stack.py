"""Where the time of one compiled LSTM or GRU update goes, on one thread: each product timed
alone at the shapes the kernels use (a lane group's rows), times how often one update runs it,
against the measured update (float32, m = 256, K = 77, seq_length 25, AdaGrad).

    python benchmarks/profile_stack.py lstm 1 32      # network, layers, batch size
"""

from __future__ import annotations

import sys
import time

import numba
import numpy as np

from charnn import optim
from charnn.backends import compiled
from charnn.backends.compiled.lanes import lane_groups
from charnn.backends.compiled.optimisers import _constants, _update_rows
from charnn.backends.compiled.products import _aligned_zeros, _gemm, _matmul_nt
from charnn.model import Params
from charnn.networks import NETWORKS
from charnn.backends.calls import Optimiser, Windows

numba.set_num_threads(1)


def seconds_of(fn, reps=50):
    """Seconds per call of fn(), after one call that compiles."""
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def aligned(shape):
    """Random float32 values in an array on a cache-line boundary, as the kernels use."""
    a = _aligned_zeros(int(np.prod(shape)), np.dtype(np.float32)).reshape(shape)
    a[...] = np.random.default_rng(0).random(shape)
    return a


def main(net: str, layers: int, B: int) -> None:
    m, K, T, updates = 256, 77, 25, 40
    Gm = (4 if net == "lstm" else 3) * m
    G = lane_groups(B)
    n = -(-B // G)                                    # lanes per group
    N = T * n                                         # rows of a group's window products
    rng = np.random.default_rng(0)
    params = Params(NETWORKS[net].initial_params(K, m, layers, 1 / 16, rng, np.float32))
    state = optim.initial_state("adagrad", params)
    h = np.zeros((B, layers, NETWORKS[net].STATE_VECTORS, m), np.float32)
    data = rng.integers(0, K, 200_000).astype(np.uint8)
    starts = (np.arange(updates)[:, None] * T + np.arange(B)[None] * 4000).astype(np.int64)
    lengths = np.full((updates, B), T, np.int32)
    resets = np.zeros((updates, B), np.uint8)

    def train(count):
        compiled.train_updates(params, Optimiser("adagrad", state, 0, 0.1, 5.0), h,
                               Windows(data, starts, lengths, resets, 0, count))
    train(2)
    t0 = time.perf_counter()
    train(updates)
    per_update = (time.perf_counter() - t0) / updates

    parts = {}                                        # name: (calls per update, flops, s)
    Hn, WT, AH = aligned((n, m)), aligned((m, Gm)), aligned((n, Gm))
    parts["forward recurrent H W_hh^T (per step)"] = (
        layers * T * G, 2 * n * m * Gm, seconds_of(lambda: _gemm(Hn, WT, AH, False, False)))
    DA1, W, dh = aligned((n, Gm)), aligned((Gm, m)), aligned((n, m))
    parts["backward recurrent DA W_hh (per step)"] = (
        layers * (T - 1) * G, 2 * n * m * Gm, seconds_of(lambda: _gemm(DA1, W, dh, False, False)))
    DA, Hs, gW = aligned((N, Gm)), aligned((N, m)), aligned((Gm, m))
    parts["weight gradients DA^T H (per window)"] = (
        (2 * layers - 1) * G, 2 * N * m * Gm, seconds_of(lambda: _gemm(DA, Hs, gW, True, False)))
    if layers > 1:
        X, AX = aligned((N, m)), aligned((N, Gm))
        parts["input part X W_ih^T, and DA W_ih (per window)"] = (
            2 * (layers - 1) * G, 2 * N * m * Gm, seconds_of(lambda: _gemm(X, WT, AX, False, False)))
    V, c, O = aligned((K, m)), aligned((K,)), aligned((N, K))
    DH, gV = aligned((N, m)), aligned((K, m))
    output = (seconds_of(lambda: _matmul_nt(Hs, V, c, O))
              + seconds_of(lambda: _gemm(O, V, DH, False, False))
              + seconds_of(lambda: _gemm(O, Hs, gV, True, False)))
    parts["output layer (3 products per window)"] = (G, 3 * 2 * N * m * K, output)
    P = sum(-(-a.size // 16) * 16 for _, a in params.items())
    rows = -(-P // 512)
    theta, s1, grads = aligned((rows, 512)), aligned((rows, 512)), aligned((G, rows, 512))
    row, consts = aligned((512,)), _constants(np.float32, 0.1, 5.0)
    parts["optimiser (sum of groups, clip, AdaGrad)"] = (1, 0, seconds_of(
        lambda: _update_rows(theta, grads, s1, s1, 0, rows, B, 0, consts, consts[-1], consts[-1],
                             row), 10))
    print(f"{net} x{layers}, B = {B} ({G} groups of {n} lanes), m = {m}, float32, 1 thread: "
          f"{per_update * 1e3:.2f} ms per update, {B * T / per_update:,.0f} characters/s")
    total = 0.0
    for name, (count, flops, t) in parts.items():
        total += count * t
        rate = f"{flops / t / 1e9:6.0f} GFLOP/s" if flops else ""
        print(f"  {name:<48} {count:>4} x {t * 1e6:7.1f} us = {count * t * 1e3:6.2f} ms "
              f"({100 * count * t / per_update:4.1f}%) {rate}")
    rest = per_update - total
    print(f"  {'the rest (gates, softmax, gathers, transposes)':<48} {'':>19} {rest * 1e3:6.2f} ms "
          f"({100 * rest / per_update:4.1f}%)")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
