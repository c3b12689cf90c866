"""What the compiled LSTM and GRU share: layers of one cell (lstm.py, gru.py) over time, the
output layer, dropout between layers, the batch loop over lane groups, and the interface of
backends/reference.py for them. The math is networks/stack.py's with the cell of the
parameters' network; the losses and gradients equal the reference's to rounding.

What makes it fast:
  * The lanes of a group advance together, layer after layer: a layer's recurrent part of one
    step is one (lanes x m)(m x G m) product (G = 4 gates for the LSTM, 3 for the GRU), and
    its input part for the whole window is one (L lanes x m)(m x G m) product before the
    steps start (layer 0 reads the columns of W_ih0 of its characters instead: the input is
    one-hot).
  * The output layer of every position of every lane is one product, and so are the
    gradients: dV = G^T H, and per layer dW_hh = DA^T H_prev, dW_ih = DA^T X and the
    gradient sent to the layer below, DA W_ih. Only dL/dh_{t-1} = DA_t W_hh is a product per
    step (it cannot be batched over time).
  * Every product is products.py's _gemm: register tiles when the rows are whole tiles
    (m = 128, 256, ...: G m is then one too), loop kernels otherwise.
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

from ... import optim
from ...networks import Network
from ...networks import dropout as dropout_hash
from . import gru, lstm
from .lanes import _active_lanes, _char, _gather_windows, _text, lane_groups
from .numerics import _copy, _draw, _jit, _shifted_exp, _softmax_row
from .optimisers import _C_ONE, _OPT_CODE, _bias_corrections, _constants, _update_rows
from .products import _aligned_zeros, _gemm, _matmul_nt, _transpose_rows

_LSTM, _GRU = 0, 1
_ALIGN = 16               # elements: each parameter starts on a 64-byte boundary in float32
_ROW = 512                # the flat vectors are stepped in rows of this many elements
_NO_DROPOUT, _HASHED_DROPOUT, _GIVEN_DROPOUT = 0, 1, 2


# --------------------------------------------------------------------------------------
# The flat layout: per layer W_ih (layer 0: transposed, (K, G m)), W_hh (G m, m), b_ih, b_hh,
# then V (K, m) and c (K,), each from off[slot]. WT holds the transposed copies the forward
# products read: W_hh^T (m, G m) from offT[2 l], W_ih^T (m, G m) from offT[2 l + 1] (l > 0).
# --------------------------------------------------------------------------------------

@_jit
def _mat(flat, lo, rows, cols):
    return flat[lo:lo + rows * cols].reshape((rows, cols))


@_jit
def _refresh_transposes(theta, off, WT, offT, layers, m, Gm, share, shares):
    """WT's copies of W_hh^T and W_ih^T (l > 0), the rows of share `share` of `shares`."""
    lo = share * Gm // shares
    hi = (share + 1) * Gm // shares
    for l in range(layers):
        _transpose_rows(_mat(theta, off[4 * l + 1], Gm, m), _mat(WT, offT[2 * l], m, Gm), lo, hi)
        if l > 0:
            _transpose_rows(_mat(theta, off[4 * l], Gm, m), _mat(WT, offT[2 * l + 1], m, Gm),
                            lo, hi)


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
def _fill_masks(Mk, layers, Ls, lo, n, seed_lo, seed_hi, update, threshold, scale):
    """Mk[l, t, r] = lane lo + r's dropout mask below layer l + 1 at step t (dropout.py)."""
    m = Mk.shape[3]
    zero = scale - scale
    seed_key = _mix(np.uint64(seed_lo), np.uint64(seed_hi))
    key_u = _mix(seed_key, np.uint64(update) & _M32)
    for r in range(n):
        key_lane = _mix(key_u, np.uint64(lo + r) & _M32)
        for l in range(layers - 1):
            key = _mix(key_lane, np.uint64(l))
            for t in range(Ls[r]):
                mk = Mk[l, t, r]
                base = np.uint64(t * m)
                for j in range(m):
                    u = _mix(key, (base + np.uint64(j)) & _M32)
                    mk[j] = scale if u >= threshold else zero


# --------------------------------------------------------------------------------------
# One lane group, one update: forward through the layers, the output layer, and back.
# --------------------------------------------------------------------------------------

@_jit
def _group_update(kind, layers, theta, off, WT, offT, xs, xst, ys, yst, ln, rs, h, lo, n,
                  H, C, Z, TC, AX, AH, X, Mk, O, DH, DAX, DAH, dh, dc, Ls, gflat, dropout, one):
    """Forward and backward of lanes lo..lo+n-1 (those >= B are padding): the loss summed
    over their windows, the gradients into gflat (overwritten), their states in h updated.

    Lane r reads inputs xs[xst[lo + r] + t] and targets ys[yst[lo + r] + t], t < ln[lo + r];
    rs[lo + r] zeroes its state first. Scratch: H, C (layers, >= L+1, n, m) the states,
    Z (layers, >= L, n, 4m) the gates, TC (layers, >= L, n, m) tanh(c), AX (>= L, n, Gm),
    AH (n, Gm), X (layers, >= L, n, m) the inputs of layers above 0, Mk (layers, >= L, n, m)
    the dropout masks (filled by the caller), O (>= L, n, K), DH (>= L, n, m), DAX and DAH
    (>= L, n, Gm; one array for the LSTM), dh and dc (n, m), Ls (n,)."""
    B = h.shape[0]
    m = H.shape[3]
    K = O.shape[2]
    Gm = AH.shape[1]
    Lg = 0
    for r in range(n):
        lane = lo + r
        L = 0
        if lane < B:
            L = ln[lane]
        Ls[r] = L
        for l in range(layers):
            if L > 0 and not rs[lane]:
                _copy(H[l, 0, r], h[lane, l, 0])
                if kind == _LSTM:
                    _copy(C[l, 0, r], h[lane, l, 1])
            else:
                H[l, 0, r] = 0
                C[l, 0, r] = 0
        Lg = max(Lg, L)
    gflat[:] = 0
    if Lg == 0:
        return 0.0
    N = Lg * n
    # forward, layer after layer
    for l in range(layers):
        b_ih = theta[off[4 * l + 2]:off[4 * l + 2] + Gm]
        b_hh = theta[off[4 * l + 3]:off[4 * l + 3] + Gm]
        if l == 0:                                    # W_ih0 x_t: a row of W_ih0^T
            W0T = _mat(theta, off[0], K, Gm)
            for t in range(Lg):
                for r in range(n):
                    if t < Ls[r]:
                        w = W0T[xs[xst[lo + r] + t]]
                        a = AX[t, r]
                        for k in range(Gm):
                            a[k] = w[k] + b_ih[k]
        else:                                         # X W_ih^T + b_ih for the whole window
            for t in range(Lg):
                for r in range(n):
                    x = X[l, t, r]
                    hb = H[l - 1, t + 1, r]
                    if dropout != 0:
                        mk = Mk[l - 1, t, r]
                        if t < Ls[r]:
                            for j in range(m):
                                x[j] = hb[j] * mk[j]
                        else:
                            x[:] = 0
                    else:
                        _copy(x, hb)
            AXs = AX[:Lg].reshape((N, Gm))
            _gemm(X[l, :Lg].reshape((N, m)), _mat(WT, offT[2 * l + 1], m, Gm), AXs, False,
                  False)
            for q in range(N):
                a = AXs[q]
                for k in range(Gm):
                    a[k] += b_ih[k]
        WhhT = _mat(WT, offT[2 * l], m, Gm)
        for t in range(Lg):
            _gemm(H[l, t], WhhT, AH, False, False)    # H_{t-1} W_hh^T: all lanes at once
            if kind == _LSTM:
                lstm._cell_forward(AX[t], AH, b_hh, H[l, t], C[l, t], H[l, t + 1],
                                   C[l, t + 1], Z[l, t], TC[l, t], Ls, t)
            else:
                gru._cell_forward(AX[t], AH, b_hh, H[l, t], C[l, t], H[l, t + 1],
                                  C[l, t + 1], Z[l, t], TC[l, t], Ls, t)
    # the output layer over all positions at once: O = H V^T + c, softmax, G = P - onehot(y)
    top = layers - 1
    V = _mat(theta, off[4 * layers], K, m)
    c = theta[off[4 * layers + 1]:off[4 * layers + 1] + K]
    gV = _mat(gflat, off[4 * layers], K, m)
    gc = gflat[off[4 * layers + 1]:off[4 * layers + 1] + K]
    Hs = H[top, 1:Lg + 1].reshape((N, m))
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
    # backward, layer after layer from the top, each back through time
    DAXs = DAX[:Lg].reshape((N, Gm))
    DAHs = DAH[:Lg].reshape((N, Gm))
    for l in range(layers - 1, -1, -1):
        Whh = _mat(theta, off[4 * l + 1], Gm, m)
        dh[:] = 0
        dc[:] = 0
        for t in range(Lg - 1, -1, -1):
            if kind == _LSTM:
                lstm._cell_backward(DH[t], dh, dc, Z[l, t], TC[l, t], C[l, t], H[l, t],
                                    DAX[t], DAH[t], Ls, t)
            else:
                gru._cell_backward(DH[t], dh, dc, Z[l, t], TC[l, t], C[l, t], H[l, t],
                                   DAX[t], DAH[t], Ls, t)
            if t > 0:                                 # dL/dh_{t-1} (+)= DA_t W_hh
                _gemm(DAH[t], Whh, dh, False, kind == _GRU)
        _gemm(DAHs, H[l, :Lg].reshape((N, m)), _mat(gflat, off[4 * l + 1], Gm, m), True, False)
        gb_ih = gflat[off[4 * l + 2]:off[4 * l + 2] + Gm]
        gb_hh = gflat[off[4 * l + 3]:off[4 * l + 3] + Gm]
        for q in range(N):
            dax = DAXs[q]
            dah = DAHs[q]
            for k in range(Gm):
                gb_ih[k] += dax[k]
                gb_hh[k] += dah[k]
        if l > 0:
            _gemm(DAXs, X[l, :Lg].reshape((N, m)), _mat(gflat, off[4 * l], Gm, m), True,
                  False)                              # dW_ih = DA^T X
            _gemm(DAXs, _mat(theta, off[4 * l], Gm, m), DHs, False, False)   # to layer l-1
            if dropout != 0:
                for t in range(Lg):
                    for r in range(n):
                        d = DH[t, r]
                        mk = Mk[l - 1, t, r]
                        if t < Ls[r]:
                            for j in range(m):
                                d[j] = d[j] * mk[j]
        else:                                         # dW_ih0[:, x_t] += da_t
            gW0T = _mat(gflat, off[0], K, Gm)
            for t in range(Lg):
                for r in range(n):
                    if t < Ls[r]:
                        row = gW0T[xs[xst[lo + r] + t]]
                        da = DAX[t, r]
                        for k in range(Gm):
                            row[k] += da[k]
    for r in range(n):
        if Ls[r] > 0:
            for l in range(layers):
                _copy(h[lo + r, l, 0], H[l, Ls[r], r])
                if kind == _LSTM:
                    _copy(h[lo + r, l, 1], C[l, Ls[r], r])
    return loss


@_jit
def _scratch(kind, layers, m, K, Gm, Lmax, n, G, dt):
    """Every group's scratch for _group_update, on cache-line boundaries."""
    H = _aligned_zeros(G * layers * (Lmax + 1) * n * m, dt).reshape((G, layers, Lmax + 1, n, m))
    C = _aligned_zeros(G * layers * (Lmax + 1) * n * m, dt).reshape((G, layers, Lmax + 1, n, m))
    Z = _aligned_zeros(G * layers * Lmax * n * 4 * m, dt).reshape((G, layers, Lmax, n, 4 * m))
    TC = _aligned_zeros(G * layers * Lmax * n * m, dt).reshape((G, layers, Lmax, n, m))
    AX = _aligned_zeros(G * Lmax * n * Gm, dt).reshape((G, Lmax, n, Gm))
    AH = _aligned_zeros(G * n * Gm, dt).reshape((G, n, Gm))
    X = _aligned_zeros(G * layers * Lmax * n * m, dt).reshape((G, layers, Lmax, n, m))
    Mk = _aligned_zeros(G * layers * Lmax * n * m, dt).reshape((G, layers, Lmax, n, m))
    O = _aligned_zeros(G * Lmax * n * K, dt).reshape((G, Lmax, n, K))
    DH = _aligned_zeros(G * Lmax * n * m, dt).reshape((G, Lmax, n, m))
    DAX = _aligned_zeros(G * Lmax * n * Gm, dt).reshape((G, Lmax, n, Gm))
    DAH = DAX
    if kind == _GRU:
        DAH = _aligned_zeros(G * Lmax * n * Gm, dt).reshape((G, Lmax, n, Gm))
    dh = _aligned_zeros(G * n * m, dt).reshape((G, n, m))
    dc = _aligned_zeros(G * n * m, dt).reshape((G, n, m))
    Ls = np.zeros((G, n), np.int64)
    return H, C, Z, TC, AX, AH, X, Mk, O, DH, DAX, DAH, dh, dc, Ls


@_jit(parallel=True)
def _train_batch(kind, layers, m, K, Gm, theta, off, s1, s2, opt, consts, betas, opt_step,
                 h, data, width, starts, lengths, resets, first, last, losses, G, dropout,
                 seed_lo, seed_hi, threshold, scale):
    """Updates first..last-1 of the schedule (see reference.train_updates) for the lanes of h
    (B, layers, S, m), split into G groups that the threads share out; theta, s1 and s2 are
    the flat parameters and optimiser state (see _layout), changed in place."""
    B = h.shape[0]
    n = (B + G - 1) // G
    dt = theta.dtype
    Lmax = 1
    for u in range(first, last):
        for lane in range(B):
            Lmax = max(Lmax, lengths[u, lane])
    H, C, Z, TC, AX, AH, X, Mk, O, DH, DAX, DAH, dh, dc, Lsb = _scratch(
        kind, layers, m, K, Gm, Lmax, n, G, dt)
    P = theta.size
    R = P // _ROW
    gflat = _aligned_zeros(G * P, dt).reshape((G, P))
    WT = _aligned_zeros(2 * layers * m * Gm, dt)
    offT = np.arange(2 * layers) * (m * Gm)
    for g in prange(G):
        _refresh_transposes(theta, off, WT, offT, layers, m, Gm, g, G)
    gl = np.zeros(G)
    rows = np.zeros((G, _ROW), dt)
    bcs = np.zeros(2, dt)
    win = np.zeros(B * (Lmax + 1), np.int32)         # the lanes' windows, as int32
    wst = np.arange(B) * (Lmax + 1)
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
            if dropout != _NO_DROPOUT:
                for r in range(n):
                    Lsb[g, r] = ln[g * n + r] if g * n + r < B else 0
                _fill_masks(Mk[g], layers, Lsb[g], g * n, n, seed_lo, seed_hi, t_opt,
                            threshold, scale)
            gl[g] = _group_update(kind, layers, theta, off, WT, offT, win, wst, win, yst, ln,
                                  rs, h, g * n, n, H[g], C[g], Z[g], TC[g], AX[g], AH[g],
                                  X[g], Mk[g], O[g], DH[g], DAX[g], DAH[g], dh[g], dc[g],
                                  Lsb[g], gflat[g], dropout, one)
        active = _active_lanes(ln)
        _bias_corrections(opt, consts, betas, bcs, t_opt)
        for g in prange(G):                           # sum, average, clip, step: a share each
            _update_rows(theta2, g3, s12, s22, g * R // G, (g + 1) * R // G, active, opt,
                         consts, bcs[0], bcs[1], rows[g])
        for g in prange(G):
            _refresh_transposes(theta, off, WT, offT, layers, m, Gm, g, G)
        loss_sum = 0.0
        for g in range(G):
            loss_sum += gl[g]
        losses[u - first] = loss_sum / active


# --------------------------------------------------------------------------------------
# One lane, forward only: evaluation, advance and sampling.
# --------------------------------------------------------------------------------------

@_jit
def _step_one(kind, layers, theta, off, WT, offT, x, Hst, Cst, AX1, AH1, Z1, TC1, Ls1):
    """Feed character x through every layer from the state Hst, Cst (layers, 1, m), in
    place (Cst is Hst for the GRU, which has no cell)."""
    m = Hst.shape[2]
    Gm = AH1.shape[1]
    for l in range(layers):
        b_ih = theta[off[4 * l + 2]:off[4 * l + 2] + Gm]
        b_hh = theta[off[4 * l + 3]:off[4 * l + 3] + Gm]
        a = AX1[0]
        if l == 0:
            w = theta[off[0] + x * Gm:off[0] + (x + 1) * Gm]      # row x of W_ih0^T
            for k in range(Gm):
                a[k] = w[k] + b_ih[k]
        else:
            _gemm(Hst[l - 1], _mat(WT, offT[2 * l + 1], m, Gm), AX1, False, False)
            for k in range(Gm):
                a[k] += b_ih[k]
        _gemm(Hst[l], _mat(WT, offT[2 * l], m, Gm), AH1, False, False)
        if kind == _LSTM:
            lstm._cell_forward(AX1, AH1, b_hh, Hst[l], Cst[l], Hst[l], Cst[l], Z1, TC1, Ls1, 0)
        else:
            gru._cell_forward(AX1, AH1, b_hh, Hst[l], Cst[l], Hst[l], Cst[l], Z1, TC1, Ls1, 0)


@_jit
def _logits(theta, off, layers, h, o):
    """o = V h + c for the top layer's h (m,)."""
    K = o.size
    m = h.size
    V = _mat(theta, off[4 * layers], K, m)
    c = theta[off[4 * layers + 1]:off[4 * layers + 1] + K]
    for k in range(K):
        acc = c[k] - c[k]
        vk = V[k]
        for j in range(m):
            acc += vk[j] * h[j]
        o[k] = acc + c[k]


@_jit
def _one_lane(kind, layers, m, Gm, dt):
    """A single lane's scratch for _step_one: state rows H, C (layers, 1, m) and the gates."""
    Hst = _aligned_zeros(layers * m, dt).reshape((layers, 1, m))
    Cst = _aligned_zeros(layers * m, dt).reshape((layers, 1, m))
    AX1 = _aligned_zeros(Gm, dt).reshape((1, Gm))
    AH1 = _aligned_zeros(Gm, dt).reshape((1, Gm))
    Z1 = _aligned_zeros(4 * m, dt).reshape((1, 4 * m))
    TC1 = _aligned_zeros(m, dt).reshape((1, m))
    Ls1 = np.ones(1, np.int64)
    return Hst, Cst, AX1, AH1, Z1, TC1, Ls1


@_jit
def _load_state(kind, state, Hst, Cst):
    for l in range(state.shape[0]):
        _copy(Hst[l, 0], state[l, 0])
        if kind == _LSTM:
            _copy(Cst[l, 0], state[l, 1])


@_jit
def _store_state(kind, Hst, Cst, state):
    for l in range(state.shape[0]):
        _copy(state[l, 0], Hst[l, 0])
        if kind == _LSTM:
            _copy(state[l, 1], Cst[l, 0])


@_jit(parallel=True)
def _total_loss(kind, layers, m, K, Gm, theta, off, WT, offT, data, width, segments, h0, out):
    """out[q] = the loss of segment q from the state h0[q] (h0[0] for every segment when h0
    has one); each segment's total in its own slot, summed by the caller in order."""
    S = segments.shape[0]
    shared = h0.shape[0] != S
    for q in prange(S):
        start = segments[q, 0]
        end = segments[q, 1]
        out[q] = 0.0
        if end - start >= 2:
            Hst, Cst, AX1, AH1, Z1, TC1, Ls1 = _one_lane(kind, layers, m, Gm, theta.dtype)
            if kind == _GRU:
                Cst = Hst
            _load_state(kind, h0[0] if shared else h0[q], Hst, Cst)
            o = np.empty(K, theta.dtype)
            total = 0.0
            for t in range(start, end - 1):
                _step_one(kind, layers, theta, off, WT, offT, _char(data, width, t), Hst, Cst,
                          AX1, AH1, Z1, TC1, Ls1)
                _logits(theta, off, layers, Hst[layers - 1, 0], o)
                y = _char(data, width, t + 1)
                s = _shifted_exp(o)
                total -= math.log(np.float64(o[y] / s))
            out[q] = total


@_jit
def _advance(kind, layers, m, Gm, theta, off, WT, offT, state, inputs, width):
    Hst, Cst, AX1, AH1, Z1, TC1, Ls1 = _one_lane(kind, layers, m, Gm, theta.dtype)
    if kind == _GRU:
        Cst = Hst
    _load_state(kind, state, Hst, Cst)
    for t in range(inputs.size // width):
        _step_one(kind, layers, theta, off, WT, offT, _char(inputs, width, t), Hst, Cst, AX1,
                  AH1, Z1, TC1, Ls1)
    _store_state(kind, Hst, Cst, state)


@njit(cache=True, error_model="numpy")
def _sample(kind, layers, m, K, Gm, theta, off, WT, offT, state, x, uniforms, temperature,
            top_k, top_p, greedy, stop_index, out):
    """reference.sample_indices, compiled: the network's step, then numerics._draw."""
    Hst, Cst, AX1, AH1, Z1, TC1, Ls1 = _one_lane(kind, layers, m, Gm, theta.dtype)
    if kind == _GRU:
        Cst = Hst
    _load_state(kind, state, Hst, Cst)
    o = np.empty(K, theta.dtype)
    e = np.empty(K, theta.dtype)
    p = np.empty(K, np.float64)
    cdf = np.empty(K, np.float64)
    sorted_p = np.empty(K, np.float64)
    n = 0
    for q in range(uniforms.size):
        _step_one(kind, layers, theta, off, WT, offT, x, Hst, Cst, AX1, AH1, Z1, TC1, Ls1)
        _logits(theta, off, layers, Hst[layers - 1, 0], o)
        x = _draw(o, e, p, cdf, sorted_p, temperature, top_k, top_p, greedy, uniforms[q])
        out[n] = x
        n += 1
        if x == stop_index:
            break
    _store_state(kind, Hst, Cst, state)
    return n


@_jit
def _lossgrad(kind, layers, m, K, Gm, theta, off, inputs, targets, h, masks, dropout, gflat,
              one):
    """One lane's loss and gradients (into gflat) over inputs -> targets from the state h
    (1, layers, S, m), which becomes the last state; masks (layers, L, 1, m) when given."""
    L = inputs.size
    WT = _aligned_zeros(2 * layers * m * Gm, theta.dtype)
    offT = np.arange(2 * layers) * (m * Gm)
    _refresh_transposes(theta, off, WT, offT, layers, m, Gm, 0, 1)
    H, C, Z, TC, AX, AH, X, Mk, O, DH, DAX, DAH, dh, dc, Ls = _scratch(
        kind, layers, m, K, Gm, max(L, 1), 1, 1, theta.dtype)
    if dropout != _NO_DROPOUT:
        for l in range(masks.shape[0]):              # masks (layers, L, 1, m)
            for t in range(L):
                _copy(Mk[0, l, t, 0], masks[l, t, 0])
    ln = np.full(1, L, np.int32)
    rs = np.zeros(1, np.uint8)
    st = np.zeros(1, np.int64)
    return _group_update(kind, layers, theta, off, WT, offT, inputs, st, targets, st, ln, rs,
                         h, 0, 1, H[0], C[0], Z[0], TC[0], AX[0], AH[0], X[0], Mk[0], O[0],
                         DH[0], DAX[0], DAH[0], dh[0], dc[0], Ls[0], gflat, dropout, one)


# --------------------------------------------------------------------------------------
# The interface of backends/reference.py for the stacked networks.
# --------------------------------------------------------------------------------------

class _Layout:
    """Where each parameter lies in the flat vectors: names in params' order (per layer W_ih,
    W_hh, b_ih, b_hh, then V, c), their offsets, and the sizes."""

    def __init__(self, params):
        network = Network.of_params(params)              # the network the params carry
        self.layers = network.layers
        names = [f"{w}{l}" for l in range(self.layers) for w in ("W_ih", "W_hh", "b_ih", "b_hh")]
        self.names = names = names + ["V", "c"]
        K, m = params["V"].shape
        self.K, self.m = K, m
        self.Gm = params["W_hh0"].shape[0]
        self.kind = {"lstm": _LSTM, "gru": _GRU}[network.cell]
        self.S = network.state_vectors
        offsets, at = [], 0
        for name in names:
            offsets.append(at)
            at += -(-params[name].size // _ALIGN) * _ALIGN
        self.off = np.array(offsets, np.int64)
        self.size = -(-at // _ROW) * _ROW
        self.dtype = params["V"].dtype

    def pack(self, arrays) -> np.ndarray:
        """The flat vector of `arrays` (named like params), layer 0's W_ih transposed."""
        flat = np.zeros(self.size + 64 // self.dtype.itemsize, self.dtype)
        skip = (-flat.ctypes.data % 64) // self.dtype.itemsize   # on a cache-line boundary
        flat = flat[skip:skip + self.size]
        for name, at in zip(self.names, self.off):
            a = arrays[name].T if name == "W_ih0" else arrays[name]
            flat[at:at + a.size] = np.ascontiguousarray(a).reshape(-1)
        return flat

    def unpack(self, flat: np.ndarray, arrays) -> None:
        """Write the flat vector back into `arrays`, in place."""
        for name, at in zip(self.names, self.off):
            a = arrays[name]
            part = flat[at:at + a.size]
            if name == "W_ih0":
                a[...] = part.reshape(a.shape[1], a.shape[0]).T
            else:
                a[...] = part.reshape(a.shape)

    def transposes(self, theta: np.ndarray):
        WT = np.zeros(2 * self.layers * self.m * self.Gm, self.dtype)
        offT = np.arange(2 * self.layers, dtype=np.int64) * (self.m * self.Gm)
        _refresh_transposes(theta, self.off, WT, offT, self.layers, self.m, self.Gm, 0, 1)
        return WT, offT


def _check(params) -> None:
    dtype = params["V"].dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"parameters must be float32 or float64, not {dtype}")
    for name, a in params.items():
        if a.dtype != dtype:
            raise ValueError(f"parameter {name} must be {dtype}")


def train_updates(params, optimizer: str, opt_state: dict[str, np.ndarray], opt_step: int,
                  eta: float, clip: float, h: np.ndarray, data: np.ndarray, starts: np.ndarray,
                  lengths: np.ndarray, resets: np.ndarray, first: int, last: int,
                  dropout: float = 0.0, dropout_seed: int = 0) -> np.ndarray:
    """reference.train_updates for an LSTM or GRU, compiled: updates first..last-1 in one
    call; params, opt_state and h (lanes, layers, S, m) change in place."""
    _check(params)
    if optimizer not in _OPT_CODE:
        raise ValueError(f"unknown optimizer {optimizer!r}")
    lay = _Layout(params)
    if h.dtype != lay.dtype or not h.flags.c_contiguous or h.shape[1:] != (lay.layers, lay.S,
                                                                            lay.m):
        raise ValueError(f"h must be a C-contiguous (lanes, {lay.layers}, {lay.S}, {lay.m}) "
                         "array of the params' dtype")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {dropout}")
    losses = np.empty(max(last - first, 0))
    if last <= first:
        return losses
    theta = lay.pack(params)
    s1 = lay.pack({name: opt_state[f"m_{name}"] for name in lay.names})
    s2 = lay.pack({name: opt_state[f"v_{name}"] for name in lay.names}) \
        if optimizer == "adam" else s1
    resets = np.ascontiguousarray(resets)
    if resets.dtype == np.bool_:
        resets = resets.view(np.uint8)
    hashed = dropout > 0 and lay.layers > 1
    seed = int(dropout_seed)
    _train_batch(lay.kind, lay.layers, lay.m, lay.K, lay.Gm, theta, lay.off, s1, s2,
                 _OPT_CODE[optimizer], _constants(lay.dtype, eta, clip),
                 np.array([optim.ADAM_BETA1, optim.ADAM_BETA2]), int(opt_step), h,
                 *_text(data), np.ascontiguousarray(starts, dtype=np.int64),
                 np.ascontiguousarray(lengths, dtype=np.int32),
                 resets.astype(np.uint8, copy=False), int(first), int(last), losses,
                 lane_groups(h.shape[0]), _HASHED_DROPOUT if hashed else _NO_DROPOUT,
                 seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF,
                 np.uint64(dropout_hash.keep_threshold(dropout) if hashed else 0),
                 lay.dtype.type(1 / (1 - dropout)))
    lay.unpack(theta, params)
    lay.unpack(s1, {name: opt_state[f"m_{name}"] for name in lay.names})
    if optimizer == "adam":
        lay.unpack(s2, {name: opt_state[f"v_{name}"] for name in lay.names})
    return losses


def loss_and_gradients(params, inputs: np.ndarray, targets: np.ndarray, state: np.ndarray,
                       masks=None):
    """The network's loss_and_gradients (networks/stack.py), compiled: (loss, grads,
    state_last) of one sequence from `state` (layers, S, m), with the dropout `masks` of
    dropout_masks (or None)."""
    _check(params)
    lay = _Layout(params)
    dtype = lay.dtype
    theta = lay.pack(params)
    inputs = np.ascontiguousarray(inputs, dtype=np.int32)
    targets = np.ascontiguousarray(targets, dtype=np.int32)
    h = np.array(state, dtype=dtype).reshape(1, lay.layers, lay.S, lay.m).copy()
    L = inputs.size
    given = np.zeros((lay.layers, max(L, 1), 1, lay.m), dtype)
    if masks is not None:
        for l, mask in enumerate(masks):
            given[l, :L, 0] = mask
    gflat = np.zeros_like(theta)
    loss = _lossgrad(lay.kind, lay.layers, lay.m, lay.K, lay.Gm, theta, lay.off, inputs,
                     targets, h, given[:, :L], _GIVEN_DROPOUT if masks is not None
                     else _NO_DROPOUT, gflat, dtype.type(1))
    grads = {name: np.zeros_like(a) for name, a in params.items()}
    lay.unpack(gflat, grads)
    return float(loss), grads, h[0]


def _theta_and_transposes(params):
    _check(params)
    lay = _Layout(params)
    theta = lay.pack(params)
    return lay, theta, *lay.transposes(theta)


def total_loss(params, data: np.ndarray, segments: np.ndarray,
               h0: np.ndarray | None = None) -> tuple[float, int]:
    """reference.total_loss for an LSTM or GRU, compiled."""
    lay, theta, WT, offT = _theta_and_transposes(params)
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
    if len(segments):
        _total_loss(lay.kind, lay.layers, lay.m, lay.K, lay.Gm, theta, lay.off, WT, offT,
                    *_text(data), segments, states, per_segment)
    lengths = segments[:, 1] - segments[:, 0]
    count = int(np.sum(np.where(lengths >= 2, lengths - 1, 0)))
    return float(per_segment.sum()), count


def advance(params, h: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """reference.advance for an LSTM or GRU, compiled: the state after feeding `inputs`."""
    lay, theta, WT, offT = _theta_and_transposes(params)
    state = np.array(h, dtype=lay.dtype).reshape(lay.layers, lay.S, lay.m).copy()
    _advance(lay.kind, lay.layers, lay.m, lay.Gm, theta, lay.off, WT, offT, state,
             *_text(inputs))
    return state


def sample_indices(params, h: np.ndarray, x: int, uniforms: np.ndarray,
                   temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                   greedy: bool = False, stop_index: int = -1) -> np.ndarray:
    """reference.sample_indices for an LSTM or GRU, compiled; h (layers, S, m) is updated in
    place to the state the last character was drawn from."""
    lay, theta, WT, offT = _theta_and_transposes(params)
    uniforms = np.ascontiguousarray(uniforms, dtype=np.float64)
    out = np.empty(len(uniforms), np.int64)
    state = np.array(h, dtype=lay.dtype).reshape(lay.layers, lay.S, lay.m).copy()
    n = _sample(lay.kind, lay.layers, lay.m, lay.K, lay.Gm, theta, lay.off, WT, offT, state,
                int(x), uniforms, lay.dtype.type(temperature), int(top_k), float(top_p),
                bool(greedy), int(stop_index), out)
    h[...] = state.reshape(h.shape)
    return out[:n].copy()
