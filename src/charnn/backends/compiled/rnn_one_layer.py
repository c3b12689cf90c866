"""The vanilla RNN's own compiled kernels for one layer, the assignment's network (model.py):
the work of backends/reference.py in numba (nopython, cached on disk), registered as the rnn
cell's kernels for one layer (compiled/__init__.py; more layers run on stack.py with rnn.py's
cell). They stay because the stack's shared path cannot match them: at batch 1 a step is a
matrix-vector product the lane-group machinery only slows, and these kernels give the golden
runs (tests/test_golden.py) their recorded bits.

The public functions take the same arguments as the reference's (a state (layers = 1, 1, m)
per lane) and change the same arrays in place; they unpack the Params and the optimiser state
dict and call @njit kernels, so one
call to train_updates runs all its updates without coming back to Python. Parameters may be
float64 or float32 (every array of one dtype, C-contiguous); in float32 the arithmetic stays
in float32 and only the loss is summed in float64.

What makes it fast, without changing the math of model.py:
  * x_t is one-hot, so U x_t is the column U[:, x_t], and dL/dU is non-zero in at most
    seq_length columns. AdaGrad leaves a parameter whose gradient is zero unchanged, so with
    AdaGrad only the seen columns of U and of its state are touched (RMSProp and Adam decay
    their state everywhere, so they update all of U).
  * The output layer of a whole window is one (L x m)(m x K) product, and so are the
    gradients dV = G^T H, dW = dA^T H_prev and the back-propagated G V.
  * Inner loops run over contiguous memory with re-association allowed, so they vectorise.
  * When m is a whole number of register tiles (m = 128, 256, 512, ...), the batched
    products hold an 8 x 2-vector block of the result in registers for the whole sum
    (products.py).
  * With several lanes (batch rows) the lanes advance together: each time step is a
    (lanes x m)(m x m) product, the output layer and the gradients of all lanes and time
    steps are single products, and positions past a lane's window are masked. The lanes are
    split into groups, each with its own gradient buffers, which the threads share out; the
    buffers are summed in group order and the threads step W and V, a share of the rows
    each. How many groups depends on the number of lanes alone (lanes.lane_groups), so a run
    gives the same bits on any number of threads. One lane runs single-threaded.
  * The text may be uint8 (vocabularies of up to 256 characters) or int32, a memmap too: it
    is read where it lies, never copied, as bytes with one or four to a character
    (lanes._text, lanes._char), so each kernel is compiled once for both.

The kernels are written in model.py's names: U = W_ih0 (m, K), W = W_hh0 (m, m), b = b_ih0
(m,), V (K, m), c (K,); H rows are h_t, and a lane's state is h (m,).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ...model import Params
from ..calls import NO_DROPOUT, Dropout, Optimiser, Windows
from .lanes import _active_lanes, _char, _check_params, _gather_windows, _text, lane_groups
from .numerics import (_add, _copy, _copy2, _draw, _jit, _shifted_exp, _softmax_row,
                       _softmax_rows, _vtanh)
from .optimisers import (_C_CLIP, _C_EPS, _C_ETA, _C_ONE, _OPT_CODE, _adagrad,
                         _bias_corrections, _update_dense, _update_rows)
from .products import (_aligned_zeros, _gemm, _matmul_nn, _matmul_nt, _matmul_tn,
                       _tiles_fit, _transpose_rows)
from .session import KernelSession


@_jit
def _step_hidden(W, U, b, x, h_prev, h_out):
    """h_out = tanh(W h_prev + U[:, x] + b), eight rows of W at a time (h_prev read once)."""
    m = W.shape[0]
    zero = h_prev[0] - h_prev[0]
    i = 0
    while i + 8 <= m:
        a0 = zero
        a1 = zero
        a2 = zero
        a3 = zero
        a4 = zero
        a5 = zero
        a6 = zero
        a7 = zero
        w0 = W[i]
        w1 = W[i + 1]
        w2 = W[i + 2]
        w3 = W[i + 3]
        w4 = W[i + 4]
        w5 = W[i + 5]
        w6 = W[i + 6]
        w7 = W[i + 7]
        for j in range(m):
            hj = h_prev[j]
            a0 += w0[j] * hj
            a1 += w1[j] * hj
            a2 += w2[j] * hj
            a3 += w3[j] * hj
            a4 += w4[j] * hj
            a5 += w5[j] * hj
            a6 += w6[j] * hj
            a7 += w7[j] * hj
        h_out[i] = a0
        h_out[i + 1] = a1
        h_out[i + 2] = a2
        h_out[i + 3] = a3
        h_out[i + 4] = a4
        h_out[i + 5] = a5
        h_out[i + 6] = a6
        h_out[i + 7] = a7
        i += 8
    while i < m:
        a0 = zero
        wi = W[i]
        for j in range(m):
            a0 += wi[j] * h_prev[j]
        h_out[i] = a0
        i += 1
    for i in range(m):
        h_out[i] = h_out[i] + U[i, x] + b[i]
    _vtanh(h_out, m)


# --------------------------------------------------------------------------------------
# One window of one lane: forward, loss, and back-propagation through time.
# --------------------------------------------------------------------------------------

@_jit
def _window(U, W, V, b, c, xs, sx, ys, sy, L, h, H, P, DH, DA, dh, gb, gc, gUT, gW, gV,
            accumulate, one):
    """Forward and backward through inputs xs[sx:sx+L] and targets ys[sy:sy+L], from h.

    Scratch: H (>= L+1, m), P and G (>= L, K), DH and DA (>= L, m; DA may be DH itself,
    da_t overwriting dL/dh_t), dh (2, m).
    Gradients go into gb, gc, gW, gV (overwritten, or added to when `accumulate`) and into
    the rows x_t of gUT (K, m), which hold dL/dU transposed (always added to). h becomes
    h_L. Returns the window's loss (float64)."""
    m = W.shape[0]
    K = V.shape[0]
    # forward: H[0] = h_prev, H[t+1] = tanh(W H[t] + U[:, x_t] + b)
    _copy(H[0], h)
    for t in range(L):
        _step_hidden(W, U, b, xs[sx + t], H[t], H[t + 1])
    Hs = H[1:L + 1]                                   # (L, m): h_1..h_L
    Ps = P[:L]                                        # (L, K)
    _matmul_nt(Hs, V, c, Ps)                          # O = H V^T + c, one product
    _softmax_rows(Ps, L)
    loss = 0.0
    for t in range(L):                                # loss, then G = P - onehot(y)
        y = ys[sy + t]
        loss -= math.log(np.float64(Ps[t, y]))
        Ps[t, y] -= one
    # dL/dh_t from the output layer for every t at once: G V  (L, m)
    DHs = DH[:L]
    _matmul_nn(Ps, V, DHs, False)
    # output-layer gradients: dc = sum_t g_t, dV = G^T H
    if not accumulate:
        gc[:] = 0
    for t in range(L):
        g = Ps[t]
        for k in range(K):
            gc[k] += g[k]
    _matmul_tn(Ps, Hs, gV, accumulate)
    # back-propagation through time
    dh_next = dh[0]
    dh_next[:] = 0
    for t in range(L - 1, -1, -1):
        da = DA[t]
        ht = H[t + 1]
        dht = DHs[t]
        for i in range(m):                            # da_t = (G V + dh_next) * (1 - h_t^2)
            da[i] = (dht[i] + dh_next[i]) * (one - ht[i] * ht[i])
        if t > 0:                                     # dh_next = W^T da_t
            dh_next[:] = 0
            i = 0
            while i + 8 <= m:                       # eight rows per pass over dh_next
                d0 = da[i]
                d1 = da[i + 1]
                d2 = da[i + 2]
                d3 = da[i + 3]
                d4 = da[i + 4]
                d5 = da[i + 5]
                d6 = da[i + 6]
                d7 = da[i + 7]
                w0 = W[i]
                w1 = W[i + 1]
                w2 = W[i + 2]
                w3 = W[i + 3]
                w4 = W[i + 4]
                w5 = W[i + 5]
                w6 = W[i + 6]
                w7 = W[i + 7]
                for j in range(m):
                    dh_next[j] += ((d0 * w0[j] + d1 * w1[j]) + (d2 * w2[j] + d3 * w3[j])) + (
                        (d4 * w4[j] + d5 * w5[j]) + (d6 * w6[j] + d7 * w7[j]))
                i += 8
            while i + 4 <= m:
                d0 = da[i]
                d1 = da[i + 1]
                d2 = da[i + 2]
                d3 = da[i + 3]
                w0 = W[i]
                w1 = W[i + 1]
                w2 = W[i + 2]
                w3 = W[i + 3]
                for j in range(m):
                    dh_next[j] += d0 * w0[j] + d1 * w1[j] + d2 * w2[j] + d3 * w3[j]
                i += 4
            while i < m:
                d0 = da[i]
                w0 = W[i]
                for j in range(m):
                    dh_next[j] += d0 * w0[j]
                i += 1
    DAs = DA[:L]
    # dW = sum_t da_t h_{t-1}^T = DA^T H_prev;  db = sum_t da_t;  dU[:, x_t] += da_t
    _matmul_tn(DAs, H[:L], gW, accumulate)
    if not accumulate:
        gb[:] = 0
    for t in range(L):
        da = DAs[t]
        row = gUT[xs[sx + t]]
        for i in range(m):
            gb[i] += da[i]
            row[i] += da[i]
    _copy(h, H[L])
    return loss


@_jit
def _apply_update(U, W, V, b, c, sU, sW, sV, sb, sc, tU, tW, tV, tb, tc,
                  gb, gc, gUT, gW, gV, gU, cols, seen, nseen, active, opt, consts, betas,
                  scratch, t_opt, with_wv):
    """Average the summed gradients over `active` lanes, clip them, and apply update number
    t_opt (from 1) of rule `opt` (0 AdaGrad, 1 RMSProp, 2 Adam). s* and t* are the state
    arrays (t* only used by Adam). gUT holds dL/dU transposed, non-zero in rows seen[:nseen].
    W and V only when with_wv (the batched kernel updates them itself, see _update_rows)."""
    m, K = U.shape
    if active > 1:
        div = consts[_C_ONE] * active
        for arr in (gb, gc):
            for i in range(arr.size):
                arr[i] = arr[i] / div
        if with_wv:
            for arr2 in (gW, gV):
                flat = arr2.reshape(-1)
                for i in range(flat.size):
                    flat[i] = flat[i] / div
        for q in range(nseen):
            row = gUT[seen[q]]
            for i in range(m):
                row[i] = row[i] / div
    _bias_corrections(opt, consts, betas, scratch, t_opt)
    bc1 = scratch[0]
    bc2 = scratch[1]
    _update_dense(b, gb, sb, tb, opt, consts, bc1, bc2)
    _update_dense(c, gc, sc, tc, opt, consts, bc1, bc2)
    if with_wv:
        _update_dense(W.reshape(-1), gW.reshape(-1), sW.reshape(-1), tW.reshape(-1), opt,
                      consts, bc1, bc2)
        _update_dense(V.reshape(-1), gV.reshape(-1), sV.reshape(-1), tV.reshape(-1), opt,
                      consts, bc1, bc2)
    if opt == 0:                                      # AdaGrad: only the seen columns move
        eta = consts[_C_ETA]
        eps = consts[_C_EPS]
        clip = consts[_C_CLIP]
        for q in range(nseen):                        # gather column x into contiguous rows
            x = seen[q]
            su = cols[0]
            uu = cols[1]
            for i in range(m):
                su[i] = sU[i, x]
                uu[i] = U[i, x]
            _adagrad(uu, gUT[x], su, eta, eps, clip, m)   # contiguous, so it vectorises
            for i in range(m):
                sU[i, x] = su[i]
                U[i, x] = uu[i]
    else:                                             # the others decay their state everywhere
        for i in range(m):
            for k in range(K):
                gU[i, k] = gUT[k, i]
        _update_dense(U.reshape(-1), gU.reshape(-1), sU.reshape(-1), tU.reshape(-1), opt,
                      consts, bc1, bc2)


@_jit
def _lane_scratch(m, K, Lmax, opt, dt):
    """What _train works in, for windows of up to Lmax characters (a session makes it once)."""
    return (np.zeros((Lmax + 1, m), dt), np.zeros((Lmax, K), dt), np.zeros((Lmax, m), dt),
            np.zeros((2, m), dt), np.zeros(m, dt), np.zeros(K, dt), np.zeros((m, m), dt),
            np.zeros((K, m), dt), np.zeros((K, m), dt),
            np.zeros((m, K) if opt != 0 else (1, 1), dt), np.zeros((2, m), dt),
            np.zeros(2, dt), np.zeros(K, np.uint8), np.zeros(K, np.int64),
            np.zeros(Lmax + 1, np.int32))


@_jit
def _train(U, W, V, b, c, sU, sW, sV, sb, sc, tU, tW, tV, tb, tc, opt, consts, betas,
           opt_step, h, data, width, starts, lengths, resets, first, last, losses, H, P, DH,
           dh, gb, gc, gW, gV, gUT, gU, cols, scratch, mark, seen, win):
    """Updates first..last-1 of the schedule (see reference.train_updates), lane after lane,
    in _lane_scratch's arrays (for windows at least as long as these)."""
    B = h.shape[0]
    one = consts[_C_ONE]
    gUT[:] = 0                                        # (each update leaves them so; a call
    mark[:] = 0                                       # that failed midway might not)
    for u in range(first, last):
        active = 0
        nseen = 0
        loss_sum = 0.0
        for lane in range(B):
            L = lengths[u, lane]
            if L == 0:
                continue
            hl = h[lane]
            if resets[u, lane]:
                hl[:] = 0
            s = starts[u, lane]
            for t in range(L + 1):                    # the window as int32
                win[t] = _char(data, width, s + t)
            loss_sum += _window(U, W, V, b, c, win, 0, win, 1, L, hl, H, P, DH, DH, dh,
                                gb, gc, gUT, gW, gV, active > 0, one)
            for t in range(L):
                x = win[t]
                if mark[x] == 0:
                    mark[x] = 1
                    seen[nseen] = x
                    nseen += 1
            active += 1
        if active == 0:                               # nothing to learn from: zero gradient
            gb[:] = 0
            gc[:] = 0
            gW[:] = 0
            gV[:] = 0
        _apply_update(U, W, V, b, c, sU, sW, sV, sb, sc, tU, tW, tV, tb, tc,
                      gb, gc, gUT, gW, gV, gU, cols, seen, nseen, active, opt, consts,
                      betas, scratch, opt_step + (u - first) + 1, True)
        losses[u - first] = loss_sum / active
        for q in range(nseen):
            gUT[seen[q]] = 0
            mark[seen[q]] = 0


# --------------------------------------------------------------------------------------
# Several lanes at once: each time step is a (lanes x m)(m x m) product. The lanes are split
# into G groups (lane_groups: G depends on the number of lanes only), each with its own
# gradient buffers, summed afterwards in group order whatever thread computed them.
# --------------------------------------------------------------------------------------

@_jit
def _tanh_backward(da, dht, dh, ht, one):
    """da = dL/da_t = (dL/dh_t from above (dht) + through t+1 (dh)) * tanh'(a_t), for one
    lane: h_t = tanh(a_t) (ht). A function of its own, as each of _group_update's loops over
    a lane's row, the way the GRU's gates are (gru.py: written inline in the loop over the
    lanes, LLVM did not vectorise that loop)."""
    for i in range(da.shape[0]):
        da[i] = (dht[i] + dh[i]) * (one - ht[i] * ht[i])


@_jit
def _group_update(UT, W, WT, V, b, c, data, st, ln, rs, h, lo, n, H, O, DH, DA, dh, Ls,
                  gb, gc, gUT, gW, gV, one):
    """Forward and backward of lanes lo..lo+n-1 (those >= B are padding) for one update.

    H (>= L+1, n, m), O (>= L, n, K), DH and DA (>= L, n, m; DA may be DH), dh (n, m), Ls (n,):
    scratch. Slot r holds lane lo + r; positions t >= its length carry h and have zero
    gradient. W^T (WT) is read by the forward step when the register tiles fit m.
    Overwrites gb, gc, gW, gV; adds into the rows x_t of gUT. Returns the summed loss."""
    B = h.shape[0]
    m = W.shape[0]
    K = V.shape[0]
    Lg = 0
    for r in range(n):
        lane = lo + r
        L = 0
        if lane < B:
            L = ln[lane]
        Ls[r] = L
        if L > 0:
            if rs[lane]:
                H[0, r, :] = 0
            else:
                _copy(H[0, r], h[lane])
            Lg = max(Lg, L)
        else:
            H[0, r, :] = 0
    gb[:] = 0
    gc[:] = 0
    if Lg == 0:                                       # gW and gV: the products overwrite them
        gW[:] = 0
        gV[:] = 0
        return 0.0
    # forward: H[t+1] = tanh(H[t] W^T + U[:, x_t]^T + b) for the lanes still inside their window
    tiles = _tiles_fit(m, W)
    for t in range(Lg):
        Ht = H[t]
        Hn = H[t + 1]
        if tiles:
            _gemm(Ht, WT, Hn, False, False)           # H[t] W^T from W^T's rows
            for r in range(n):
                _add(Hn[r], b)
        else:
            _matmul_nt(Ht, W, b, Hn)                  # H[t] W^T + b: W's rows as they are
        for r in range(n):
            hr = Hn[r]
            if t < Ls[r]:
                _add(hr, UT[data[st[lo + r] + t]])
                _vtanh(hr, m)
            else:
                _copy(hr, Ht[r])
    N = Lg * n
    Hs = H[1:Lg + 1].reshape((N, m))
    Hp = H[:Lg].reshape((N, m))
    Os = O[:Lg].reshape((N, K))
    # output layer over all positions at once: O = H V^T + c, softmax, G = P - onehot(y)
    _matmul_nt(Hs, V, c, Os)
    loss = 0.0
    for t in range(Lg):
        for r in range(n):
            o = O[t, r]
            if t < Ls[r]:
                _softmax_row(o)
                y = data[st[lo + r] + t + 1]
                loss -= math.log(np.float64(o[y]))
                o[y] -= one
                for k in range(K):
                    gc[k] += o[k]
            else:
                o[:] = 0
    DHs = DH[:Lg].reshape((N, m))
    _gemm(Os, V, DHs, False, False)                   # dL/dh_t from the output layer: G V
    _gemm(Os, Hs, gV, True, False)                    # dV = G^T H
    # back-propagation through time, all lanes of the group together
    dh[:] = 0
    for t in range(Lg - 1, -1, -1):
        for r in range(n):
            da = DA[t, r]
            if t < Ls[r]:
                _tanh_backward(da, DH[t, r], dh[r], H[t + 1, r], one)
            else:
                da[:] = 0
        if t > 0:
            _gemm(DA[t], W, dh, False, False)         # dh_{t-1} = DA_t W
    DAs = DA[:Lg].reshape((N, m))
    _gemm(DAs, Hp, gW, True, False)                   # dW = DA^T H_prev
    for t in range(Lg):
        for r in range(n):
            if t < Ls[r]:
                _add(gb, DA[t, r])
                _add(gUT[data[st[lo + r] + t]], DA[t, r])
    for r in range(n):
        if Ls[r] > 0:
            _copy(h[lo + r], H[Ls[r], r])
    return loss


@_jit
def _combine_and_update(U, W, V, b, c, sU, sW, sV, sb, sc, tU, tW, tV, tb, tc, opt, consts,
                        betas, t_opt, data, st, ln, gl, gbs, gcs, gUTs, gb, gc, gUT, gU, cols,
                        scratch, mark, seen):
    """Sum the groups' gradients and losses for b, c and U, apply update t_opt to them, and
    return the loss per lane (W and V are done in parallel, see _train_batch).

    A plain (serial) function: in _train_batch, which is compiled for parallel loops, numba
    may turn array expressions into parallel loops of their own."""
    m = W.shape[0]
    B = ln.shape[0]
    G = gl.shape[0]
    active = 0
    nseen = 0
    loss_sum = 0.0
    for g in range(G):
        loss_sum += gl[g]
    for lane in range(B):                             # the characters whose U columns move
        L = ln[lane]
        if L == 0:
            continue
        active += 1
        s = st[lane]
        for t in range(L):
            x = data[s + t]
            if mark[x] == 0:
                mark[x] = 1
                seen[nseen] = x
                nseen += 1
    if active == 0:                                   # nothing to learn from: zero gradient
        gb[:] = 0
        gc[:] = 0
    else:
        _copy(gb, gbs[0])
        _copy(gc, gcs[0])
        for g in range(1, G):
            _add(gb, gbs[g])
            _add(gc, gcs[g])
    for q in range(nseen):
        x = seen[q]
        row = gUT[x]
        for g in range(G):
            rg = gUTs[g, x]
            for i in range(m):
                row[i] += rg[i]
            rg[:] = 0
    # W and V are stepped already, so no gW or gV is read: gUT only fills their places
    _apply_update(U, W, V, b, c, sU, sW, sV, sb, sc, tU, tW, tV, tb, tc,
                  gb, gc, gUT, gUT, gUT, gU, cols, seen, nseen, active, opt, consts,
                  betas, scratch, t_opt, False)
    for q in range(nseen):
        gUT[seen[q]] = 0
        mark[seen[q]] = 0
    return loss_sum / active


@_jit
def _batch_scratch(m, K, Lmax, B, G, opt, dt):
    """What _train_batch works in, for windows of up to Lmax characters on B lanes in G groups
    (a session makes it once). The products read and write whole rows; on cache-line
    boundaries no vector load straddles two lines (numpy and numba only promise 16 or 32
    bytes)."""
    n = (B + G - 1) // G
    tiles = _tiles_fit(m, np.zeros(1, dt))
    return (_aligned_zeros(G * (Lmax + 1) * n * m, dt).reshape((G, Lmax + 1, n, m)),
            _aligned_zeros(G * Lmax * n * K, dt).reshape((G, Lmax, n, K)),
            _aligned_zeros(G * Lmax * n * m, dt).reshape((G, Lmax, n, m)),
            _aligned_zeros(G * n * m, dt).reshape((G, n, m)),
            np.zeros((G, n), np.int64), np.zeros((G, m), dt), np.zeros((G, K), dt),
            _aligned_zeros(G * m * m, dt).reshape((G, m, m)),
            _aligned_zeros(G * K * m, dt).reshape((G, K, m)),
            _aligned_zeros(G * K * m, dt).reshape((G, K, m)), np.zeros(G),
            _aligned_zeros(K * m, dt).reshape((K, m)),
            _aligned_zeros(m * m, dt).reshape((m, m)),         # aligned working copies of
            _aligned_zeros(K * m, dt).reshape((K, m)),         # W and V, copied back
            _aligned_zeros(m * m if tiles else 1, dt).reshape((m, m) if tiles else (1, 1)),
            np.zeros(m, dt), np.zeros(K, dt), np.zeros((K, m), dt),
            np.zeros((m, K) if opt != 0 else (1, 1), dt), np.zeros((2, m), dt),
            np.zeros(2, dt), np.zeros(2, dt), np.zeros((G, m), dt), np.zeros(K, np.uint8),
            np.zeros(K, np.int64), np.zeros(B * (Lmax + 1), np.int32))


@_jit(parallel=True)
def _train_batch(U, W, V, b, c, sU, sW, sV, sb, sc, tU, tW, tV, tb, tc, opt, consts, betas,
                 opt_step, h, data, width, starts, lengths, resets, first, last, losses, G,
                 Hb, Ob, DHb, dhb, Lsb, gbs, gcs, gWs, gVs, gUTs, gl, UT, Wa, Va, WT, gb, gc,
                 gUT, gU, cols, scratch, bcs, rows, mark, seen, win, fresh):
    """Updates first..last-1 of the schedule with B > 1 lanes, the lanes split into G groups
    that the threads share out (see _group_update), in _batch_scratch's arrays (for windows at
    least as long as these). The result depends on G, not on the number of threads: each
    group sums into its own buffers, and they are added in order.

    W and V are trained in their aligned working copies Wa and Va (and W^T in WT), which the
    session keeps from call to call: `fresh` copies W and V into them first; the caller copies
    them back into W and V (Session.sync)."""
    m, K = U.shape
    B = h.shape[0]
    n = (B + G - 1) // G
    gUTs[:] = 0                                       # (each update leaves them so; a call
    gUT[:] = 0                                        # that failed midway might not)
    mark[:] = 0
    tiles = _tiles_fit(m, W)
    if fresh:
        _copy2(Wa, W)
        _copy2(Va, V)
        if tiles:                                     # the forward product reads W^T's rows
            _transpose_rows(Wa, WT, 0, m)
    wst = np.arange(B) * (win.size // B)              # where each lane's window starts in win
    one = consts[_C_ONE]
    for u in range(first, last):
        for i in range(m):
            for k in range(K):
                UT[k, i] = U[i, k]
        st = starts[u]
        ln = lengths[u]
        rs = resets[u]
        _gather_windows(data, width, st, ln, win, wst)
        for g in prange(G):
            gl[g] = _group_update(UT, Wa, WT, Va, b, c, win, wst, ln, rs, h, g * n, n,
                                  Hb[g], Ob[g], DHb[g], DHb[g], dhb[g], Lsb[g],
                                  gbs[g], gcs[g], gUTs[g], gWs[g], gVs[g], one)
        # W and V (the bulk of the parameters): each thread sums, averages, clips and steps
        # its share of the rows, and refreshes those columns of W^T
        t_opt = opt_step + (u - first) + 1
        active = _active_lanes(ln)
        _bias_corrections(opt, consts, betas, bcs, t_opt)
        for g in prange(G):
            lo = g * m // G
            hi = (g + 1) * m // G
            _update_rows(Wa, gWs, sW, tW, lo, hi, active, opt, consts, bcs[0], bcs[1], rows[g])
            if tiles:
                _transpose_rows(Wa, WT, lo, hi)
            _update_rows(Va, gVs, sV, tV, g * K // G, (g + 1) * K // G, active, opt, consts,
                         bcs[0], bcs[1], rows[g])
        losses[u - first] = _combine_and_update(
            U, Wa, Va, b, c, sU, sW, sV, sb, sc, tU, tW, tV, tb, tc, opt, consts, betas,
            t_opt, win, wst, ln, gl, gbs, gcs, gUTs, gb, gc, gUT, gU, cols, scratch, mark, seen)


@_jit
def _lossgrad(U, W, V, b, c, inputs, targets, h, gb, gc, gUT, gW, gV, one):
    L = inputs.size
    m, K = U.shape
    H = np.empty((L + 1, m), U.dtype)
    P = np.empty((max(L, 1), K), U.dtype)
    DH = np.empty((max(L, 1), m), U.dtype)
    dh = np.empty((2, m), U.dtype)
    return _window(U, W, V, b, c, inputs, 0, targets, 0, L, h, H, P, DH, DH, dh,
                   gb, gc, gUT, gW, gV, False, one)


# --------------------------------------------------------------------------------------
# Evaluation, hidden-state advance and sampling.
# --------------------------------------------------------------------------------------

@_jit
def _segment_loss(U, W, V, b, c, data, width, start, end, h, h2, o):
    """-sum log p(data[t+1] | data[start..t]) for t in start..end-2, from the state in h."""
    K = V.shape[0]
    total = 0.0
    for t in range(start, end - 1):
        _step_hidden(W, U, b, _char(data, width, t), h, h2)
        _copy(h, h2)
        y = _char(data, width, t + 1)
        for k in range(K):                            # o = V h + c
            acc = c[k] - c[k]
            vk = V[k]
            for j in range(h.size):
                acc += vk[j] * h[j]
            o[k] = acc + c[k]
        s = _shifted_exp(o)
        total -= math.log(np.float64(o[y] / s))
    return total


@_jit(parallel=True)
def _total_loss(U, W, V, b, c, data, width, segments, h0, out):
    """out[q] = the loss of segment q from the state h0[q] (h0[0] for every segment when h0
    has one row). Each segment's total has its own slot, so the sum the caller takes over them
    does not depend on how the threads share the segments out."""
    m, K = U.shape
    S = segments.shape[0]
    shared = h0.shape[0] != S
    for q in prange(S):
        start = segments[q, 0]
        end = segments[q, 1]
        out[q] = 0.0
        if end - start >= 2:
            h = np.empty(m, U.dtype)
            h2 = np.empty(m, U.dtype)
            o = np.empty(K, U.dtype)
            _copy(h, h0[0] if shared else h0[q])
            out[q] = _segment_loss(U, W, V, b, c, data, width, start, end, h, h2, o)


@_jit
def _advance(U, W, b, h, inputs, width):
    h2 = np.empty_like(h)
    for t in range(inputs.size // width):
        _step_hidden(W, U, b, _char(inputs, width, t), h, h2)
        _copy(h, h2)


@njit(cache=True, error_model="numpy")
def _sample(U, W, V, b, c, h, x, uniforms, temperature, top_k, top_p, greedy, stop_index,
            out):
    """reference.sample_indices, compiled. Without fastmath: the filtering and the inverse CDF
    follow reference.filtered_probabilities operation by operation (numerics._draw)."""
    m, K = U.shape
    h2 = np.empty_like(h)
    o = np.empty(K, U.dtype)
    e = np.empty(K, U.dtype)
    p = np.empty(K, np.float64)
    cdf = np.empty(K, np.float64)
    sorted_p = np.empty(K, np.float64)
    n = 0
    for q in range(uniforms.size):
        _step_hidden(W, U, b, x, h, h2)
        _copy(h, h2)
        for k in range(K):
            acc = c[k] - c[k]
            vk = V[k]
            for j in range(m):
                acc += vk[j] * h[j]
            o[k] = acc + c[k]
        x = _draw(o, e, p, cdf, sorted_p, temperature, top_k, top_p, greedy, uniforms[q])
        out[n] = x
        n += 1
        if x == stop_index:
            break
    return n


# --------------------------------------------------------------------------------------
# The interface of backends/reference.py.
# --------------------------------------------------------------------------------------


# The parameters in the kernels' order and names (model.py's): U, W, V, b, c.
_NAMES = ("W_ih0", "W_hh0", "V", "b_ih0", "c")


def _weights(params) -> tuple[np.ndarray, ...]:
    return tuple(params[name] for name in _NAMES)


def _rows(h: np.ndarray) -> np.ndarray:
    """States (..., 1, 1, m) as the kernels hold them, (..., m): a view where h is contiguous."""
    return h.reshape(h.shape[:-3] + h.shape[-1:])


def _state_arrays(optimizer: str, params: Params, opt_state: dict[str, np.ndarray]):
    first = tuple(opt_state[f"m_{name}"] for name in _NAMES)
    if optimizer == "adam":
        second = tuple(opt_state[f"v_{name}"] for name in _NAMES)
    else:
        second = first                                # unused by AdaGrad and RMSProp
    for a in first + second:
        if a.dtype != params.dtype or not a.flags.c_contiguous:
            raise ValueError("optimiser state arrays must be C-contiguous, of the params' dtype")
    return first, second


class Session(KernelSession):
    """A training run on these kernels: their scratch, made when the run starts and reused by
    every call (the parameters, optimiser state and h are the trainer's arrays, changed in
    place, except W and V with several lanes, which train in aligned working copies that sync
    writes back), so that a call of one update costs what an update costs. Opened on the
    trainer's arrays, like backends.TrainingSession."""

    def __init__(self, params: Params, rule: str, opt_state: dict, h: np.ndarray):
        _check_params(params)
        super().__init__(params, rule, opt_state, h)
        if h.dtype != params.dtype or not h.flags.c_contiguous or h.ndim != 4:
            raise ValueError("h must be a C-contiguous (lanes, 1, 1, m) array of the params' "
                             "dtype")
        self.s1, self.s2 = _state_arrays(rule, params, opt_state)
        self.weights, self.lanes = _weights(params), _rows(h)   # (lanes, m): a view of h
        self.groups = lane_groups(h.shape[0]) if h.shape[0] > 1 else 1

    def train_updates(self, params, optimiser: Optimiser, h: np.ndarray, windows: Windows,
                      dropout: Dropout = NO_DROPOUT) -> np.ndarray:
        self.check(params, optimiser, h)
        if dropout.output > 0:
            raise ValueError("one layer's own kernels drop nothing: open the stack's session "
                             "for dropout on the output (compiled.open_session does)")
        losses = np.empty(windows.count)
        if not windows.count:
            return losses
        m, K, dtype = params.hidden_size, params.vocab_size, params.dtype
        text_and_schedule, longest = self.windows(windows)
        code = _OPT_CODE[self.rule]
        batched = h.shape[0] > 1
        if longest > self.window:                     # the first call, or longer windows
            if batched and self.scratch is not None:
                self.sync()                           # (the working copies are remade)
            self.window = longest
            self.scratch = _batch_scratch(m, K, self.window, h.shape[0], self.groups, code,
                                          dtype) if batched else \
                _lane_scratch(m, K, self.window, code, dtype)
            self.fresh = True
        rule = (code, self.constants(dtype, optimiser), self.betas, int(optimiser.step))
        if batched:
            _train_batch(*self.weights, *self.s1, *self.s2, *rule, self.lanes,
                         *text_and_schedule, windows.first, windows.last, losses, self.groups,
                         *self.scratch, self.fresh)
            self.fresh = False
        else:
            _train(*self.weights, *self.s1, *self.s2, *rule, self.lanes, *text_and_schedule,
                   windows.first, windows.last, losses, *self.scratch)
        return losses

    def sync(self) -> None:
        """Write the working copies of W and V (several lanes) back into the trainer's."""
        if self.h.shape[0] > 1 and self.scratch is not None and not self.fresh:
            Wa, Va = self.scratch[12], self.scratch[13]
            self.params["W_hh0"][...] = Wa
            self.params["V"][...] = Va


def train_updates(params: Params, optimiser: Optimiser, h: np.ndarray, windows: Windows,
                  dropout: Dropout = NO_DROPOUT) -> np.ndarray:
    """reference.train_updates, compiled: the updates of `windows` in one call (a Session of
    one call), in place; h (lanes, 1, 1, m). (One layer has nothing between layers to
    drop.)"""
    session = Session(params, optimiser.rule, optimiser.state, h)
    losses = session.train_updates(params, optimiser, h, windows, dropout)
    session.sync()
    return losses


def loss_and_gradients(params: Params, inputs: np.ndarray, targets: np.ndarray,
                       state: np.ndarray, masks=None):
    """The network's loss_and_gradients (model.py's), compiled: (loss, grads, state_last) of
    one sequence from `state` (1, 1, m). One layer: nothing between layers to drop (masks for
    the output take the stack's kernels, compiled.loss_and_gradients)."""
    if masks is not None:
        raise ValueError("one layer's own kernels drop nothing: give masks to "
                         "compiled.loss_and_gradients")
    _check_params(params)
    m, K = params.hidden_size, params.vocab_size
    dtype = params.dtype
    grads = {name: np.zeros_like(a) for name, a in params.items()}
    gUT = np.zeros((K, m), dtype)
    h = np.array(state, dtype=dtype).reshape(m).copy()
    loss = _lossgrad(*_weights(params), np.ascontiguousarray(inputs, dtype=np.int32),
                     np.ascontiguousarray(targets, dtype=np.int32), h,
                     grads["b_ih0"], grads["c"], gUT, grads["W_hh0"], grads["V"],
                     dtype.type(1))
    grads["W_ih0"][:] = gUT.T
    return float(loss), grads, h.reshape(1, 1, m)


def _initial_states(params: Params, h0, segments: int) -> np.ndarray:
    """h0 of total_loss as a read-only (1 or S, m) array of the params' dtype: zeros for None,
    one row for a (1, 1, m) state that every segment starts from."""
    m = params.hidden_size
    if h0 is None:
        rows = np.zeros((1, m), params.dtype)
    else:
        rows = np.asarray(h0)
        if rows.shape == (1, 1, m):
            rows = rows.reshape(1, m)
        elif rows.shape == (segments, 1, 1, m):
            rows = rows.reshape(segments, m)
        else:
            raise ValueError(f"h0 must have shape ({segments}, 1, 1, {m}) or (1, 1, {m}), "
                             f"not {rows.shape}")
        rows = np.ascontiguousarray(rows, dtype=params.dtype)
    view = rows.view()
    view.flags.writeable = False
    return view


def total_loss(params: Params, data: np.ndarray, segments: np.ndarray,
               h0: np.ndarray | None = None) -> tuple[float, int]:
    """reference.total_loss, compiled: (summed loss in nats, characters predicted), each segment
    starting from h = 0, or from h0[q] or h0 (for every segment)."""
    _check_params(params)
    segments = np.ascontiguousarray(np.asarray(segments, dtype=np.int64).reshape(-1, 2))
    states = _initial_states(params, h0, len(segments))
    per_segment = np.zeros(len(segments))
    if len(segments):
        _total_loss(*_weights(params), *_text(data), segments, states, per_segment)
    lengths = segments[:, 1] - segments[:, 0]
    count = int(np.sum(np.where(lengths >= 2, lengths - 1, 0)))
    return float(per_segment.sum()), count


def advance(params: Params, h: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """reference.advance, compiled: the state (1, 1, m) after feeding `inputs` from h."""
    _check_params(params)
    U, W, _, b, _ = _weights(params)
    state = np.array(h, dtype=params.dtype).reshape(-1).copy()
    _advance(U, W, b, state, *_text(inputs))
    return state.reshape(1, 1, -1)


def sample_indices(params: Params, h: np.ndarray, x: int, uniforms: np.ndarray,
                   temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                   greedy: bool = False, stop_index: int = -1) -> np.ndarray:
    """reference.sample_indices, compiled: up to len(uniforms) characters, drawn by inverse CDF
    from the filtered softmax (reference.filtered_probabilities), stopping after stop_index.
    h (1, 1, m) is updated in place to the state the last character was drawn from."""
    _check_params(params)
    uniforms = np.ascontiguousarray(uniforms, dtype=np.float64)
    out = np.empty(len(uniforms), np.int64)
    work = np.array(h, dtype=params.dtype).reshape(-1).copy()
    n = _sample(*_weights(params), work, int(x), uniforms, params.dtype.type(temperature),
                int(top_k), float(top_p), bool(greedy), int(stop_index), out)
    h[...] = work.reshape(h.shape)
    return out[:n].copy()
