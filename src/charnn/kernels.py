"""The compiled path: the work of steps.py in numba (nopython, cached on disk).

The public functions take the same arguments as those of steps.py and change the same
arrays in place; they unpack the Params dataclass and the optimiser state dict and call
@njit kernels, so one call to train_updates runs all its updates without coming back to
Python. Parameters may be float64 or float32 (every array of one dtype, C-contiguous);
in float32 the arithmetic stays in float32 and only the loss is summed in float64.

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
    (_make_tile, written in LLVM IR because numba has no vector types).
  * With several lanes (batch rows) the lanes advance together: each time step is a
    (lanes x m)(m x m) product, the output layer and the gradients of all lanes and time
    steps are single products, and positions past a lane's window are masked. The lanes are
    split into groups, each with its own gradient buffers, which the threads share out; the
    buffers are summed in group order and the threads step W and V, a share of the rows
    each. How many groups depends on the number of lanes alone (lane_groups), so a run gives
    the same bits on any number of threads. One lane runs single-threaded.
  * The text may be uint8 (vocabularies of up to 256 characters) or int32, a memmap too: it
    is read where it lies, never copied, as bytes with one or four to a character (_text,
    _char), so each kernel is compiled once for both.

Shapes follow model.py: U (m, K), W (m, m), V (K, m), b (m,), c (K,); H rows are h_t.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np

from . import paths

os.environ.setdefault("NUMBA_CACHE_DIR", str(paths.cache_dir() / "numba"))

import numba  # noqa: E402  (must follow the cache folder's setting)

if not numba.config.CACHE_DIR:     # numba was imported before charnn and missed the setting
    numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
from numba import njit, prange, types  # noqa: E402
from numba.core import cgutils  # noqa: E402
from numba.extending import intrinsic, overload  # noqa: E402
import llvmlite.binding as ll  # noqa: E402
from llvmlite import ir  # noqa: E402

from . import optim  # noqa: E402
from .model import Params  # noqa: E402

# What this backend runs (see backends.py).
NETWORKS = ("rnn",)
DTYPES = ("float64", "float32")

# Re-association lets sums vectorise; contraction allows fused multiply-adds. NaN and
# infinity keep their IEEE meaning, so a diverging run still shows NaN.
_FASTMATH = {"reassoc", "contract", "nsz"}
_OPT_CODE = {"adagrad": 0, "rmsprop": 1, "adam": 2}


def _jit(fn=None, *, parallel=False):
    deco = njit(cache=True, fastmath=_FASTMATH, error_model="numpy", parallel=parallel)
    return deco if fn is None else deco(fn)


# Constants handed to the kernels in the parameters' dtype, so float32 arithmetic never
# meets a float64 literal (which would promote it).
_C_ETA, _C_EPS, _C_GAMMA, _C_1MGAMMA, _C_B1, _C_1MB1, _C_B2, _C_1MB2, _C_CLIP, _C_ONE, \
    _C_NCONST = range(11)


def _constants(dtype, eta: float = 0.0, clip: float = 0.0) -> np.ndarray:
    consts = np.zeros(_C_NCONST, dtype=dtype)
    consts[_C_ETA] = eta
    consts[_C_EPS] = optim.EPS
    consts[_C_GAMMA] = optim.RMSPROP_GAMMA
    consts[_C_1MGAMMA] = 1 - optim.RMSPROP_GAMMA
    consts[_C_B1] = optim.ADAM_BETA1
    consts[_C_1MB1] = 1 - optim.ADAM_BETA1
    consts[_C_B2] = optim.ADAM_BETA2
    consts[_C_1MB2] = 1 - optim.ADAM_BETA2
    consts[_C_CLIP] = clip
    consts[_C_ONE] = 1
    return consts


# exp without a call per element, for the softmax: 2^n exp(r) with n = round(x / ln 2),
# r = x - n ln 2 (ln 2 split in two parts so n ln 2 is exact), exp(r) a Taylor series, and
# 2^n written directly into the exponent bits. Arguments are <= 0 (logits minus their max).
# Where 2^n is below the smallest normal power (x < -708; float32: -87) it is applied in two
# steps, 2^(n + k) 2^-k, so that the result underflows through the subnormals to zero exactly
# as numpy's exp does: a character whose probability underflows then costs an infinite loss,
# and a diverging run shows it. As in numpy, NaN stays NaN, exp(-inf) = 0 and
# exp(inf) = inf (the first clamp sends NaN to the lower bound so that no NaN meets the
# integer conversion; the selects at the end put NaN and -inf right).

def _split_ln2(bits_kept, dtype):
    import decimal
    ln2 = decimal.Decimal(2).ln()
    whole = np.array(float(ln2), dtype=dtype)
    itype = np.int64 if dtype == np.float64 else np.int32
    drop = np.finfo(dtype).nmant - bits_kept
    hi = (whole.view(itype) >> drop << drop).view(dtype)
    lo = dtype(float(ln2 - decimal.Decimal(float(hi))))
    return dtype(hi), lo


_LN2_HI64, _LN2_LO64 = _split_ln2(32, np.float64)
_LN2_HI32, _LN2_LO32 = _split_ln2(12, np.float32)
_LOG2E64 = 1.0 / math.log(2.0)
_LOG2E32 = np.float32(_LOG2E64)


@intrinsic
def _as_float(typingctx, bits):
    """The float whose IEEE bits are `bits` (int64 -> float64, int32 -> float32)."""
    target = types.float64 if bits.bitwidth == 64 else types.float32

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(target))
    return target(bits), codegen


def _vexp(v, n):
    """v[:n] = exp(v[:n]) in place for v <= 0 (a stub: numba compiles the dtype's version)."""
    raise NotImplementedError


def _vexp64(v, n):
    c = _F64
    for i in range(n):
        x0 = v[i]
        x = x0 if x0 > -746.0 else -746.0             # exp(-746) is 0 in float64
        x = x if x < 710.0 else 710.0               # 2^1024: inf
        t = np.floor(x * _LOG2E64 + 0.5)
        r = (x - t * _LN2_HI64) - t * _LN2_LO64
        p = c[0] + r * (c[1] + r * (c[2] + r * (c[3] + r * (c[4] + r * (c[5] + r * (c[6] + r * (
            c[7] + r * (c[8] + r * (c[9] + r * (c[10] + r * (c[11] + r * (c[12] + r * c[13]
                                                                                  ))))))))))))
        low = t < -1000.0                           # 2^t below the normal range: two steps
        k = np.int64(64) if low else np.int64(0)
        y = p * _as_float((np.int64(t) + k + 1023) << 52)
        y = y * (5.421010862427522e-20 if low else 1.0)     # 2^-64
        y = y if x0 == x0 else x0
        v[i] = y if x0 != -np.inf else 0.0


def _vexp32(v, n):
    c = _F32
    for i in range(n):
        x0 = v[i]
        x = x0 if x0 > np.float32(-104.0) else np.float32(-104.0)   # exp(-104) is 0
        x = x if x < np.float32(89.0) else np.float32(89.0)    # 2^128: inf
        t = np.floor(x * _LOG2E32 + np.float32(0.5))
        r = (x - t * _LN2_HI32) - t * _LN2_LO32
        p = c[0] + r * (c[1] + r * (c[2] + r * (c[3] + r * (c[4] + r * (c[5] + r * (c[6] + r * (
            c[7])))))))
        low = t < np.float32(-100.0)                # 2^t below the normal range: two steps
        k = np.int32(32) if low else np.int32(0)
        y = p * _as_float(np.int32((np.int32(t) + k + np.int32(127)) << np.int32(23)))
        y = y * (np.float32(2.3283064365386963e-10) if low else np.float32(1.0))   # 2^-32
        y = y if x0 == x0 else x0
        v[i] = y if x0 != -np.inf else np.float32(0.0)


@overload(_vexp, jit_options={"fastmath": {"contract", "nsz"}, "error_model": "numpy"})
def _vexp_typed(v, n):
    if v.dtype == types.float32:
        return _vexp32
    return _vexp64


# --------------------------------------------------------------------------------------
# tanh without a call per element: libm's tanh does not vectorise, and it would cost a fifth
# of an update. tanh x = -e / (2 + e) with e = expm1(-2|x|), and expm1(y) is a Taylor
# series on y / 64 followed by six doublings expm1(2z) = expm1(z) (expm1(z) + 2). Only
# multiplications, additions and one division, so the loop vectorises; the result is within
# a few ulps of libm's (tests/test_kernels.py checks it).
# --------------------------------------------------------------------------------------

_INV_FACT = [1.0 / math.factorial(k) for k in range(16)]
_F64 = tuple(_INV_FACT)
_F32 = tuple(np.float32(v) for v in _INV_FACT)


def _vtanh(v, n):
    """v[:n] = tanh(v[:n]) in place (a stub: numba compiles the dtype's version below)."""
    raise NotImplementedError


def _vtanh64(v, n):
    c = _F64
    for i in range(n):
        x = v[i]
        ax = abs(x)
        ax = 20.0 if ax > 20.0 else ax              # tanh(20) is 1 in float64; NaN stays NaN
        y = ax * -0.03125                           # -2|x| / 64
        e = y * (c[1] + y * (c[2] + y * (c[3] + y * (c[4] + y * (c[5] + y * (c[6] + y * (
            c[7] + y * (c[8] + y * (c[9] + y * (c[10] + y * (c[11] + y * (c[12] + y * (
                c[13] + y * (c[14] + y * c[15]))))))))))))))
        e = e * (e + 2.0)
        e = e * (e + 2.0)
        e = e * (e + 2.0)
        e = e * (e + 2.0)
        e = e * (e + 2.0)
        e = e * (e + 2.0)
        t = -e / (2.0 + e)
        v[i] = t if x >= 0.0 else -t


def _vtanh32(v, n):
    c = _F32
    two = np.float32(2.0)
    for i in range(n):
        x = v[i]
        ax = abs(x)
        ax = np.float32(9.0) if ax > np.float32(9.0) else ax   # tanh(9) is 1 in float32; NaN stays
        y = ax * np.float32(-0.03125)
        e = y * (c[1] + y * (c[2] + y * (c[3] + y * (c[4] + y * (c[5] + y * (c[6] + y * (
            c[7])))))))
        e = e * (e + two)
        e = e * (e + two)
        e = e * (e + two)
        e = e * (e + two)
        e = e * (e + two)
        e = e * (e + two)
        t = -e / (two + e)
        v[i] = t if x >= np.float32(0.0) else -t


@overload(_vtanh, jit_options={"fastmath": {"contract", "nsz"}, "error_model": "numpy"})
def _vtanh_typed(v, n):
    if v.dtype == types.float32:
        return _vtanh32
    return _vtanh64


# --------------------------------------------------------------------------------------
# Small dense building blocks. Matrices are C-contiguous; rows are contiguous vectors.
# --------------------------------------------------------------------------------------

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

_VECTOR_BYTES = 64 if ll.get_host_cpu_features().get("avx512f") else 32
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
def _softmax_rows(O, L):
    """Rows 0..L-1 of O become softmax(O[t]) in place (max subtracted, so exp cannot overflow).

    A NaN in a row is passed over by the max but carried by the sum, so the whole row becomes
    NaN, as numpy's softmax makes it (there the max is NaN)."""
    K = O.shape[1]
    for t in range(L):
        o = O[t]
        mx = o[0]
        for k in range(1, K):
            if o[k] > mx:
                mx = o[k]
        for k in range(K):
            o[k] -= mx
        _vexp(o, K)
        s = mx - mx
        for k in range(K):
            s += o[k]
        for k in range(K):
            o[k] = o[k] / s


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
    H[0, :] = h
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
    h[:] = H[L]
    return loss


# --------------------------------------------------------------------------------------
# Clipping and the update rules (optim.py), fused per element.
# --------------------------------------------------------------------------------------

@_jit
def _clip(g, clip):
    """g limited to [-clip, clip]; NaN stays NaN (both comparisons are false), as in np.clip."""
    if g > clip:
        return clip
    if g < -clip:
        return -clip
    return g


def _adagrad(theta, grad, s1, eta, eps, clip, n):
    """AdaGrad on theta[:n] (a stub: numba compiles the dtype's version below)."""
    raise NotImplementedError


def _adagrad32(theta, grad, s1, eta, eps, clip, n):
    for i in range(n):
        g = _clip(grad[i], clip)
        s1[i] += g * g
        theta[i] -= eta * g / np.sqrt(s1[i] + eps)


def _adagrad64(theta, grad, s1, eta, eps, clip, n):
    # 1 / sqrt(s + eps) from float32's square root and division (half the width, far
    # cheaper than float64's), then two Newton steps y (3 - x y^2) / 2, each squaring the
    # relative error: ~1e-7 -> ~1e-14 -> rounding level, within a few ulps of numpy's
    # eta g / sqrt(s + eps). Past float32's range (s + eps > 3.4e38, inf included) the estimate
    # is 0 and stays 0 (hx is zeroed so that inf * 0 makes no NaN): numpy's g / sqrt(inf) is 0
    # too, and below inf its step would be under 1e-19 eta. A NaN in s or g stays NaN.
    for i in range(n):
        g = _clip(grad[i], clip)
        x = s1[i] + g * g
        s1[i] = x
        x = x + eps
        y = np.float64(np.float32(1.0) / np.sqrt(np.float32(x)))
        hx = 0.5 * x if y != 0.0 else 0.0
        y = y * (1.5 - hx * y * y)
        y = y * (1.5 - hx * y * y)
        theta[i] -= eta * g * y


@overload(_adagrad, jit_options={"fastmath": _FASTMATH, "error_model": "numpy"})
def _adagrad_typed(theta, grad, s1, eta, eps, clip, n):
    if theta.dtype == types.float32:
        return _adagrad32
    return _adagrad64


@_jit
def _update_dense(theta, grad, s1, s2, opt, consts, bc1, bc2):
    """One update of the flat array theta with gradient grad (clipped here) and state s1, s2."""
    eta = consts[_C_ETA]
    eps = consts[_C_EPS]
    clip = consts[_C_CLIP]
    n = theta.size
    if opt == 0:
        _adagrad(theta, grad, s1, eta, eps, clip, n)
    elif opt == 1:
        gamma = consts[_C_GAMMA]
        one_m = consts[_C_1MGAMMA]
        for i in range(n):
            g = _clip(grad[i], clip)
            s1[i] = s1[i] * gamma + one_m * g * g
            theta[i] -= eta * g / np.sqrt(s1[i] + eps)
    else:
        b1 = consts[_C_B1]
        omb1 = consts[_C_1MB1]
        b2 = consts[_C_B2]
        omb2 = consts[_C_1MB2]
        for i in range(n):
            g = _clip(grad[i], clip)
            s1[i] = s1[i] * b1 + omb1 * g
            s2[i] = s2[i] * b2 + omb2 * g * g
            theta[i] -= eta * (s1[i] / bc1) / (np.sqrt(s2[i] / bc2) + eps)



@_jit
def _bias_corrections(opt, consts, betas, scratch, t_opt):
    """scratch[:2] = Adam's 1 - beta^t (computed in float64 like optim.py), or ones."""
    if opt == 2:
        scratch[0] = 1.0 - betas[0] ** t_opt
        scratch[1] = 1.0 - betas[1] ** t_opt
    else:
        scratch[0] = consts[_C_ONE]
        scratch[1] = consts[_C_ONE]


@_jit
def _update_rows(theta, gs, s1, s2, lo, hi, active, opt, consts, bc1, bc2, row):
    """Rows lo..hi-1 of the matrix theta, as _apply_update does them: the gradient summed over
    the groups' buffers gs[:, i], averaged over `active` lanes, then clipped and stepped.
    Row by row, so each row's gradient, state and weights are read once while in cache."""
    G = gs.shape[0]
    div = consts[_C_ONE] * active
    for i in range(lo, hi):
        row[:] = gs[0, i]
        for g in range(1, G):
            row += gs[g, i]
        if active == 0:                               # nothing to learn from: zero gradient
            row[:] = 0
        elif active > 1:
            for j in range(row.size):
                row[j] = row[j] / div
        _update_dense(theta[i], row, s1[i], s2[i] if opt == 2 else s2[0], opt, consts, bc1,
                      bc2)


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
def _char(text, width, i):
    """Character i of the text as int32. The kernels get every text as its bytes (see _text):
    width 1 for a uint8 text, 4 for an int32 one (little-endian), so that numba compiles each
    kernel once, not once per dtype."""
    if width == 1:
        return np.int32(text[i])
    j = 4 * i
    return (np.int32(text[j]) | (np.int32(text[j + 1]) << 8) | (np.int32(text[j + 2]) << 16)
            | (np.int32(text[j + 3]) << 24))


@_jit
def _train(U, W, V, b, c, sU, sW, sV, sb, sc, tU, tW, tV, tb, tc, opt, consts, betas,
           opt_step, h, data, width, starts, lengths, resets, first, last, losses):
    """Updates first..last-1 of the schedule (see steps.train_updates), lane after lane."""
    m, K = U.shape
    B = h.shape[0]
    one = consts[_C_ONE]
    Lmax = 1
    for u in range(first, last):
        for lane in range(B):
            Lmax = max(Lmax, lengths[u, lane])
    H = np.empty((Lmax + 1, m), U.dtype)
    P = np.empty((Lmax, K), U.dtype)
    DH = np.empty((Lmax, m), U.dtype)
    dh = np.empty((2, m), U.dtype)
    gb = np.zeros(m, U.dtype)
    gc = np.zeros(K, U.dtype)
    gW = np.zeros((m, m), U.dtype)
    gV = np.zeros((K, m), U.dtype)
    gUT = np.zeros((K, m), U.dtype)
    gU = np.zeros((m, K) if opt != 0 else (1, 1), U.dtype)
    cols = np.zeros((2, m), U.dtype)
    scratch = np.zeros(2, U.dtype)
    mark = np.zeros(K, np.uint8)
    seen = np.zeros(K, np.int64)
    win = np.zeros(Lmax + 1, np.int32)
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
                H[0, r, :] = h[lane]
            Lg = max(Lg, L)
        else:
            H[0, r, :] = 0
    gb[:] = 0
    gc[:] = 0
    gW[:] = 0
    gV[:] = 0
    if Lg == 0:
        return 0.0
    # forward: H[t+1] = tanh(H[t] W^T + U[:, x_t]^T + b) for the lanes still inside their window
    tiles = _tiles_fit(m, W)
    for t in range(Lg):
        Ht = H[t]
        Hn = H[t + 1]
        if tiles:
            _gemm(Ht, WT, Hn, False, False)           # H[t] W^T from W^T's rows
            for r in range(n):
                Hn[r] += b
        else:
            _matmul_nt(Ht, W, b, Hn)                  # H[t] W^T + b: W's rows as they are
        for r in range(n):
            hr = Hn[r]
            if t < Ls[r]:
                ur = UT[data[st[lo + r] + t]]
                for i in range(m):
                    hr[i] = hr[i] + ur[i]
                _vtanh(hr, m)
            else:
                hr[:] = Ht[r]
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
                mx = o[0]
                for k in range(1, K):
                    if o[k] > mx:
                        mx = o[k]
                for k in range(K):
                    o[k] -= mx
                _vexp(o, K)
                s = mx - mx
                for k in range(K):
                    s += o[k]
                for k in range(K):
                    o[k] = o[k] / s
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
                ht = H[t + 1, r]
                dht = DH[t, r]
                dn = dh[r]
                for i in range(m):
                    da[i] = (dht[i] + dn[i]) * (one - ht[i] * ht[i])
            else:
                da[:] = 0
        if t > 0:
            _gemm(DA[t], W, dh, False, False)         # dh_{t-1} = DA_t W
    DAs = DA[:Lg].reshape((N, m))
    _gemm(DAs, Hp, gW, True, False)                   # dW = DA^T H_prev
    for t in range(Lg):
        for r in range(n):
            if t < Ls[r]:
                da = DA[t, r]
                row = gUT[data[st[lo + r] + t]]
                for i in range(m):
                    gb[i] += da[i]
                    row[i] += da[i]
    for r in range(n):
        if Ls[r] > 0:
            h[lo + r, :] = H[Ls[r], r]
    return loss


@_jit
def _active_lanes(ln):
    """Lanes with at least one character in this update."""
    active = 0
    for lane in range(ln.shape[0]):
        if ln[lane] > 0:
            active += 1
    return active


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
        gb[:] = gbs[0]
        gc[:] = gcs[0]
        for g in range(1, G):
            gb += gbs[g]
            gc += gcs[g]
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
def _gather_windows(data, width, st, ln, win, wst):
    """win[wst[l]:wst[l]+L+1] = characters s..s+L of the text for each lane l with a window
    (s = st[l], L = ln[l]), as int32 (see _char)."""
    for lane in range(ln.shape[0]):
        L = ln[lane]
        if L > 0:
            s = st[lane]
            w = wst[lane]
            for t in range(L + 1):
                win[w + t] = _char(data, width, s + t)


@_jit
def _aligned_zeros(n, dt):
    """n zeros of dtype dt starting on a 64-byte boundary (one cache line, one AVX-512 vector)."""
    buf = np.zeros(n + 64, dt)
    skip = ((64 - buf.ctypes.data % 64) % 64) // buf.itemsize
    return buf[skip:skip + n]


@_jit(parallel=True)
def _train_batch(U, W, V, b, c, sU, sW, sV, sb, sc, tU, tW, tV, tb, tc, opt, consts, betas,
                 opt_step, h, data, width, starts, lengths, resets, first, last, losses, G):
    """Updates first..last-1 of the schedule with B > 1 lanes, the lanes split into G groups
    that the threads share out (see _group_update). The result depends on G, not on the
    number of threads: each group sums into its own buffers, and they are added in order."""
    m, K = U.shape
    B = h.shape[0]
    n = (B + G - 1) // G
    dt = U.dtype
    Lmax = 1
    for u in range(first, last):
        for lane in range(B):
            Lmax = max(Lmax, lengths[u, lane])
    # The products read and write whole rows; on cache-line boundaries no vector load
    # straddles two lines (numpy and numba only promise 16 or 32 bytes).
    Hb = _aligned_zeros(G * (Lmax + 1) * n * m, dt).reshape((G, Lmax + 1, n, m))
    Ob = _aligned_zeros(G * Lmax * n * K, dt).reshape((G, Lmax, n, K))
    DHb = _aligned_zeros(G * Lmax * n * m, dt).reshape((G, Lmax, n, m))
    dhb = _aligned_zeros(G * n * m, dt).reshape((G, n, m))
    Lsb = np.zeros((G, n), np.int64)
    gbs = np.zeros((G, m), dt)
    gcs = np.zeros((G, K), dt)
    gWs = _aligned_zeros(G * m * m, dt).reshape((G, m, m))
    gVs = _aligned_zeros(G * K * m, dt).reshape((G, K, m))
    gUTs = _aligned_zeros(G * K * m, dt).reshape((G, K, m))
    gl = np.zeros(G)
    UT = _aligned_zeros(K * m, dt).reshape((K, m))
    Wa = _aligned_zeros(m * m, dt).reshape((m, m))      # aligned working copies of W and V,
    Va = _aligned_zeros(K * m, dt).reshape((K, m))      # copied back at the end
    Wa[:] = W
    Va[:] = V
    tiles = _tiles_fit(m, W)
    WT = _aligned_zeros(m * m if tiles else 1, dt).reshape((m, m) if tiles else (1, 1))
    if tiles:                                         # the forward product reads W^T's rows
        _transpose_rows(Wa, WT, 0, m)
    gb = np.zeros(m, dt)
    gc = np.zeros(K, dt)
    gUT = np.zeros((K, m), dt)
    gU = np.zeros((m, K) if opt != 0 else (1, 1), dt)
    cols = np.zeros((2, m), dt)
    scratch = np.zeros(2, dt)
    bcs = np.zeros(2, dt)
    rows = np.zeros((G, m), dt)
    mark = np.zeros(K, np.uint8)
    seen = np.zeros(K, np.int64)
    win = np.zeros(B * (Lmax + 1), np.int32)         # the lanes' windows, as int32
    wst = np.arange(B) * (Lmax + 1)                   # where each lane's window starts in win
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
    W[:] = Wa
    V[:] = Va


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
        h[:] = h2
        y = _char(data, width, t + 1)
        mx = c[0] - c[0]
        for k in range(K):                            # o = V h + c
            acc = c[k] - c[k]
            vk = V[k]
            for j in range(h.size):
                acc += vk[j] * h[j]
            o[k] = acc + c[k]
        mx = o[0]
        for k in range(1, K):
            if o[k] > mx:
                mx = o[k]
        for k in range(K):
            o[k] -= mx
        _vexp(o, K)
        s = mx - mx
        for k in range(K):
            s += o[k]
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
            h[:] = h0[0] if shared else h0[q]
            out[q] = _segment_loss(U, W, V, b, c, data, width, start, end, h, h2, o)


@_jit
def _advance(U, W, b, h, inputs, width):
    h2 = np.empty_like(h)
    for t in range(inputs.size // width):
        _step_hidden(W, U, b, _char(inputs, width, t), h, h2)
        h[:] = h2


@njit(cache=True)
def _block_sum(a, lo, n):
    """numpy's sum of a contiguous block a[lo:lo+n], n <= 128, in a's dtype: 8 partial
    sums combined pairwise, then the tail. No fastmath: the order is the point."""
    if n < 8:
        res = a[lo] - a[lo]
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0 = a[lo]
    r1 = a[lo + 1]
    r2 = a[lo + 2]
    r3 = a[lo + 3]
    r4 = a[lo + 4]
    r5 = a[lo + 5]
    r6 = a[lo + 6]
    r7 = a[lo + 7]
    i = 8
    while i < n - (n % 8):
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


# numpy halves a longer vector (cutting at a multiple of 8) and adds the halves' sums. numba's
# disk cache does not keep recursive functions, so the halving is written out three levels
# deep (vocabularies up to about 900 characters); longer ones are summed block by block.

@njit(cache=True)
def _halves1(a, lo, n):
    if n <= 128:
        return _block_sum(a, lo, n)
    n2 = n // 2
    n2 -= n2 % 8
    return _block_sum(a, lo, n2) + _block_sum(a, lo + n2, n - n2)


@njit(cache=True)
def _halves2(a, lo, n):
    if n <= 128:
        return _block_sum(a, lo, n)
    n2 = n // 2
    n2 -= n2 % 8
    return _halves1(a, lo, n2) + _halves1(a, lo + n2, n - n2)


@njit(cache=True)
def _pairwise_sum(a, lo, n):
    if n <= 128:
        return _block_sum(a, lo, n)
    n2 = n // 2
    n2 -= n2 % 8
    if n2 > 496:
        res = a[lo] - a[lo]
        for q in range(lo, lo + n, 128):
            res += _block_sum(a, q, min(128, lo + n - q))
        return res
    return _halves2(a, lo, n2) + _halves2(a, lo + n2, n - n2)


@njit(cache=True, error_model="numpy")
def _sample(U, W, V, b, c, h, x, uniforms, temperature, top_k, top_p, greedy, stop_index,
            out):
    """steps.sample_indices, compiled. Without fastmath: the filtering and the inverse CDF
    follow steps.filtered_probabilities operation by operation."""
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
        h[:] = h2
        for k in range(K):
            acc = c[k] - c[k]
            vk = V[k]
            for j in range(m):
                acc += vk[j] * h[j]
            o[k] = acc + c[k]
        if greedy:                                    # np.argmax: the first NaN, if any
            best = 0
            for k in range(1, K):
                if o[best] != o[best]:
                    break
                if o[k] > o[best] or o[k] != o[k]:
                    best = k
            x = best
        else:
            for k in range(K):                        # softmax(o / T) in the params' dtype
                e[k] = o[k] / temperature
            mx = e[0]
            for k in range(1, K):
                if e[k] > mx:
                    mx = e[k]
            for k in range(K):
                e[k] = np.exp(e[k] - mx)
            s = _pairwise_sum(e, 0, K)                # in the params' dtype, as numpy does
            for k in range(K):
                p[k] = np.float64(e[k] / s)
            keep = K
            if (0 < top_k < keep) or top_p < 1.0:
                order = np.argsort(-p, kind="mergesort")   # most likely first, stable
                if 0 < top_k < keep:
                    keep = top_k
                if top_p < 1.0:
                    for k in range(K):
                        sorted_p[k] = p[order[k]]
                    reach = np.cumsum(sorted_p)
                    keep = min(keep, int(np.searchsorted(reach, top_p, side="left")) + 1)
                for k in range(keep, K):
                    p[order[k]] = 0.0
            total = _pairwise_sum(p, 0, K)
            for k in range(K):
                p[k] = p[k] / total
            acc = 0.0
            for k in range(K):
                acc += p[k]
                cdf[k] = acc
            x = min(int(np.searchsorted(cdf, uniforms[q] * cdf[K - 1], side="right")), K - 1)
        out[n] = x
        n += 1
        if x == stop_index:
            break
    return n


# --------------------------------------------------------------------------------------
# The interface of steps.py.
# --------------------------------------------------------------------------------------

def _check_params(params: Params) -> None:
    dtype = params.dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"parameters must be float32 or float64, not {dtype}")
    for name, a in params.items():
        if a.dtype != dtype or not a.flags.c_contiguous:
            raise ValueError(f"parameter {name} must be a C-contiguous {dtype} array")


def _state_arrays(optimizer: str, params: Params, opt_state: dict[str, np.ndarray]):
    first = tuple(opt_state[f"m_{name}"] for name in ("U", "W", "V", "b", "c"))
    if optimizer == "adam":
        second = tuple(opt_state[f"v_{name}"] for name in ("U", "W", "V", "b", "c"))
    else:
        second = first                                # unused by AdaGrad and RMSProp
    for a in first + second:
        if a.dtype != params.dtype or not a.flags.c_contiguous:
            raise ValueError("optimiser state arrays must be C-contiguous, of the params' dtype")
    return first, second


_GROUP_LANES = 8
_MAX_GROUPS = 8


def _text(data) -> tuple[np.ndarray, int]:
    """Character indices as the kernels read them: (the bytes, the bytes per character), the
    bytes a one-dimensional, read-only uint8 view of the text's own memory when the text is a
    contiguous uint8 or int32 array (an np.memmap, a read-only one, included): no copy. Other
    integer types are converted to int32 first. One argument type for both dtypes, so numba
    compiles every kernel once (_char reads a character)."""
    a = np.asarray(data)
    if a.dtype != np.uint8 and a.dtype != np.int32:
        a = a.astype(np.int32)                        # native byte order
    a = np.ascontiguousarray(a.reshape(-1))
    if a.dtype == np.int32 and not np.little_endian:  # _char reads int32 little-endian
        a = a.astype("<i4")
    view = a.view(np.uint8)
    view.flags.writeable = False
    return view, a.itemsize


def lane_groups(lanes: int) -> int:
    """The number of lane groups the batched kernel splits `lanes` lanes into: each group has
    its own gradient buffers, and they are summed in group order, so the result depends on
    `lanes` alone, never on the number of threads that share the groups out.

    Groups of at least _GROUP_LANES = 8 lanes where there are enough (the register tiles are
    8 rows high on AVX-512), at least two groups (two cores busy from B = 2), a power of two
    (so 2, 4 or 8 threads share them evenly) and at most _MAX_GROUPS = 8: B < 32 gives 2
    groups, B < 64 gives 4, more gives 8. Measured on 2 cores (float32, m = 100 and 256)
    against one group per thread: as fast at B = 8 and 32 (within a few per cent), 4-15%
    faster at B = 128, where smaller groups' buffers fit the caches; 4 groups at B = 8 and
    16 at B = 128 were slower."""
    groups = 2
    while groups < _MAX_GROUPS and 2 * groups * _GROUP_LANES <= lanes:
        groups *= 2
    return max(1, min(groups, lanes))


def train_updates(params: Params, optimizer: str, opt_state: dict[str, np.ndarray],
                  opt_step: int, eta: float, clip: float, h: np.ndarray, data: np.ndarray,
                  starts: np.ndarray, lengths: np.ndarray, resets: np.ndarray,
                  first: int, last: int) -> np.ndarray:
    """steps.train_updates, compiled: updates first..last-1 in one call, in place."""
    _check_params(params)
    if optimizer not in _OPT_CODE:
        raise ValueError(f"unknown optimizer {optimizer!r}")
    if h.dtype != params.dtype or not h.flags.c_contiguous or h.ndim != 2:
        raise ValueError("h must be a C-contiguous (lanes, m) array of the params' dtype")
    s1, s2 = _state_arrays(optimizer, params, opt_state)
    losses = np.empty(max(last - first, 0))
    if last <= first:
        return losses
    resets = np.ascontiguousarray(resets)
    if resets.dtype == np.bool_:
        resets = resets.view(np.uint8)
    betas = np.array([optim.ADAM_BETA1, optim.ADAM_BETA2])
    if h.shape[0] > 1:
        _train_batch(params.U, params.W, params.V, params.b, params.c, *s1, *s2,
                     _OPT_CODE[optimizer], _constants(params.dtype, eta, clip), betas,
                     int(opt_step), h, *_text(data),
                     np.ascontiguousarray(starts, dtype=np.int64),
                     np.ascontiguousarray(lengths, dtype=np.int32),
                     resets.astype(np.uint8, copy=False), int(first), int(last), losses,
                     lane_groups(h.shape[0]))
        return losses
    _train(params.U, params.W, params.V, params.b, params.c, *s1, *s2,
           _OPT_CODE[optimizer], _constants(params.dtype, eta, clip), betas, int(opt_step), h,
           *_text(data),
           np.ascontiguousarray(starts, dtype=np.int64),
           np.ascontiguousarray(lengths, dtype=np.int32),
           resets.astype(np.uint8, copy=False), int(first), int(last), losses)
    return losses


def loss_and_gradients(params: Params, inputs: np.ndarray, targets: np.ndarray,
                       h_prev: np.ndarray) -> tuple[float, Params, np.ndarray]:
    """model.loss_and_gradients, compiled: (loss, grads, h_last) of one sequence."""
    _check_params(params)
    m, K = params.hidden_size, params.vocab_size
    dtype = params.dtype
    grads = Params.zeros_like(params)
    gUT = np.zeros((K, m), dtype)
    h = np.array(h_prev, dtype=dtype, copy=True)
    loss = _lossgrad(params.U, params.W, params.V, params.b, params.c,
                     np.ascontiguousarray(inputs, dtype=np.int32),
                     np.ascontiguousarray(targets, dtype=np.int32), h,
                     grads.b, grads.c, gUT, grads.W, grads.V, dtype.type(1))
    grads.U[:] = gUT.T
    return float(loss), grads, h


def _initial_states(params: Params, h0, segments: int) -> np.ndarray:
    """h0 of total_loss as a read-only (1 or S, m) array of the params' dtype: zeros for None,
    one row for an (m,) vector that every segment starts from."""
    m = params.hidden_size
    if h0 is None:
        rows = np.zeros((1, m), params.dtype)
    else:
        rows = np.asarray(h0)
        if rows.shape == (m,):
            rows = rows.reshape(1, m)
        elif rows.shape != (segments, m):
            raise ValueError(f"h0 must have shape ({segments}, {m}) or ({m},), not {rows.shape}")
        rows = np.ascontiguousarray(rows, dtype=params.dtype)
    view = rows.view()
    view.flags.writeable = False
    return view


def total_loss(params: Params, data: np.ndarray, segments: np.ndarray,
               h0: np.ndarray | None = None) -> tuple[float, int]:
    """steps.total_loss, compiled: (summed loss in nats, characters predicted), each segment
    starting from h = 0, or from h0[q] ((S, m)) or h0 ((m,), for every segment)."""
    _check_params(params)
    segments = np.ascontiguousarray(np.asarray(segments, dtype=np.int64).reshape(-1, 2))
    states = _initial_states(params, h0, len(segments))
    per_segment = np.zeros(len(segments))
    if len(segments):
        _total_loss(params.U, params.W, params.V, params.b, params.c, *_text(data), segments,
                    states, per_segment)
    lengths = segments[:, 1] - segments[:, 0]
    count = int(np.sum(np.where(lengths >= 2, lengths - 1, 0)))
    return float(per_segment.sum()), count


def advance(params: Params, h: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """steps.advance, compiled: the hidden state after feeding `inputs` from h."""
    _check_params(params)
    h = np.array(h, dtype=params.dtype, copy=True)
    _advance(params.U, params.W, params.b, h, *_text(inputs))
    return h


def sample_indices(params: Params, h: np.ndarray, x: int, uniforms: np.ndarray,
                   temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                   greedy: bool = False, stop_index: int = -1) -> np.ndarray:
    """steps.sample_indices, compiled: up to len(uniforms) characters, drawn by inverse CDF
    from the filtered softmax (steps.filtered_probabilities), stopping after stop_index.
    h is updated in place to the state the last character was drawn from."""
    _check_params(params)
    uniforms = np.ascontiguousarray(uniforms, dtype=np.float64)
    out = np.empty(len(uniforms), np.int64)
    direct = h.dtype == params.dtype and h.flags.c_contiguous and h.flags.writeable
    work = h if direct else np.array(h, dtype=params.dtype, copy=True)
    n = _sample(params.U, params.W, params.V, params.b, params.c, work, int(x), uniforms,
                params.dtype.type(temperature), int(top_k), float(top_p), bool(greedy),
                int(stop_index), out)
    if not direct:
        h[...] = work
    return out[:n].copy()


# --------------------------------------------------------------------------------------
# Compilation, once per machine.
# --------------------------------------------------------------------------------------

def _marker(dtype) -> Path:
    # numba's cache is keyed by the source file's path as well as its contents, so a second
    # installation of the same code compiles again: the marker names both.
    here = Path(__file__).resolve()
    key = hashlib.sha256(str(here).encode() + here.read_bytes()).hexdigest()[:16]
    folder = Path(numba.config.CACHE_DIR)
    return folder / f"charnn-kernels-{numba.__version__}-{key}-{np.dtype(dtype).name}.ok"


def _exercise(dtype) -> None:
    """Call every kernel once on tiny inputs of `dtype`, so numba compiles (or loads) it;
    with the text as int32 and as uint8, which share one compiled version (see _text)."""
    rng = np.random.default_rng(0)
    m, K = 5, 4
    params = Params.initial(m, K, 0.1, rng, dtype=dtype)
    data = rng.integers(0, K, 20).astype(np.int32)
    for text in (data, data.astype(np.uint8)):
        for optimizer in optim.OPTIMIZERS:
            for lanes in (1, 2):
                state = optim.initial_state(optimizer, params)
                h = np.zeros((lanes, m), dtype)
                starts = np.zeros((2, lanes), np.int64)
                lengths = np.full((2, lanes), 3, np.int32)
                resets = np.zeros((2, lanes), np.uint8)
                train_updates(params.copy(), optimizer, state, 0, 0.1, 5.0, h, text,
                              starts, lengths, resets, 0, 2)
        total_loss(params, text, np.array([[0, 10], [10, 20]]))
        advance(params, np.zeros(m, dtype), text[:3])
    loss_and_gradients(params, data[:3], data[1:4], np.zeros(m, dtype))
    u = np.full(3, 0.5)
    sample_indices(params, np.zeros(m, dtype), 0, u)
    sample_indices(params, np.zeros(m, dtype), 0, u, temperature=0.5, top_k=2, top_p=0.9)
    sample_indices(params, np.zeros(m, dtype), 0, u, greedy=True)


def ensure_compiled(announce=print, dtypes=(np.float64, np.float32)) -> None:
    """Compile every kernel for `dtypes` unless this machine has done so for this numba and
    this source; says so once through `announce`, since it takes a while."""
    missing = [d for d in dtypes if not _marker(d).exists()]
    if not missing:
        return
    announce("compiling kernels, once per machine (about a minute)")
    for dtype in missing:
        _exercise(dtype)
        marker = _marker(dtype)
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"numba {numba.__version__}\n")
        except OSError:
            pass                                      # a read-only cache only costs time
