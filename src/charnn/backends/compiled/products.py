"""Dense products for the compiled kernels: loop kernels for any shape, register tiles
(written in LLVM IR) for rows of a whole number of tiles, and _gemm choosing between them.

Matrices are C-contiguous; rows are contiguous vectors. Each network's kernels build their
forward, output-layer and gradient products from these (see rnn.py, stack.py).
"""

from __future__ import annotations

import llvmlite.binding as ll
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .numerics import _FASTMATH, _jit


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
# Register-tiled products. LLVM keeps the loop-vectorised kernels above at 80-90 GFLOP/s per
# core in float32: each pass over a row of out loads and stores it again. The tile below
# holds an (8 x 2 vectors) block of out in registers for the whole sum over k: per k it
# loads two vectors of a row of B, broadcasts eight elements of A and issues sixteen fused
# multiply-adds, and writes the block once at the end (~115 GFLOP/s on the same core). numba
# has no vector types, so the tile is written in LLVM IR.
# --------------------------------------------------------------------------------------



def _target_has_avx512() -> bool:
    """Whether the CPU numba generates code for has AVX-512: the host's, or the one that
    NUMBA_CPU_NAME and NUMBA_CPU_FEATURES name (an empty feature list: the named CPU's own)."""
    from numba.core import config
    if config.CPU_FEATURES is not None:
        return "+avx512f" in config.CPU_FEATURES.split(",")
    return bool(ll.get_host_cpu_features().get("avx512f"))


_VECTOR_BYTES = 64 if _target_has_avx512() else 32
_TILE_ROWS = 8 if _VECTOR_BYTES == 64 else 4          # 2 x rows accumulators fit the register file


def _make_tile(rows):
    """An intrinsic tile(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate) on flat
    arrays of one dtype: for r < rows and the 2 vectors' worth of columns j from c0,

        C[c0 + r ldc + j] (+)= sum_{k < depth} A[a0 + r a_rs + k a_ks] B[b0 + k ldb + j]

    so A may be read row-wise (a_ks = 1) or column-wise (a_rs = 1, a transposed operand)."""

    @intrinsic
    def tile(typingctx, C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate):
        signature = types.void(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate)

        def codegen(context, builder, sig, args):
            c_arr, c0, ldc, a_arr, a0, a_rs, a_ks, b_arr, b0, ldb, depth, accumulate = args
            dtype = sig.args[0].dtype
            item = dtype.bitwidth // 8
            width = _VECTOR_BYTES // item
            element = context.get_value_type(dtype)
            vector = ir.VectorType(element, width)
            i32, i64 = ir.IntType(32), ir.IntType(64)
            c_ptr = context.make_array(sig.args[0])(context, builder, c_arr).data
            a_ptr = context.make_array(sig.args[3])(context, builder, a_arr).data
            b_ptr = context.make_array(sig.args[7])(context, builder, b_arr).data
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vector, [vector] * 3),
                f"llvm.fma.v{width}f{dtype.bitwidth}")
            zero = ir.Constant(vector, [ir.Constant(element, 0.0)] * width)
            undef = ir.Constant(vector, ir.Undefined)
            splat = ir.Constant(ir.VectorType(i32, width), [0] * width)

            def vector_at(ptr, index):                # unaligned load / store address
                return builder.bitcast(builder.gep(ptr, [index]), vector.as_pointer())

            # accumulators live in allocas that LLVM promotes to registers
            acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(2)]
                   for _ in range(rows)]
            with cgutils.for_range(builder, depth) as loop:
                k = loop.index
                b_row = builder.add(b0, builder.mul(k, ldb))
                bv = (builder.load(vector_at(b_ptr, b_row), align=item),
                      builder.load(vector_at(b_ptr, builder.add(b_row, ir.Constant(i64, width))),
                                   align=item))
                a_k = builder.add(a0, builder.mul(k, a_ks))
                for r in range(rows):
                    a = builder.load(builder.gep(
                        a_ptr, [builder.add(a_k, builder.mul(ir.Constant(i64, r), a_rs))]))
                    av = builder.shuffle_vector(
                        builder.insert_element(undef, a, ir.Constant(i32, 0)), undef, splat)
                    for j in range(2):
                        builder.store(builder.call(fma, [av, bv[j], builder.load(acc[r][j])]),
                                      acc[r][j])
            keep = accumulate
            if keep.type != ir.IntType(1):
                keep = builder.icmp_unsigned("!=", keep, ir.Constant(keep.type, 0))
            for r in range(rows):
                c_row = builder.add(c0, builder.mul(ir.Constant(i64, r), ldc))
                for j in range(2):
                    where = vector_at(c_ptr, builder.add(c_row, ir.Constant(i64, j * width)))
                    base = builder.select(keep, builder.load(where, align=item), zero)
                    builder.store(builder.fadd(base, builder.load(acc[r][j])), where, align=item)
            return context.get_dummy_value()
        return signature, codegen
    return tile


_tile_full = _make_tile(_TILE_ROWS)
_tile_4 = _make_tile(4)
_tile_1 = _make_tile(1)


@_jit
def _gemm(A, B, C, transpose_a, accumulate):
    """C (+)= A B, or A^T B when transpose_a, for C-contiguous A, B and C (C may have more
    rows than the product; only the product's rows are written).

    Register tiles when B's row length is a whole number of tiles (m = 128, 256, 512, ...);
    otherwise the loop kernels above, which need no whole tiles."""
    N = B.shape[1]
    span = 2 * _VECTOR_BYTES // A.itemsize            # columns per tile
    if N % span != 0:
        if transpose_a:
            _matmul_tn(A, B, C, accumulate)
        else:
            _matmul_nn(A, B, C, accumulate)
        return
    if transpose_a:                                   # A'[r, k] = A[k, r]
        depth, R = A.shape
        a_rs, a_ks = 1, R
    else:
        R, depth = A.shape
        a_rs, a_ks = depth, 1
    ldc = C.shape[1]
    Af = A.reshape(-1)
    Bf = B.reshape(-1)
    Cf = C.reshape(-1)
    for c0 in range(0, N, span):                      # a block of B's columns stays in cache
        r = 0                                         # while every row of A' passes it
        while r + _TILE_ROWS <= R:
            _tile_full(Cf, r * ldc + c0, ldc, Af, r * a_rs, a_rs, a_ks, Bf, c0, N, depth,
                       accumulate)
            r += _TILE_ROWS
        while r + 4 <= R:
            _tile_4(Cf, r * ldc + c0, ldc, Af, r * a_rs, a_rs, a_ks, Bf, c0, N, depth,
                    accumulate)
            r += 4
        while r < R:
            _tile_1(Cf, r * ldc + c0, ldc, Af, r * a_rs, a_rs, a_ks, Bf, c0, N, depth,
                    accumulate)
            r += 1


@_jit
def _tiles_fit(m, dt_example):
    """Whether rows of m elements are whole register tiles (then _gemm uses the tiles)."""
    return m % (2 * _VECTOR_BYTES // dt_example.itemsize) == 0


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
