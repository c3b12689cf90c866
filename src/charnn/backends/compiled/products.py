"""Dense products for the compiled kernels: loop kernels for any shape, register tiles
(tiles.py) blocked as tuning.py measured for this CPU for rows of whole vectors, and _gemm
choosing between them.

Matrices are C-contiguous; rows are contiguous vectors. Each network's kernels build their
forward, output-layer and gradient products from these (see rnn.py, stack.py).
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from . import tuning
from .numerics import _FASTMATH, _jit
from .tiles import VECTOR_BYTES, fits, make_tile


@_jit
def _matmul_nt(A, B, bias, out):
    """out[r, k] = sum_j A[r, j] B[k, j] + bias[k]  (A (R x n), B (C x n): A B^T + bias).

    Four rows of B (outer) against four rows of A (inner): 16 dot products per pass over j."""
    R, n = A.shape
    C = B.shape[0]
    if R == 0:
        return
    zero = A[0, 0] - A[0, 0]
    k = 0
    while k + 4 <= C:
        y0 = B[k]
        y1 = B[k + 1]
        y2 = B[k + 2]
        y3 = B[k + 3]
        r = 0
        while r + 4 <= R:
            x0 = A[r]
            x1 = A[r + 1]
            x2 = A[r + 2]
            x3 = A[r + 3]
            s00 = zero
            s01 = zero
            s02 = zero
            s03 = zero
            s10 = zero
            s11 = zero
            s12 = zero
            s13 = zero
            s20 = zero
            s21 = zero
            s22 = zero
            s23 = zero
            s30 = zero
            s31 = zero
            s32 = zero
            s33 = zero
            for j in range(n):
                a0 = x0[j]
                a1 = x1[j]
                a2 = x2[j]
                a3 = x3[j]
                v0 = y0[j]
                v1 = y1[j]
                v2 = y2[j]
                v3 = y3[j]
                s00 += a0 * v0
                s01 += a0 * v1
                s02 += a0 * v2
                s03 += a0 * v3
                s10 += a1 * v0
                s11 += a1 * v1
                s12 += a1 * v2
                s13 += a1 * v3
                s20 += a2 * v0
                s21 += a2 * v1
                s22 += a2 * v2
                s23 += a2 * v3
                s30 += a3 * v0
                s31 += a3 * v1
                s32 += a3 * v2
                s33 += a3 * v3
            out[r, k] = s00 + bias[k]
            out[r, k + 1] = s01 + bias[k + 1]
            out[r, k + 2] = s02 + bias[k + 2]
            out[r, k + 3] = s03 + bias[k + 3]
            out[r + 1, k] = s10 + bias[k]
            out[r + 1, k + 1] = s11 + bias[k + 1]
            out[r + 1, k + 2] = s12 + bias[k + 2]
            out[r + 1, k + 3] = s13 + bias[k + 3]
            out[r + 2, k] = s20 + bias[k]
            out[r + 2, k + 1] = s21 + bias[k + 1]
            out[r + 2, k + 2] = s22 + bias[k + 2]
            out[r + 2, k + 3] = s23 + bias[k + 3]
            out[r + 3, k] = s30 + bias[k]
            out[r + 3, k + 1] = s31 + bias[k + 1]
            out[r + 3, k + 2] = s32 + bias[k + 2]
            out[r + 3, k + 3] = s33 + bias[k + 3]
            r += 4
        while r < R:
            x0 = A[r]
            s00 = zero
            s01 = zero
            s02 = zero
            s03 = zero
            for j in range(n):
                a0 = x0[j]
                s00 += a0 * y0[j]
                s01 += a0 * y1[j]
                s02 += a0 * y2[j]
                s03 += a0 * y3[j]
            out[r, k] = s00 + bias[k]
            out[r, k + 1] = s01 + bias[k + 1]
            out[r, k + 2] = s02 + bias[k + 2]
            out[r, k + 3] = s03 + bias[k + 3]
            r += 1
        k += 4
    while k < C:
        y0 = B[k]
        for r in range(R):
            x0 = A[r]
            s00 = zero
            for j in range(n):
                s00 += x0[j] * y0[j]
            out[r, k] = s00 + bias[k]
        k += 1


@_jit
def _matmul_nn(A, B, out, accumulate):
    """out (+)= A B with A (R x n), B (n x C): rows of out are combinations of rows of B.

    Four rows of B against four rows of out (16 products per element loaded and stored)."""
    R, n = A.shape
    C = B.shape[1]
    if not accumulate:
        out[:R] = 0
    j = 0
    while j + 4 <= n:
        b0 = B[j]
        b1 = B[j + 1]
        b2 = B[j + 2]
        b3 = B[j + 3]
        r = 0
        while r + 4 <= R:
            o0 = out[r]
            o1 = out[r + 1]
            o2 = out[r + 2]
            o3 = out[r + 3]
            a00 = A[r, j]
            a01 = A[r, j + 1]
            a02 = A[r, j + 2]
            a03 = A[r, j + 3]
            a10 = A[r + 1, j]
            a11 = A[r + 1, j + 1]
            a12 = A[r + 1, j + 2]
            a13 = A[r + 1, j + 3]
            a20 = A[r + 2, j]
            a21 = A[r + 2, j + 1]
            a22 = A[r + 2, j + 2]
            a23 = A[r + 2, j + 3]
            a30 = A[r + 3, j]
            a31 = A[r + 3, j + 1]
            a32 = A[r + 3, j + 2]
            a33 = A[r + 3, j + 3]
            for k in range(C):
                v0 = b0[k]
                v1 = b1[k]
                v2 = b2[k]
                v3 = b3[k]
                o0[k] += a00 * v0 + a01 * v1 + a02 * v2 + a03 * v3
                o1[k] += a10 * v0 + a11 * v1 + a12 * v2 + a13 * v3
                o2[k] += a20 * v0 + a21 * v1 + a22 * v2 + a23 * v3
                o3[k] += a30 * v0 + a31 * v1 + a32 * v2 + a33 * v3
            r += 4
        while r < R:
            o0 = out[r]
            a00 = A[r, j]
            a01 = A[r, j + 1]
            a02 = A[r, j + 2]
            a03 = A[r, j + 3]
            for k in range(C):
                o0[k] += a00 * b0[k] + a01 * b1[k] + a02 * b2[k] + a03 * b3[k]
            r += 1
        j += 4
    while j < n:
        b0 = B[j]
        for r in range(R):
            o0 = out[r]
            a00 = A[r, j]
            for k in range(C):
                o0[k] += a00 * b0[k]
        j += 1


@_jit
def _tn_rows_from(A, B, out, r, rows, t0):
    """out[r:r+rows] += A[t0:, r:r+rows]^T B[t0:], one t at a time: what the passes of
    _matmul_tn44/48 over whole groups of t and of rows leave over."""
    T = A.shape[0]
    C = B.shape[1]
    for t in range(t0, T):
        bt = B[t]
        for q in range(r, r + rows):
            a = A[t, q]
            oq = out[q]
            for kk in range(C):
                oq[kk] += a * bt[kk]


def _matmul_tn(A, B, out, accumulate):
    """out (+)= A^T B with A (T x R), B (T x C): sum over the T rows of outer products
    (a stub: numba compiles the dtype's version below)."""
    raise NotImplementedError


def _matmul_tn44(A, B, out, accumulate):
    """out (+)= A^T B with A (T x R), B (T x C): sum over the T rows of outer products.

    Four rows of out at a time, four t at a time: each row of B loaded serves four rows."""
    T, R = A.shape
    C = B.shape[1]
    if not accumulate:
        out[:R] = 0
    r = 0
    while r + 4 <= R:
        o0 = out[r]
        o1 = out[r + 1]
        o2 = out[r + 2]
        o3 = out[r + 3]
        t = 0
        while t + 4 <= T:
            b0 = B[t]
            b1 = B[t + 1]
            b2 = B[t + 2]
            b3 = B[t + 3]
            a00 = A[t, r]
            a01 = A[t + 1, r]
            a02 = A[t + 2, r]
            a03 = A[t + 3, r]
            a10 = A[t, r + 1]
            a11 = A[t + 1, r + 1]
            a12 = A[t + 2, r + 1]
            a13 = A[t + 3, r + 1]
            a20 = A[t, r + 2]
            a21 = A[t + 1, r + 2]
            a22 = A[t + 2, r + 2]
            a23 = A[t + 3, r + 2]
            a30 = A[t, r + 3]
            a31 = A[t + 1, r + 3]
            a32 = A[t + 2, r + 3]
            a33 = A[t + 3, r + 3]
            for kk in range(C):
                v0 = b0[kk]
                v1 = b1[kk]
                v2 = b2[kk]
                v3 = b3[kk]
                o0[kk] += a00 * v0 + a01 * v1 + a02 * v2 + a03 * v3
                o1[kk] += a10 * v0 + a11 * v1 + a12 * v2 + a13 * v3
                o2[kk] += a20 * v0 + a21 * v1 + a22 * v2 + a23 * v3
                o3[kk] += a30 * v0 + a31 * v1 + a32 * v2 + a33 * v3
            t += 4
        _tn_rows_from(A, B, out, r, 4, t)
        r += 4
    _tn_rows_from(A, B, out, r, R - r, 0)


def _matmul_tn48(A, B, out, accumulate):
    """_matmul_tn with eight t per pass over four rows of out (float32: fewer loads
    and stores of out per product)."""
    T, R = A.shape
    C = B.shape[1]
    if not accumulate:
        out[:R] = 0
    r = 0
    while r + 4 <= R:
        o0 = out[r]
        o1 = out[r + 1]
        o2 = out[r + 2]
        o3 = out[r + 3]
        t = 0
        while t + 8 <= T:
            b0 = B[t]
            b1 = B[t + 1]
            b2 = B[t + 2]
            b3 = B[t + 3]
            b4 = B[t + 4]
            b5 = B[t + 5]
            b6 = B[t + 6]
            b7 = B[t + 7]
            a0 = A[t:t + 8, r]
            a1 = A[t:t + 8, r + 1]
            a2 = A[t:t + 8, r + 2]
            a3 = A[t:t + 8, r + 3]
            a00 = a0[0]
            a01 = a0[1]
            a02 = a0[2]
            a03 = a0[3]
            a04 = a0[4]
            a05 = a0[5]
            a06 = a0[6]
            a07 = a0[7]
            a10 = a1[0]
            a11 = a1[1]
            a12 = a1[2]
            a13 = a1[3]
            a14 = a1[4]
            a15 = a1[5]
            a16 = a1[6]
            a17 = a1[7]
            a20 = a2[0]
            a21 = a2[1]
            a22 = a2[2]
            a23 = a2[3]
            a24 = a2[4]
            a25 = a2[5]
            a26 = a2[6]
            a27 = a2[7]
            a30 = a3[0]
            a31 = a3[1]
            a32 = a3[2]
            a33 = a3[3]
            a34 = a3[4]
            a35 = a3[5]
            a36 = a3[6]
            a37 = a3[7]
            for kk in range(C):
                v0 = b0[kk]
                v1 = b1[kk]
                v2 = b2[kk]
                v3 = b3[kk]
                v4 = b4[kk]
                v5 = b5[kk]
                v6 = b6[kk]
                v7 = b7[kk]
                o0[kk] += ((a00 * v0 + a01 * v1) + (a02 * v2 + a03 * v3)) + (
                    (a04 * v4 + a05 * v5) + (a06 * v6 + a07 * v7))
                o1[kk] += ((a10 * v0 + a11 * v1) + (a12 * v2 + a13 * v3)) + (
                    (a14 * v4 + a15 * v5) + (a16 * v6 + a17 * v7))
                o2[kk] += ((a20 * v0 + a21 * v1) + (a22 * v2 + a23 * v3)) + (
                    (a24 * v4 + a25 * v5) + (a26 * v6 + a27 * v7))
                o3[kk] += ((a30 * v0 + a31 * v1) + (a32 * v2 + a33 * v3)) + (
                    (a34 * v4 + a35 * v5) + (a36 * v6 + a37 * v7))
            t += 8
        _tn_rows_from(A, B, out, r, 4, t)
        r += 4
    _tn_rows_from(A, B, out, r, R - r, 0)

@overload(_matmul_tn, jit_options={"fastmath": _FASTMATH, "error_model": "numpy"})
def _matmul_tn_typed(A, B, out, accumulate):
    if out.dtype == types.float32:
        return _matmul_tn48
    return _matmul_tn44


# --------------------------------------------------------------------------------------
# Register-tiled products (tiles.py), blocked as tuning.py chose for this CPU: each kind of
# product (forward, backward, gradient) has its tiles of rows x vectors, the same with 4 rows
# and 1 row for what the rows leave over, and one vector wide for what the columns leave
# over. The blocking changes which tile computes an element, never how: the same bits.
# --------------------------------------------------------------------------------------

_VECTOR_BYTES = VECTOR_BYTES
_BLOCKING = tuning.chosen()
_ROWS = tuple(_BLOCKING[kind].rows for kind in tuning.KINDS)
_VECTORS = tuple(_BLOCKING[kind].vectors for kind in tuning.KINDS)
_BY_ROWS = tuple(_BLOCKING[kind].order == "rows" for kind in tuning.KINDS)
_FORWARD, _BACKWARD, _GRADIENT = 0, 1, 2

_f_full = make_tile(_ROWS[0], _VECTORS[0])
_f_4 = make_tile(4, _VECTORS[0])
_f_1 = make_tile(1, _VECTORS[0])
_f_narrow = make_tile(_ROWS[0], 1)
_b_full = make_tile(_ROWS[1], _VECTORS[1])
_b_4 = make_tile(4, _VECTORS[1])
_b_1 = make_tile(1, _VECTORS[1])
_b_narrow = make_tile(_ROWS[1], 1)
_g_full = make_tile(_ROWS[2], _VECTORS[2])
_g_4 = make_tile(4, _VECTORS[2])
_g_1 = make_tile(1, _VECTORS[2])
_g_narrow = make_tile(_ROWS[2], 1)
_narrow_4 = make_tile(4, 1)
_narrow_1 = make_tile(1, 1)
# A product of one row (one lane: evaluation, sampling, a batch of one) has one accumulator per
# vector of its tile, each a chain of dependent fused multiply-adds: a chain waits out the
# FMA's latency (4-5 cycles) at every k, so the tile is as wide as the registers allow, up to 8
# vectors (8 chains keep two FMA units busy).
_LANE_VECTORS = max(v for v in range(1, 9) if fits(1, v))
_lane = make_tile(1, _LANE_VECTORS)


@_jit
def _tile(kind, rows, narrow, lane, C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth,
          accumulate):
    """The tile of `kind` that is `rows` high (the kind's own, 4 or 1) and its vectors wide,
    or one vector wide when narrow, or the one-row product's _lane (tiles.make_tile's
    arguments follow)."""
    if lane and not narrow:
        _lane(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate)
    elif narrow:
        if rows == 1:
            _narrow_1(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate)
        elif rows == 4:
            _narrow_4(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate)
        elif kind == _FORWARD:
            _f_narrow(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate)
        elif kind == _BACKWARD:
            _b_narrow(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate)
        else:
            _g_narrow(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate)
    elif kind == _FORWARD:
        if rows == 1:
            _f_1(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate)
        elif rows == 4:
            _f_4(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate)
        else:
            _f_full(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate)
    elif kind == _BACKWARD:
        if rows == 1:
            _b_1(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate)
        elif rows == 4:
            _b_4(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate)
        else:
            _b_full(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate)
    else:
        if rows == 1:
            _g_1(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate)
        elif rows == 4:
            _g_4(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate)
        else:
            _g_full(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate)


@_jit
def _row_blocks(kind, r0, r1, c0, c1, width, Cf, ldc, Af, a_rs, a_ks, Bf, N, depth,
                accumulate):
    """Rows r0..r1-1 of the product, columns c0..c1-1: whole panels of the kind's vectors,
    then single vectors; its own rows high, then 4, then 1. (One call of _tile, and _gemm
    has one call of this: LLVM inlines each call site, and every tile is a lot of code.)"""
    rows = _ROWS[kind]
    lane = r1 - r0 == 1                               # a product of one row: the _lane tile
    span = (_LANE_VECTORS if lane else _VECTORS[kind]) * width
    r = r0
    while r < r1:
        high = rows if r + rows <= r1 else (4 if r + 4 <= r1 else 1)
        c = c0
        while c < c1:
            narrow = c + span > c1
            _tile(kind, high, narrow, lane, Cf, r * ldc + c, ldc, Af, r * a_rs, a_rs, a_ks, Bf,
                  c, N, depth, accumulate)
            c += width if narrow else span
        r += high


@_jit
def _kind(N, depth):
    """The kind of a product A B with B (depth x N) and A not transposed: a step's forward
    product widens (N > depth), the gradient sent back narrows."""
    return _FORWARD if N > depth else _BACKWARD


@_jit
def _gemm(A, B, C, transpose_a, accumulate):
    """C (+)= A B, or A^T B when transpose_a, for C-contiguous A, B and C (C may have more
    rows than the product; only the product's rows are written).

    Register tiles when B's rows are whole vectors (m = 16, 32, ..., 256, ... in float32 on
    AVX-512), blocked as this CPU's measurement chose for the product's kind: a block of
    rows meets every panel of B's columns before the next block (rows first), or a panel of
    B's columns stays in cache while every row passes it (columns first). Otherwise the loop
    kernels above, which need no whole vectors."""
    N = B.shape[1]
    width = _VECTOR_BYTES // A.itemsize
    if N % width != 0:
        if transpose_a:
            _matmul_tn(A, B, C, accumulate)
        else:
            _matmul_nn(A, B, C, accumulate)
        return
    if transpose_a:                                   # A'[r, k] = A[k, r]
        depth, R = A.shape
        a_rs, a_ks = 1, R
        kind = _GRADIENT
    else:
        R, depth = A.shape
        a_rs, a_ks = depth, 1
        kind = _kind(N, depth)
    ldc = C.shape[1]
    Af = A.reshape(-1)
    Bf = B.reshape(-1)
    Cf = C.reshape(-1)
    by_rows = _BY_ROWS[kind] or R == 1               # one row: across all the columns at once
    rows = _ROWS[kind]
    span = _VECTORS[kind] * width
    at = 0                                            # the next block of rows, or of columns
    while at < (R if by_rows else N):
        if by_rows:
            step = rows if at + rows <= R else (4 if at + 4 <= R else 1)
            r0, r1, c0, c1 = at, at + step, 0, N
        else:
            step = span if at + span <= N else width
            r0, r1, c0, c1 = 0, R, at, at + step
        _row_blocks(kind, r0, r1, c0, c1, width, Cf, ldc, Af, a_rs, a_ks, Bf, N, depth,
                    accumulate)
        at += step


# --------------------------------------------------------------------------------------
# Products with a transposed copy W^T (depth x N) that is packed in panels: the forward
# products of a training session read W_hh^T (and W_ih^T above layer 0) at every step, all of
# it for a group's few rows. Laid out as it is, each k of a tile's panel is a separate piece
# of a row of W^T, and once W^T outgrows the L2 cache (m = 384 and up; the LSTM's from 256)
# the hardware prefetcher does not keep up: 90-100 GFLOP/s at m = 384 against 140 at m =
# 256. Packed, each panel of the tiles' width is one run of memory, k after k, and the same
# tiles run at 115-135 (8 rows, m = 384) and 154 for the LSTM at m = 256 (2-core Intel Xeon,
# one thread). The tiles are the same, so are the bits. The one-lane kernels (evaluation,
# sampling) read the plain copy: their one-row tile is wider than a panel.
# --------------------------------------------------------------------------------------

@_jit
def _panel_width(N, depth, dt_example):
    """The panels' width of a packed W^T (depth x N): the span of the tiles that multiply by
    it (the kind _gemm gives A (R x depth) times it), or 0 where its rows are not whole
    vectors (_gemm then takes the loop kernels, which read the plain layout)."""
    width = _VECTOR_BYTES // dt_example.itemsize
    if N % width != 0:
        return 0
    return _VECTORS[_kind(N, depth)] * width


@_jit
def _pack_panels(W, dst, first, last):
    """Panels first..last-1 of W^T, W (N x depth), packed into the flat dst (N depth): panel
    p holds W^T's columns p P .. p P + w - 1 (w = P but for the last), as a (depth x w) block
    from dst[p P depth]. (_panel_width(N, depth) > 0.)"""
    N, depth = W.shape
    P = _panel_width(N, depth, W)
    for p in range(first, last):
        p0 = p * P
        w = min(P, N - p0)
        block = dst[p0 * depth:(p0 + w) * depth]
        for k in range(depth):
            row = block[k * w:(k + 1) * w]
            for j in range(w):
                row[j] = W[p0 + j, k]


@_jit
def _gemm_packed(A, WP, C):
    """C = A W^T for A (R x depth) and W^T (depth x N) packed by _pack_panels in the flat WP:
    _gemm's tiles, rows and order, one panel's columns at a time."""
    R, depth = A.shape
    N = C.shape[1]
    width = _VECTOR_BYTES // A.itemsize
    kind = _kind(N, depth)
    P = _panel_width(N, depth, A)
    panels = (N + P - 1) // P
    ldc = N
    Af = A.reshape(-1)
    Cf = C.reshape(-1)
    rows = _ROWS[kind]
    by_rows = _BY_ROWS[kind] or R == 1
    r = 0
    p = 0
    # one loop over (block of rows, panel) pairs in either order, so that _row_blocks has a
    # single call site here (each call site inlines every tile: a lot of code to compile)
    while r < R and p < panels:                       # a block of rows against a panel
        step = rows if r + rows <= R else (4 if r + 4 <= R else 1)
        p0 = p * P
        w = min(P, N - p0)
        _row_blocks(kind, r, r + step, 0, w, width, Cf[p0:], ldc, Af, depth, 1,
                    WP[p0 * depth:(p0 + w) * depth], w, depth, False)
        if by_rows:                                   # every panel, then the next rows
            p += 1
            if p == panels:
                p = 0
                r += step
        else:                                         # every block of rows, then the next panel
            r += step
            if r == R:
                r = 0
                p += 1


@_jit
def _gemm_wt(A, WT, at, packed, C):
    """C = A W^T for A (R x depth), the copy W^T (depth x N, N = C's columns) at WT[at:]:
    packed in panels (_pack_panels) when `packed` and W^T's rows are whole vectors, else as
    it is."""
    depth = A.shape[1]
    N = C.shape[1]
    if packed and _panel_width(N, depth, A) > 0:
        _gemm_packed(A, WT[at:at + depth * N], C)
    else:
        _gemm(A, WT[at:at + depth * N].reshape((depth, N)), C, False, False)


@_jit
def _tiles_fit(m, dt_example):
    """Whether rows of m elements are whole vectors (then _gemm uses the tiles)."""
    return m % (_VECTOR_BYTES // dt_example.itemsize) == 0


@_jit
def _transpose_rows(W, WT, lo, hi):
    """WT[:, lo:hi] = W[lo:hi]^T, sixteen rows of W at a time so that each row of WT
    receives a whole cache line."""
    m = W.shape[1]
    for i0 in range(lo, hi, 16):
        i1 = min(i0 + 16, hi)
        for j in range(m):
            wt = WT[j]
            for i in range(i0, i1):
                wt[i] = W[i, j]


@_jit
def _aligned_zeros(n, dt):
    """n zeros of dtype dt starting on a 64-byte boundary (one cache line, one AVX-512 vector)."""
    buf = np.zeros(n + 64, dt)
    skip = ((64 - buf.ctypes.data % 64) % 64) // buf.itemsize
    return buf[skip:skip + n]
