"""What every compiled stacked network shares: layers of one cell (cells.py; lstm.py, gru.py,
mlstm.py) over time, the output layer, dropout between layers, the batch loop over lane
groups, and the interface of backends/reference.py for them. The math is networks/stack.py's
with the cell of the parameters' network; the losses and gradients equal the reference's to
rounding. Numba compiles these kernels once per cell (the cell's tag is their first argument),
so a cell's kernels are its own code, with no branch on the kind of cell.

What makes it fast:
  * The lanes of a group advance together, layer after layer: a layer's recurrent part of one
    step is the cell's product(s) over all lanes ((lanes x m)(m x G m), G = 4 for the LSTM,
    3 for the GRU), and its input part for the whole window is one (L lanes x m)(m x I m)
    product before the steps start (layer 0 reads the rows of W_ih0^T of its characters
    instead: the input is one-hot).
  * The output layer of every position of every lane is one product, and so are the
    gradients: dV = G^T H, and per layer dW_ih = DA^T X, the gradient sent to the layer
    below, DA W_ih, and the cell's own weights' gradients (backward_window). Only the
    gradient through the state to step t-1 is a product per step.
  * Every product is products.py's _gemm: register tiles when the rows are whole tiles
    (m = 128, 256, ...), loop kernels otherwise.
  * The parameters, their gradients and the optimiser's state live in flat vectors for the
    call (layer 0's W_ih transposed, so that a character's column is a contiguous row), so the
    update is optimisers.py's fused step over row blocks that the threads share out. Each lane
    group has its own gradient vector, summed in group order: the same bits on any number of
    threads (lanes.lane_groups depends on the number of lanes alone).
  * Dropout masks are computed where they are used, from networks/dropout.py's hash of (seed,
    update, lane, layer, t m + j) in 32-bit unsigned arithmetic: the same masks, bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ...networks import Network
from ...networks import dropout as dropout_hash
from . import cells
from ..calls import NO_DROPOUT, Dropout, Optimiser, Windows
from .lanes import _active_lanes, _char, _gather_windows, _text, lane_groups
from .numerics import _copy, _draw, _jit, _mat, _shifted_exp, _softmax_row, _sum_rows
from .optimisers import _C_ONE, _OPT_CODE, _bias_corrections, _update_rows
from .products import (_aligned_zeros, _gemm, _gemm_wt, _matmul_nt, _pack_panels,
                       _panel_width, _transpose_rows)
from .session import KernelSession

_ALIGN = 16               # elements: each parameter starts on a 64-byte boundary in float32
_ROW = 512                # the flat vectors are stepped in rows of this many elements
_NO_DROPOUT, _HASHED_DROPOUT, _GIVEN_DROPOUT = 0, 1, 2
_W_IH, _B_IH = 0, 1       # each layer's first two offsets; the cell's OWN follow


# --------------------------------------------------------------------------------------
# The flat layout (_Layout): per layer l, off[l] = the offsets of W_ih (layer 0: transposed,
# (K, I m)), b_ih, then the cell's OWN parameters; off[layers] = those of V (K, m) and c (K,).
# WT holds the transposed copies the forward products read: offT[l, 0] W_ih^T (l > 0), then
# the cell's TRANSPOSED; jobs lists them (source offset, copy's offset, rows, columns).
# offT's last column is 1 where the copies are packed in panels (products._gemm_wt): a
# training session's, whose groups have rows enough for the tiles; 0 in the layout's own.
# --------------------------------------------------------------------------------------

@_jit
def _refresh_transposes(theta, WT, jobs, share, shares, packed):
    """WT's transposed copies, share `share` of `shares` of each: packed in panels where
    `packed` and the products can read them so (products._gemm_wt), else as they are."""
    for q in range(jobs.shape[0]):
        rows = jobs[q, 2]
        cols = jobs[q, 3]
        W = _mat(theta, jobs[q, 0], rows, cols)
        P = _panel_width(rows, cols, theta)
        if packed and P > 0:
            panels = (rows + P - 1) // P
            _pack_panels(W, WT[jobs[q, 1]:jobs[q, 1] + rows * cols], share * panels // shares,
                         (share + 1) * panels // shares)
        else:
            _transpose_rows(W, _mat(WT, jobs[q, 1], cols, rows), share * rows // shares,
                            (share + 1) * rows // shares)


# --------------------------------------------------------------------------------------
# Dropout: networks/dropout.py's hash in 64-bit integers, masked to 32 bits.
# --------------------------------------------------------------------------------------

_M32 = np.uint64(0xFFFFFFFF)


@_jit
def _fmix32(h):
    h = h ^ (h >> np.uint64(16))
    h = (h * np.uint64(0x85EBCA6B)) & _M32
    h = h ^ (h >> np.uint64(13))
    h = (h * np.uint64(0xC2B2AE35)) & _M32
    return h ^ (h >> np.uint64(16))


@_jit
def _mix(a, b):
    return _fmix32(a ^ ((b * np.uint64(0x9E3779B9) + np.uint64(0x7F4A7C15)) & _M32))


@_jit
def _fill_masks(Mk, layers, Ls, lo, n, seed_lo, seed_hi, update, dropout, threshold, scale,
                top, threshold_top, scale_top):
    """Mk[l, t, r] = lane lo + r's dropout mask on layer l's h_t at step t (dropout.py): for
    l < layers - 1 (into layer l + 1) when `dropout`, for the top (into the output layer)
    when `top`."""
    m = Mk.shape[3]
    zero = scale - scale
    seed_key = _mix(np.uint64(seed_lo), np.uint64(seed_hi))
    key_u = _mix(seed_key, np.uint64(update) & _M32)
    for r in range(n):
        key_lane = _mix(key_u, np.uint64(lo + r) & _M32)
        for l in range(layers):
            if l < layers - 1 and dropout == _NO_DROPOUT or l == layers - 1 and not top:
                continue
            kept, value = (threshold, scale) if l < layers - 1 else (threshold_top, scale_top)
            key = _mix(key_lane, np.uint64(l))
            for t in range(Ls[r]):
                mk = Mk[l, t, r]
                base = np.uint64(t * m)
                for j in range(m):
                    u = _mix(key, (base + np.uint64(j)) & _M32)
                    mk[j] = value if u >= kept else zero


@_jit
def _mask_window(X, H, mask, Ls, Lg, n):
    """X[t, r] = H[t + 1, r] * mask[t, r], a layer's dropped outputs (H its states after each
    step), for t < Lg; zero past a lane's window."""
    m = X.shape[2]
    for t in range(Lg):
        for r in range(n):
            x = X[t, r]
            if t < Ls[r]:
                hb = H[t + 1, r]
                mk = mask[t, r]
                for j in range(m):
                    x[j] = hb[j] * mk[j]
            else:
                x[:] = 0


@_jit
def _mask_rows(D, mask, Ls, Lg, n):
    """D[t, r] *= mask[t, r] within each lane's window: a gradient back through dropout."""
    m = D.shape[2]
    for t in range(Lg):
        for r in range(n):
            if t < Ls[r]:
                d = D[t, r]
                mk = mask[t, r]
                for j in range(m):
                    d[j] = d[j] * mk[j]


# --------------------------------------------------------------------------------------
# One lane group, one update: forward through the layers, the output layer, and back.
# --------------------------------------------------------------------------------------

@_jit
def _group_update(cell, layers, theta, off, WT, offT, xs, xst, ys, yst, ln, rs, h, lo, n,
                  ST, Z, AX, AH, X, Mk, O, DH, DAX, DC, dS, Ls, gflat, dropout, top, one):
    """Forward and backward of lanes lo..lo+n-1 (those >= B are padding): the loss summed
    over their windows, the gradients into gflat (overwritten), their states in h updated.

    Lane r reads inputs xs[xst[lo + r] + t] and targets ys[yst[lo + r] + t], t < ln[lo + r];
    rs[lo + r] zeroes its state first. Scratch (_scratch): ST (layers, S, >= L+1, n, m) the
    states, Z (layers, >= L, n, stash m) the cell's stash, AX (>= L, n, I m) the input parts,
    AH (n, product m), X (layers + 1, >= L, n, m) the inputs of layers above 0 and, when the
    `top` layer's output is dropped, of the output layer, Mk (layers, >= L, n, m) the dropout
    masks (filled by the caller; Mk[l] on layer l's output), O (>= L, n, K), DH (>= L, n, m),
    DAX (>= L, n, I m), DC (>= L, n, carried m), dS (S, n, m), Ls (n,)."""
    B = h.shape[0]
    S = ST.shape[1]
    m = ST.shape[4]
    K = O.shape[2]
    Gi = AX.shape[2]
    Lg = 0
    for r in range(n):
        lane = lo + r
        L = 0
        if lane < B:
            L = ln[lane]
        Ls[r] = L
        for l in range(layers):
            for s in range(S):
                if L > 0 and not rs[lane]:
                    _copy(ST[l, s, 0, r], h[lane, l, s])
                else:
                    ST[l, s, 0, r] = 0
        Lg = max(Lg, L)
    if Lg == 0:
        gflat[:] = 0
        return 0.0
    N = Lg * n
    # Every gradient is written below, most by products that overwrite them (dV, each dW_ih
    # above layer 0, the cell's own in backward_window) and the biases by sums that start
    # from their first row; only dc and dW_ih0, summed position by position, start from 0
    # (the gaps between parameters are never written: zero since allocation). Zeroing all of
    # gflat took 1-3% of an update in profile_perf.py's profiles.
    gc = gflat[off[layers, 1]:off[layers, 1] + K]
    gc[:] = 0
    gflat[off[0, _W_IH]:off[0, _W_IH] + K * Gi] = 0
    # forward, layer after layer
    for l in range(layers):
        b_ih = theta[off[l, _B_IH]:off[l, _B_IH] + Gi]
        if l == 0:                                    # W_ih0 x_t: a row of W_ih0^T
            W0T = _mat(theta, off[0, _W_IH], K, Gi)
            for t in range(Lg):
                for r in range(n):
                    if t < Ls[r]:
                        w = W0T[xs[xst[lo + r] + t]]
                        a = AX[t, r]
                        for k in range(Gi):
                            a[k] = w[k] + b_ih[k]
        else:                                         # X W_ih^T + b_ih for the whole window
            if dropout != _NO_DROPOUT:
                _mask_window(X[l], ST[l - 1, 0], Mk[l - 1], Ls, Lg, n)
            else:
                for t in range(Lg):
                    for r in range(n):
                        _copy(X[l, t, r], ST[l - 1, 0, t + 1, r])
            AXs = AX[:Lg].reshape((N, Gi))
            _gemm_wt(X[l, :Lg].reshape((N, m)), WT, offT[l, 0], offT[l, -1], AXs)
            for q in range(N):
                a = AXs[q]
                for k in range(Gi):
                    a[k] += b_ih[k]
        for t in range(Lg):
            cells.forward_step(cell, theta, off[l], WT, offT[l], AX[t], ST[l], t, t + 1, Z[l],
                               AH, Ls, t)
    # the output layer over all positions at once: O = H V^T + c, softmax, G = P - onehot(y),
    # H the top's h_t, or with `top` dropout X[layers] = h_t * mask
    V = _mat(theta, off[layers, 0], K, m)
    c = theta[off[layers, 1]:off[layers, 1] + K]
    gV = _mat(gflat, off[layers, 0], K, m)
    Hs = ST[layers - 1, 0, 1:Lg + 1].reshape((N, m))
    if top:
        _mask_window(X[layers], ST[layers - 1, 0], Mk[layers - 1], Ls, Lg, n)
        Hs = X[layers, :Lg].reshape((N, m))
    Os = O[:Lg].reshape((N, K))
    _matmul_nt(Hs, V, c, Os)
    loss = 0.0
    for t in range(Lg):
        for r in range(n):
            o = O[t, r]
            if t < Ls[r]:
                _softmax_row(o)
                y = ys[yst[lo + r] + t]
                loss -= math.log(np.float64(o[y]))
                o[y] -= one
                for k in range(K):
                    gc[k] += o[k]
            else:
                o[:] = 0
    DHs = DH[:Lg].reshape((N, m))
    _gemm(Os, V, DHs, False, False)                   # dL/dh_t of the top layer: G V
    _gemm(Os, Hs, gV, True, False)                    # dV = G^T H
    if top:                                           # dL/dh_t = (G V) * mask
        _mask_rows(DH, Mk[layers - 1], Ls, Lg, n)
    # backward, layer after layer from the top, each back through time
    DAXs = DAX[:Lg].reshape((N, Gi))
    for l in range(layers - 1, -1, -1):
        dS[:] = 0
        for t in range(Lg - 1, -1, -1):
            cells.backward_step(cell, theta, off[l], WT, offT[l], DH[t], dS, Z[l], ST[l], t,
                                DAX[t], DC, Ls)
        cells.backward_window(cell, theta, off[l], gflat, ST[l], Z[l], DAX, DC, Lg)
        _sum_rows(DAXs, N, gflat[off[l, _B_IH]:off[l, _B_IH] + Gi])     # db_ih
        if l > 0:
            _gemm(DAXs, X[l, :Lg].reshape((N, m)), _mat(gflat, off[l, _W_IH], Gi, m), True,
                  False)                              # dW_ih = DA^T X
            _gemm(DAXs, _mat(theta, off[l, _W_IH], Gi, m), DHs, False, False)  # to layer l-1
            if dropout != _NO_DROPOUT:
                _mask_rows(DH, Mk[l - 1], Ls, Lg, n)
        else:                                         # dW_ih0[:, x_t] += da_t
            gW0T = _mat(gflat, off[0, _W_IH], K, Gi)
            for t in range(Lg):
                for r in range(n):
                    if t < Ls[r]:
                        row = gW0T[xs[xst[lo + r] + t]]
                        da = DAX[t, r]
                        for k in range(Gi):
                            row[k] += da[k]
    for r in range(n):
        if Ls[r] > 0:
            for l in range(layers):
                for s in range(S):
                    _copy(h[lo + r, l, s], ST[l, s, Ls[r], r])
    return loss


@_jit
def _scratch(cell, layers, m, K, Lmax, n, G, dt):
    """Every group's scratch for _group_update, on cache-line boundaries."""
    S = cell.states
    Gi = cell.inputs * m
    ST = _aligned_zeros(G * layers * S * (Lmax + 1) * n * m, dt).reshape(
        (G, layers, S, Lmax + 1, n, m))
    Z = _aligned_zeros(G * layers * Lmax * n * cell.stash * m, dt).reshape(
        (G, layers, Lmax, n, cell.stash * m))
    AX = _aligned_zeros(G * Lmax * n * Gi, dt).reshape((G, Lmax, n, Gi))
    AH = _aligned_zeros(G * n * cell.product * m, dt).reshape((G, n, cell.product * m))
    X = _aligned_zeros(G * (layers + 1) * Lmax * n * m, dt).reshape((G, layers + 1, Lmax, n, m))
    Mk = _aligned_zeros(G * layers * Lmax * n * m, dt).reshape((G, layers, Lmax, n, m))
    O = _aligned_zeros(G * Lmax * n * K, dt).reshape((G, Lmax, n, K))
    DH = _aligned_zeros(G * Lmax * n * m, dt).reshape((G, Lmax, n, m))
    DAX = _aligned_zeros(G * Lmax * n * Gi, dt).reshape((G, Lmax, n, Gi))
    carried = max(cell.carried, 1)
    DC = _aligned_zeros(G * Lmax * n * carried * m, dt).reshape((G, Lmax, n, carried * m))
    dS = _aligned_zeros(G * S * n * m, dt).reshape((G, S, n, m))
    Ls = np.zeros((G, n), np.int64)
    return ST, Z, AX, AH, X, Mk, O, DH, DAX, DC, dS, Ls


@_jit
def _training_scratch(cell, layers, m, K, Lmax, B, G, P, dt):
    """Everything _train_batch works in, for windows of up to Lmax characters on B lanes in G
    groups and P flat parameters: _scratch's arrays, then the groups' gradients (G, P), their
    losses (G,), the optimiser's rows (G, _ROW), its bias corrections (2,) and the lanes'
    windows as int32 (B (Lmax + 1),). A training session allocates them once (Session)."""
    n = (B + G - 1) // G
    ST, Z, AX, AH, X, Mk, O, DH, DAX, DC, dS, Lsb = _scratch(cell, layers, m, K, Lmax, n, G,
                                                             dt)
    gflat = _aligned_zeros(G * P, dt).reshape((G, P))
    return (ST, Z, AX, AH, X, Mk, O, DH, DAX, DC, dS, Lsb, gflat, np.zeros(G),
            np.zeros((G, _ROW), dt), np.zeros(2, dt), np.zeros(B * (Lmax + 1), np.int32))


@_jit(parallel=True)
def _train_batch(cell, layers, m, K, theta, off, WT, offT, jobs, s1, s2, opt, consts, betas,
                 opt_step, h, data, width, starts, lengths, resets, first, last, losses, G,
                 dropout, seed_lo, seed_hi, threshold, scale, top, threshold_top, scale_top, ST,
                 Z, AX, AH, X, Mk, O, DH, DAX, DC, dS, Lsb, gflat, gl, rows, bcs, win, fresh):
    """Updates first..last-1 of the schedule (see reference.train_updates) for the lanes of h
    (B, layers, S, m), split into G groups that the threads share out; theta, s1 and s2 are
    the flat parameters and optimiser state (see _Layout), changed in place. The scratch
    after `scale` is _training_scratch's, for windows at least as long as these; WT's copies
    are made first when `fresh`, else they are the last call's (a session's)."""
    B = h.shape[0]
    n = (B + G - 1) // G
    P = theta.size
    R = P // _ROW
    if fresh:
        for g in prange(G):
            _refresh_transposes(theta, WT, jobs, g, G, offT[0, -1])
    Lw = win.size // B                                # the lanes' slots in win
    wst = np.arange(B) * Lw
    yst = wst + 1
    one = consts[_C_ONE]
    theta2 = theta.reshape((R, _ROW))
    s12 = s1.reshape((R, _ROW))
    s22 = s2.reshape((R, _ROW))
    g3 = gflat.reshape((G, R, _ROW))
    for u in range(first, last):
        st = starts[u]
        ln = lengths[u]
        rs = resets[u]
        t_opt = opt_step + (u - first) + 1
        _gather_windows(data, width, st, ln, win, wst)
        for g in prange(G):
            if dropout != _NO_DROPOUT or top:
                for r in range(n):
                    Lsb[g, r] = ln[g * n + r] if g * n + r < B else 0
                _fill_masks(Mk[g], layers, Lsb[g], g * n, n, seed_lo, seed_hi, t_opt,
                            dropout, threshold, scale, top, threshold_top, scale_top)
            gl[g] = _group_update(cell, layers, theta, off, WT, offT, win, wst, win, yst, ln,
                                  rs, h, g * n, n, ST[g], Z[g], AX[g], AH[g], X[g], Mk[g],
                                  O[g], DH[g], DAX[g], DC[g], dS[g], Lsb[g], gflat[g],
                                  dropout, top, one)
        active = _active_lanes(ln)
        _bias_corrections(opt, consts, betas, bcs, t_opt)
        for g in prange(G):                           # sum, average, clip, step: a share each
            _update_rows(theta2, g3, s12, s22, g * R // G, (g + 1) * R // G, active, opt,
                         consts, bcs[0], bcs[1], rows[g])
        for g in prange(G):
            _refresh_transposes(theta, WT, jobs, g, G, offT[0, -1])
        loss_sum = 0.0
        for g in range(G):
            loss_sum += gl[g]
        losses[u - first] = loss_sum / active


# --------------------------------------------------------------------------------------
# One lane, forward only: evaluation, advance and sampling. A lane's scratch (_lane) holds the
# states of `steps` characters: slot 0 of ST1 (layers, S, steps + 1, 1, m) the states before
# them, slot i + 1 those after character i.
#
# Evaluation and advance know their characters in advance, so they take CHUNK of them through
# each layer before the next (_forward_chunk), as training takes a window: one character at a
# time through every layer, the layers' weights take turns in the core's cache, and a network
# whose weights together outgrow it (2 layers of 256 and up on a 2-MB cache) reads them from
# further out at every character. The input part of a layer above 0 becomes one product over
# the chunk, which computes each element as a single step's one-row product does: any chunk
# gives the same bits as one character at a time through every layer (_step_one, which
# sampling needs). A single segment (a held-out part, a text given to `charnn eval`) runs its
# layers side by side on the threads, chunk after chunk (_segment_loss): each core keeps its
# layer's weights in its own cache. docs/speed.md has the figures
# (benchmarks/bench_eval.py).
# --------------------------------------------------------------------------------------

CHUNK = 128               # characters a lane takes through each layer at a time


@_jit
def _lane(cell, layers, m, dt, steps):
    """One lane's scratch for `steps` characters at a time: ST1 (above), the input parts AX1
    (steps, 1, I m), and the cell step's AH1, Z1 and Ls1."""
    S = cell.states
    ST1 = _aligned_zeros(layers * S * (steps + 1) * m, dt).reshape((layers, S, steps + 1, 1, m))
    AX1 = _aligned_zeros(steps * cell.inputs * m, dt).reshape((steps, 1, cell.inputs * m))
    AH1 = _aligned_zeros(cell.product * m, dt).reshape((1, cell.product * m))
    Z1 = _aligned_zeros(cell.stash * m, dt).reshape((1, 1, cell.stash * m))
    Ls1 = np.ones(1, np.int64)
    return ST1, AX1, AH1, Z1, Ls1


@_jit
def _step_one(cell, layers, theta, off, WT, offT, x, ST1, ti, AX1, AH1, Z1, Ls1):
    """Feed character x through every layer from the states in slot ti of ST1 into slot
    1 - ti (a _lane of one step)."""
    Gi = AX1.shape[2]
    to = 1 - ti
    a1 = AX1[0]
    for l in range(layers):
        b_ih = theta[off[l, _B_IH]:off[l, _B_IH] + Gi]
        a = a1[0]
        if l == 0:
            w = theta[off[0, _W_IH] + x * Gi:off[0, _W_IH] + (x + 1) * Gi]   # row x of W_ih0^T
            for k in range(Gi):
                a[k] = w[k] + b_ih[k]
        else:
            _gemm_wt(ST1[l - 1, 0, to], WT, offT[l, 0], offT[l, -1], a1)
            for k in range(Gi):
                a[k] += b_ih[k]
        cells.forward_step(cell, theta, off[l], WT, offT[l], a1, ST1[l], ti, to, Z1, AH1,
                           Ls1, 0)


@_jit
def _layer_chunk(cell, l, theta, off, WT, offT, text, width, c0, L, STl, below, AX1, AH1, Z1,
                 Ls1):
    """Feed characters c0..c0+L-1 through layer l from its states in slot 0 of STl (S,
    >= L + 1, 1, m): character i's states land in slot i + 1. Above layer 0 its inputs are
    the states of the layer below in slots 1..L of `below`."""
    m = STl.shape[3]
    Gi = AX1.shape[2]
    b_ih = theta[off[l, _B_IH]:off[l, _B_IH] + Gi]
    AXs = AX1[:L].reshape((L, Gi))
    if l == 0:                                        # row x of W_ih0^T for each character
        for i in range(L):
            at = off[0, _W_IH] + _char(text, width, c0 + i) * Gi
            w = theta[at:at + Gi]
            a = AXs[i]
            for k in range(Gi):
                a[k] = w[k] + b_ih[k]
    else:                                             # H W_ih^T + b_ih for the whole chunk
        _gemm_wt(below[0, 1:L + 1].reshape((L, m)), WT, offT[l, 0], offT[l, -1], AXs)
        for i in range(L):
            a = AXs[i]
            for k in range(Gi):
                a[k] += b_ih[k]
    for i in range(L):
        cells.forward_step(cell, theta, off[l], WT, offT[l], AX1[i], STl, i, i + 1, Z1, AH1,
                           Ls1, 0)


@_jit
def _forward_chunk(cell, layers, theta, off, WT, offT, text, width, c0, L, ST1, AX1, AH1, Z1,
                   Ls1):
    """Feed characters c0..c0+L-1 of text through the layers, layer after layer, from the
    states in slot 0 of ST1: character i's states land in slot i + 1."""
    for l in range(layers):
        _layer_chunk(cell, l, theta, off, WT, offT, text, width, c0, L, ST1[l],
                     ST1[max(l - 1, 0)], AX1, AH1, Z1, Ls1)


@_jit
def _carry(ST1, L):
    """Slot L's states (the last character's) into slot 0, for the next chunk."""
    for l in range(ST1.shape[0]):
        for s in range(ST1.shape[1]):
            _copy(ST1[l, s, 0, 0], ST1[l, s, L, 0])


@_jit
def _logits(theta, off, layers, h, o):
    """o = V h + c for the top layer's h (m,)."""
    K = o.size
    m = h.size
    V = _mat(theta, off[layers, 0], K, m)
    c = theta[off[layers, 1]:off[layers, 1] + K]
    for k in range(K):
        acc = c[k] - c[k]
        vk = V[k]
        for j in range(m):
            acc += vk[j] * h[j]
        o[k] = acc + c[k]


@_jit
def _score_chunk(theta, off, layers, H, data, width, c0, L, o, total):
    """total minus log p of characters c0 + 1 .. c0 + L, each read from the top layer's state
    after the one before it (slot i + 1 of H, (>= L + 1, 1, m)); o (K,) is scratch. Subtracted
    one character at a time, in order, so any chunking gives the same bits."""
    for i in range(L):
        _logits(theta, off, layers, H[i + 1, 0], o)
        y = _char(data, width, c0 + i + 1)
        s = _shifted_exp(o)
        total -= math.log(np.float64(o[y] / s))
    return total


@_jit
def _load_state(state, ST1, ti):
    for l in range(state.shape[0]):
        for s in range(state.shape[1]):
            _copy(ST1[l, s, ti, 0], state[l, s])


@_jit
def _store_state(ST1, ti, state):
    for l in range(state.shape[0]):
        for s in range(state.shape[1]):
            _copy(state[l, s], ST1[l, s, ti, 0])


@_jit(parallel=True)
def _total_loss(cell, layers, m, K, theta, off, WT, offT, data, width, segments, h0, chunk,
                out):
    """out[q] = the loss of segment q from the state h0[q] (h0[0] for every segment when h0
    has one), `chunk` characters at a time; each segment's total in its own slot, summed by
    the caller in order."""
    S = segments.shape[0]
    shared = h0.shape[0] != S
    for q in prange(S):
        start = segments[q, 0]
        end = segments[q, 1]
        out[q] = 0.0
        if end - start >= 2:
            ST1, AX1, AH1, Z1, Ls1 = _lane(cell, layers, m, theta.dtype, chunk)
            _load_state(h0[0] if shared else h0[q], ST1, 0)
            o = np.empty(K, theta.dtype)
            total = 0.0
            for c0 in range(start, end - 1, chunk):
                L = min(chunk, end - 1 - c0)
                _forward_chunk(cell, layers, theta, off, WT, offT, data, width, c0, L, ST1,
                               AX1, AH1, Z1, Ls1)
                total = _score_chunk(theta, off, layers, ST1[layers - 1, 0], data, width, c0,
                                     L, o, total)
                _carry(ST1, L)
            out[q] = total


@_jit(parallel=True)
def _segment_loss(cell, layers, m, K, theta, off, WT, offT, data, width, start, end, h0,
                  chunk):
    """_total_loss of one segment from the state h0 (layers, S, m), its layers side by side
    on the threads: in wave w, layer l takes chunk w - l, whose inputs the layer below
    made in wave w - 1. Each layer keeps its weights in its own core's cache. A layer's
    chunks alternate between two buffers, so that the layer above reads one while it
    writes the other; the top layer scores its chunks in order, so the total is summed
    as _total_loss sums it: the same bits on any number of threads."""
    S = cell.states
    dt = theta.dtype
    Gi = cell.inputs * m
    ST = _aligned_zeros(layers * 2 * S * (chunk + 1) * m, dt).reshape(
        (layers, 2, S, chunk + 1, 1, m))
    AX = _aligned_zeros(layers * chunk * Gi, dt).reshape((layers, chunk, 1, Gi))
    AH = _aligned_zeros(layers * cell.product * m, dt).reshape((layers, 1, cell.product * m))
    Z = _aligned_zeros(layers * cell.stash * m, dt).reshape((layers, 1, 1, cell.stash * m))
    Ls = np.ones((layers, 1), np.int64)
    for l in range(layers):
        for s in range(S):
            _copy(ST[l, 0, s, 0, 0], h0[l, s])
    total = np.zeros(1)
    chunks = (end - 1 - start + chunk - 1) // chunk
    for wave in range(chunks + layers - 1):
        for l in prange(layers):
            c = wave - l
            if 0 <= c < chunks:
                c0 = start + c * chunk
                L = min(chunk, end - 1 - c0)
                b = c % 2
                STl = ST[l, b]
                if c > 0:                             # the state the last chunk left
                    for s in range(S):
                        _copy(STl[s, 0, 0], ST[l, 1 - b, s, chunk, 0])
                _layer_chunk(cell, l, theta, off, WT, offT, data, width, c0, L, STl,
                             ST[max(l - 1, 0), b], AX[l], AH[l], Z[l], Ls[l])
                if l == layers - 1:
                    total[0] = _score_chunk(theta, off, layers, STl[0], data, width, c0, L,
                                            np.empty(K, dt), total[0])
    return total[0]


@_jit
def _advance(cell, layers, m, theta, off, WT, offT, state, inputs, width, chunk):
    ST1, AX1, AH1, Z1, Ls1 = _lane(cell, layers, m, theta.dtype, chunk)
    _load_state(state, ST1, 0)
    T = inputs.size // width
    for c0 in range(0, T, chunk):
        L = min(chunk, T - c0)
        _forward_chunk(cell, layers, theta, off, WT, offT, inputs, width, c0, L, ST1, AX1, AH1,
                       Z1, Ls1)
        _carry(ST1, L)
    _store_state(ST1, 0, state)


@njit(cache=True, error_model="numpy")
def _sample(cell, layers, m, K, theta, off, WT, offT, state, x, uniforms, temperature,
            top_k, top_p, greedy, stop_index, out):
    """reference.sample_indices, compiled: the network's step, then numerics._draw."""
    ST1, AX1, AH1, Z1, Ls1 = _lane(cell, layers, m, theta.dtype, 1)
    _load_state(state, ST1, 0)
    o = np.empty(K, theta.dtype)
    e = np.empty(K, theta.dtype)
    p = np.empty(K, np.float64)
    cdf = np.empty(K, np.float64)
    sorted_p = np.empty(K, np.float64)
    n = 0
    ti = 0
    for q in range(uniforms.size):
        _step_one(cell, layers, theta, off, WT, offT, x, ST1, ti, AX1, AH1, Z1, Ls1)
        ti = 1 - ti
        _logits(theta, off, layers, ST1[layers - 1, 0, ti, 0], o)
        x = _draw(o, e, p, cdf, sorted_p, temperature, top_k, top_p, greedy, uniforms[q])
        out[n] = x
        n += 1
        if x == stop_index:
            break
    _store_state(ST1, ti, state)
    return n


@_jit
def _lossgrad(cell, layers, m, K, theta, off, WT, offT, jobs, inputs, targets, h, masks,
              dropout, top, gflat, one):
    """One lane's loss and gradients (into gflat) over inputs -> targets from the state h
    (1, layers, S, m), which becomes the last state; masks (layers, L, 1, m): between the
    layers when `dropout` is _GIVEN_DROPOUT, masks[layers - 1] on the top's output when
    `top`."""
    L = inputs.size
    _refresh_transposes(theta, WT, jobs, 0, 1, offT[0, -1])
    ST, Z, AX, AH, X, Mk, O, DH, DAX, DC, dS, Ls = _scratch(cell, layers, m, K, max(L, 1), 1,
                                                            1, theta.dtype)
    for l in range(masks.shape[0]):                  # masks (layers, L, 1, m)
        for t in range(L):
            _copy(Mk[0, l, t, 0], masks[l, t, 0])
    ln = np.full(1, L, np.int32)
    rs = np.zeros(1, np.uint8)
    st = np.zeros(1, np.int64)
    return _group_update(cell, layers, theta, off, WT, offT, inputs, st, targets, st, ln, rs,
                         h, 0, 1, ST[0], Z[0], AX[0], AH[0], X[0], Mk[0], O[0], DH[0],
                         DAX[0], DC[0], dS[0], Ls[0], gflat, dropout, top, one)


# --------------------------------------------------------------------------------------
# The interface of backends/reference.py for the stacked networks.
# --------------------------------------------------------------------------------------

class _Layout:
    """Where each parameter lies in the flat vectors, for the parameters' network and its cell
    (a module of CELLS, compiled/__init__.py): names per layer W_ih, b_ih, then the cell's
    OWN, then V, c; their offsets off (layers + 1, 2 + len(OWN)); the transposed copies'
    offsets offT and the jobs that refresh them; the sizes."""

    def __init__(self, params, cell_module):
        network = Network.of_params(params)              # the network the params carry
        self.cell = cell_module.CELL
        self.layers = layers = network.layers
        self.K, self.m = K, m = params["V"].shape
        self.S = network.state_vectors
        self.dtype = params["V"].dtype
        per_layer = ("W_ih", "b_ih") + tuple(cell_module.OWN)
        self.names = [f"{w}{l}" for l in range(layers) for w in per_layer] + ["V", "c"]
        offsets, at = {}, 0
        for name in self.names:
            offsets[name] = at
            at += -(-params[name].size // _ALIGN) * _ALIGN
        self.size = -(-at // _ROW) * _ROW
        self.off = np.zeros((layers + 1, len(per_layer)), np.int64)
        for l in range(layers):
            self.off[l] = [offsets[f"{w}{l}"] for w in per_layer]
        self.off[layers, :2] = offsets["V"], offsets["c"]
        # the transposed copies: W_ih^T of the layers above 0, the cell's TRANSPOSED
        self.offT = np.full((layers, 2 + len(cell_module.TRANSPOSED)), -1, np.int64)
        self.offT[:, -1] = 0                             # as they are, not packed in panels
        jobs, at = [], 0
        for l in range(layers):
            for k, w in enumerate(("W_ih",) + tuple(cell_module.TRANSPOSED)):
                if (l, w) == (0, "W_ih"):
                    continue                             # layer 0 reads rows of W_ih0^T
                rows, cols = params[f"{w}{l}"].shape
                jobs.append((offsets[f"{w}{l}"], at, rows, cols))
                self.offT[l, k] = at
                at += -(-rows * cols // _ALIGN) * _ALIGN
        self.jobs = np.array(jobs, np.int64).reshape(-1, 4)
        self.transposed_size = max(at, 1)

    def pack(self, arrays) -> np.ndarray:
        """The flat vector of `arrays` (named like params), layer 0's W_ih transposed."""
        flat = np.zeros(self.size + 64 // self.dtype.itemsize, self.dtype)
        skip = (-flat.ctypes.data % 64) // self.dtype.itemsize   # on a cache-line boundary
        flat = flat[skip:skip + self.size]
        for name, at in zip(self.names, self._offsets()):
            a = arrays[name].T if name == "W_ih0" else arrays[name]
            flat[at:at + a.size] = np.ascontiguousarray(a).reshape(-1)
        return flat

    def unpack(self, flat: np.ndarray, arrays) -> None:
        """Write the flat vector back into `arrays`, in place."""
        for name, at in zip(self.names, self._offsets()):
            a = arrays[name]
            part = flat[at:at + a.size]
            if name == "W_ih0":
                a[...] = part.reshape(a.shape[1], a.shape[0]).T
            else:
                a[...] = part.reshape(a.shape)

    def transposes(self, theta: np.ndarray) -> np.ndarray:
        """WT with every transposed copy of theta's matrices."""
        WT = np.zeros(self.transposed_size, self.dtype)
        _refresh_transposes(theta, WT, self.jobs, 0, 1, False)
        return WT

    def _offsets(self) -> list[int]:
        return [int(a) for a in self.off[:self.layers].reshape(-1)] + [int(self.off[-1, 0]),
                                                                       int(self.off[-1, 1])]


def _check(params) -> None:
    dtype = params["V"].dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"parameters must be float32 or float64, not {dtype}")
    for name, a in params.items():
        if a.dtype != dtype:
            raise ValueError(f"parameter {name} must be {dtype}")


class Session(KernelSession):
    """A training run on the compiled stack: the flat parameters and optimiser state (_Layout),
    the transposed copies and every scratch array of _train_batch, made once when the run
    starts and reused by every call, so that a call of one update costs what an update costs.

    Opened on the trainer's arrays (params, the optimiser's state, the lanes' states h), like
    backends.TrainingSession: train_updates must be given the same arrays, which their owner
    leaves alone until sync() writes the session's values back into them (h is trained in
    place: the session keeps no copy of it)."""

    def __init__(self, cell_module, params, rule: str, opt_state: dict, h: np.ndarray):
        _check(params)
        super().__init__(params, rule, opt_state, h)
        self.lay = lay = _Layout(params, cell_module)
        if h.dtype != lay.dtype or not h.flags.c_contiguous or \
                h.shape[1:] != (lay.layers, lay.S, lay.m):
            raise ValueError(f"h must be a C-contiguous (lanes, {lay.layers}, {lay.S}, {lay.m})"
                             " array of the params' dtype")
        self.theta = lay.pack(params)
        self.s1 = lay.pack({name: opt_state[f"m_{name}"] for name in lay.names})
        self.s2 = lay.pack({name: opt_state[f"v_{name}"] for name in lay.names}) \
            if rule == "adam" else self.s1
        self.WT = np.zeros(lay.transposed_size, lay.dtype)
        self.groups = lane_groups(h.shape[0])
        # a session's products read its copies packed in panels where its groups have 4
        # rows or more (a one-row product reads a panel a vector at a time)
        self.offT = lay.offT.copy()
        self.offT[:, -1] = -(-h.shape[0] // self.groups) >= 4

    def train_updates(self, params, optimiser: Optimiser, h: np.ndarray, windows: Windows,
                      dropout: Dropout = NO_DROPOUT) -> np.ndarray:
        self.check(params, optimiser, h)
        for q in (dropout.p, dropout.output):
            if not 0 <= q < 1:
                raise ValueError(f"dropout probability must be in [0, 1), got {q}")
        lay = self.lay
        losses = np.empty(windows.count)
        if not windows.count:
            return losses
        text_and_schedule, longest = self.windows(windows)
        if longest > self.window:                     # the first call, or longer windows
            self.window = longest
            self.scratch = _training_scratch(lay.cell, lay.layers, lay.m, lay.K, self.window,
                                             h.shape[0], self.groups, lay.size, lay.dtype)
        hashed = dropout.p > 0 and lay.layers > 1
        top = dropout.output > 0
        seed = int(dropout.seed)
        _train_batch(lay.cell, lay.layers, lay.m, lay.K, self.theta, lay.off, self.WT,
                     self.offT, lay.jobs, self.s1, self.s2, _OPT_CODE[optimiser.rule],
                     self.constants(lay.dtype, optimiser), self.betas, int(optimiser.step), h,
                     *text_and_schedule, windows.first, windows.last, losses, self.groups,
                     _HASHED_DROPOUT if hashed else _NO_DROPOUT,
                     seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF,
                     np.uint64(dropout_hash.keep_threshold(dropout.p) if hashed else 0),
                     lay.dtype.type(1 / (1 - dropout.p)), top,
                     np.uint64(dropout_hash.keep_threshold(dropout.output)),
                     lay.dtype.type(1 / (1 - dropout.output)), *self.scratch, self.fresh)
        self.fresh = False
        return losses

    def sync(self) -> None:
        """Write the session's parameters and optimiser state into the trainer's arrays."""
        lay = self.lay
        lay.unpack(self.theta, self.params)
        lay.unpack(self.s1, {name: self.opt_state[f"m_{name}"] for name in lay.names})
        if self.rule == "adam":
            lay.unpack(self.s2, {name: self.opt_state[f"v_{name}"] for name in lay.names})


def train_updates(cell_module, params, optimiser: Optimiser, h: np.ndarray, windows: Windows,
                  dropout: Dropout = NO_DROPOUT) -> np.ndarray:
    """reference.train_updates for a stacked network of cell_module's cell, compiled: the
    updates of `windows` in one call (a Session of one call); params, the optimiser's state
    and h (lanes, layers, S, m) change in place."""
    session = Session(cell_module, params, optimiser.rule, optimiser.state, h)
    losses = session.train_updates(params, optimiser, h, windows, dropout)
    session.sync()
    return losses


def loss_and_gradients(cell_module, params, inputs: np.ndarray, targets: np.ndarray,
                       state: np.ndarray, masks=None):
    """The network's loss_and_gradients (networks/stack.py), compiled: (loss, grads,
    state_last) of one sequence from `state` (layers, S, m), with the dropout `masks` of
    dropout_masks (or None; `layers` of them when the top's output is dropped)."""
    _check(params)
    lay = _Layout(params, cell_module)
    dtype = lay.dtype
    theta = lay.pack(params)
    inputs = np.ascontiguousarray(inputs, dtype=np.int32)
    targets = np.ascontiguousarray(targets, dtype=np.int32)
    h = np.array(state, dtype=dtype).reshape(1, lay.layers, lay.S, lay.m).copy()
    L = inputs.size
    given = np.zeros((lay.layers, max(L, 1), 1, lay.m), dtype)
    between = masks is not None and lay.layers > 1
    top = masks is not None and len(masks) == lay.layers
    if masks is not None:
        for l, mask in enumerate(masks):
            given[l, :L, 0] = mask
    gflat = np.zeros_like(theta)
    loss = _lossgrad(lay.cell, lay.layers, lay.m, lay.K, theta, lay.off,
                     np.zeros(lay.transposed_size, dtype), lay.offT, lay.jobs, inputs, targets,
                     h, given[:, :L], _GIVEN_DROPOUT if between else _NO_DROPOUT, top,
                     gflat, dtype.type(1))
    grads = {name: np.zeros_like(a) for name, a in params.items()}
    lay.unpack(gflat, grads)
    return float(loss), grads, h[0]


def _theta_and_transposes(cell_module, params):
    _check(params)
    lay = _Layout(params, cell_module)
    theta = lay.pack(params)
    return lay, theta, lay.transposes(theta)


def total_loss(cell_module, params, data: np.ndarray, segments: np.ndarray,
               h0: np.ndarray | None = None, chunk: int = CHUNK) -> tuple[float, int]:
    """reference.total_loss for a stacked network, compiled, `chunk` characters at a time
    (any chunk gives the same bits)."""
    lay, theta, WT = _theta_and_transposes(cell_module, params)
    segments = np.ascontiguousarray(np.asarray(segments, dtype=np.int64).reshape(-1, 2))
    shape = (lay.layers, lay.S, lay.m)
    if h0 is None:
        states = np.zeros((1,) + shape, lay.dtype)
    else:
        states = np.asarray(h0)
        if states.shape == shape:
            states = states[None]
        elif states.shape != (len(segments),) + shape:
            raise ValueError(f"h0 must have shape {(len(segments),) + shape} or {shape}, "
                             f"not {states.shape}")
        states = np.ascontiguousarray(states, dtype=lay.dtype)
    per_segment = np.zeros(len(segments))
    if len(segments) == 1 and segments[0, 1] - segments[0, 0] >= 2:
        per_segment[0] = _segment_loss(lay.cell, lay.layers, lay.m, lay.K, theta, lay.off, WT,
                                       lay.offT, *_text(data), int(segments[0, 0]),
                                       int(segments[0, 1]), states[0], int(chunk))
    elif len(segments):
        _total_loss(lay.cell, lay.layers, lay.m, lay.K, theta, lay.off, WT, lay.offT,
                    *_text(data), segments, states, int(chunk), per_segment)
    lengths = segments[:, 1] - segments[:, 0]
    count = int(np.sum(np.where(lengths >= 2, lengths - 1, 0)))
    return float(per_segment.sum()), count


def advance(cell_module, params, h: np.ndarray, inputs: np.ndarray,
            chunk: int = CHUNK) -> np.ndarray:
    """reference.advance for a stacked network, compiled: the state after feeding `inputs`,
    `chunk` characters at a time (any chunk gives the same bits)."""
    lay, theta, WT = _theta_and_transposes(cell_module, params)
    state = np.array(h, dtype=lay.dtype).reshape(lay.layers, lay.S, lay.m).copy()
    _advance(lay.cell, lay.layers, lay.m, theta, lay.off, WT, lay.offT, state, *_text(inputs),
             int(chunk))
    return state


def sample_indices(cell_module, params, h: np.ndarray, x: int, uniforms: np.ndarray,
                   temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                   greedy: bool = False, stop_index: int = -1) -> np.ndarray:
    """reference.sample_indices for a stacked network, compiled; h (layers, S, m) is updated
    in place to the state the last character was drawn from."""
    lay, theta, WT = _theta_and_transposes(cell_module, params)
    uniforms = np.ascontiguousarray(uniforms, dtype=np.float64)
    out = np.empty(len(uniforms), np.int64)
    state = np.array(h, dtype=lay.dtype).reshape(lay.layers, lay.S, lay.m).copy()
    n = _sample(lay.cell, lay.layers, lay.m, lay.K, theta, lay.off, WT, lay.offT, state,
                int(x), uniforms, lay.dtype.type(temperature), int(top_k), float(top_p),
                bool(greedy), int(stop_index), out)
    h[...] = state.reshape(h.shape)
    return out[:n].copy()
