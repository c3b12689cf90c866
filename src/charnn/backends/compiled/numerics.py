"""Shared numerics of the compiled kernels: the jit settings, exp and tanh without a call
per element, the softmax of rows, and numpy's pairwise sum.

Every kernel file compiles through _jit (nopython, cached on disk, the same fastmath flags),
so the settings are written once here.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

# Re-association lets sums vectorise; contraction allows fused multiply-adds. NaN and
# infinity keep their IEEE meaning, so a diverging run still shows NaN.
_FASTMATH = {"reassoc", "contract", "nsz"}
JIT_OPTIONS = {"cache": True, "fastmath": _FASTMATH, "error_model": "numpy"}
# exp and tanh keep their operations' order (no re-association): the same bits wherever they
# are inlined, the fastmath of the kernel that calls them notwithstanding.
_EXACT = {"cache": True, "fastmath": {"contract", "nsz"}, "error_model": "numpy"}
_EXACT_OVERLOAD = {"fastmath": {"contract", "nsz"}, "error_model": "numpy"}


def _jit(fn=None, *, parallel=False):
    deco = njit(**JIT_OPTIONS, parallel=parallel)
    return deco if fn is None else deco(fn)


# Array copies and sums written as loops: numba compiles a slice assignment or an in-place
# sum of two arrays with a shape check whose error message (both shapes, formatted) costs
# seconds of compile time in every kernel that holds one; a loop computes the same values.

@_jit
def _copy(dst, src):
    """dst[:] = src, for 1-D arrays of one length."""
    for i in range(dst.shape[0]):
        dst[i] = src[i]


@_jit
def _copy2(dst, src):
    """dst[:, :] = src, for 2-D arrays of one shape."""
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] = src[i, j]


@_jit
def _add(dst, src):
    """dst += src, for 1-D arrays of one length."""
    for i in range(dst.shape[0]):
        dst[i] += src[i]


@_jit
def _sum_rows(A, N, out):
    """out = A[0] + A[1] + ... + A[N-1] (N >= 1), added in that order; out is overwritten."""
    _copy(out, A[0])
    for q in range(1, N):
        _add(out, A[q])


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
    for i in range(n):
        v[i] = _exp64(v[i])


@njit(**_EXACT)
def _exp64(x0):
    c = _F64
    x = x0 if x0 > -746.0 else -746.0                 # exp(-746) is 0 in float64
    x = x if x < 710.0 else 710.0                   # 2^1024: inf
    t = np.floor(x * _LOG2E64 + 0.5)
    r = (x - t * _LN2_HI64) - t * _LN2_LO64
    p = c[0] + r * (c[1] + r * (c[2] + r * (c[3] + r * (c[4] + r * (c[5] + r * (c[6] + r * (
        c[7] + r * (c[8] + r * (c[9] + r * (c[10] + r * (c[11] + r * (c[12] + r * c[13]
                                                                              ))))))))))))
    low = t < -1000.0                               # 2^t below the normal range: two steps
    k = np.int64(64) if low else np.int64(0)
    y = p * _as_float((np.int64(t) + k + 1023) << 52)
    y = y * (5.421010862427522e-20 if low else 1.0)     # 2^-64
    y = y if x0 == x0 else x0
    return y if x0 != -np.inf else 0.0


def _vexp32(v, n):
    for i in range(n):
        v[i] = _exp32(v[i])


@njit(**_EXACT)
def _exp32(x0):
    c = _F32
    x = x0 if x0 > np.float32(-104.0) else np.float32(-104.0)   # exp(-104) is 0
    x = x if x < np.float32(89.0) else np.float32(89.0)    # 2^128: inf
    t = np.floor(x * _LOG2E32 + np.float32(0.5))
    r = (x - t * _LN2_HI32) - t * _LN2_LO32
    p = c[0] + r * (c[1] + r * (c[2] + r * (c[3] + r * (c[4] + r * (c[5] + r * (c[6] + r * (
        c[7])))))))
    low = t < np.float32(-100.0)                    # 2^t below the normal range: two steps
    k = np.int32(32) if low else np.int32(0)
    y = p * _as_float(np.int32((np.int32(t) + k + np.int32(127)) << np.int32(23)))
    y = y * (np.float32(2.3283064365386963e-10) if low else np.float32(1.0))   # 2^-32
    y = y if x0 == x0 else x0
    return y if x0 != -np.inf else np.float32(0.0)


@overload(_vexp, jit_options=_EXACT_OVERLOAD)
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
    for i in range(n):
        v[i] = _tanh64(v[i])


@njit(**_EXACT)
def _tanh64(x):
    c = _F64
    ax = abs(x)
    ax = 20.0 if ax > 20.0 else ax                  # tanh(20) is 1 in float64; NaN stays NaN
    y = ax * -0.03125                               # -2|x| / 64
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
    return t if x >= 0.0 else -t


def _vtanh32(v, n):
    for i in range(n):
        v[i] = _tanh32(v[i])


@njit(**_EXACT)
def _tanh32(x):
    c = _F32
    two = np.float32(2.0)
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
    return t if x >= np.float32(0.0) else -t


@overload(_vtanh, jit_options=_EXACT_OVERLOAD)
def _vtanh_typed(v, n):
    if v.dtype == types.float32:
        return _vtanh32
    return _vtanh64


# Where the sigmoid's exp(-a) would be subnormal the CPU takes a slow path (a hundred cycles
# an operation): a saturated gate (a > 87 in float32) then costs more than a product. Below
# exp(-80) (a normal number in either dtype) 1 / (1 + exp(-a)) rounds to exactly 1, so clamping
# -a at -80 changes no result and keeps every number normal.
_SIGMOID_FLOOR = -80.0


@njit(**_EXACT)
def _sigmoid32(v):
    x = -v
    x = np.float32(_SIGMOID_FLOOR) if x < np.float32(_SIGMOID_FLOOR) else x   # NaN stays
    return np.float32(1.0) / (np.float32(1.0) + _exp32(x))


@njit(**_EXACT)
def _sigmoid64(v):
    x = -v
    x = _SIGMOID_FLOOR if x < _SIGMOID_FLOOR else x                         # NaN stays
    return 1.0 / (1.0 + _exp64(x))


# One float at a time, for kernels that compute several gates in one pass over a row (stubs:
# numba compiles the dtype's version).

def _exp(x):
    """exp(x)."""
    raise NotImplementedError


def _tanh(x):
    """tanh(x)."""
    raise NotImplementedError


def _sigmoid(x):
    """1 / (1 + exp(-x)), exp's argument clamped at -80 (above)."""
    raise NotImplementedError


@overload(_exp, jit_options=_EXACT_OVERLOAD)
def _exp_typed(x):
    return (lambda x: _exp32(x)) if x == types.float32 else (lambda x: _exp64(x))


@overload(_tanh, jit_options=_EXACT_OVERLOAD)
def _tanh_typed(x):
    return (lambda x: _tanh32(x)) if x == types.float32 else (lambda x: _tanh64(x))


@overload(_sigmoid, jit_options=_EXACT_OVERLOAD)
def _sigmoid_typed(x):
    return (lambda x: _sigmoid32(x)) if x == types.float32 else (lambda x: _sigmoid64(x))


@_jit
def _vsigmoid(v, n):
    """v[:n] = sigmoid(v[:n]) in place."""
    for k in range(n):
        v[k] = _sigmoid(v[k])


@_jit
def _softmax_rows(O, L):
    """Rows 0..L-1 of O become softmax(O[t]) in place (max subtracted, so exp cannot overflow).

    A NaN in a row is passed over by the max but carried by the sum, so the whole row becomes
    NaN, as numpy's softmax makes it (there the max is NaN)."""
    for t in range(L):
        _softmax_row(O[t])


@_jit
def _softmax_row(o):
    """o (K,) becomes softmax(o) in place, as _softmax_rows does each row."""
    s = _shifted_exp(o)
    for k in range(o.size):
        o[k] = o[k] / s


@_jit
def _shifted_exp(o):
    """o (K,) becomes exp(o - max(o)) in place (so exp cannot overflow); returns their sum,
    softmax's denominator: -log p[y] = -log(o[y] / sum) afterwards."""
    K = o.size
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
    return s


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
def _draw(o, e, p, cdf, sorted_p, temperature, top_k, top_p, greedy, u):
    """The next character from the logits o (K,): np.argmax(o) when greedy, else the inverse
    CDF at u of softmax(o / T) restricted to top_k and top_p, as
    reference.filtered_probabilities computes it operation by operation (no fastmath).
    e (K,) in the logits' dtype, p, cdf and sorted_p (K,) float64: scratch."""
    K = o.size
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
        x = min(int(np.searchsorted(cdf, u * cdf[K - 1], side="right")), K - 1)
    return x


# Views of the flat vectors and scratch blocks the stacked kernels share out.

@_jit
def _mat(flat, lo, rows, cols):
    """The (rows, cols) matrix stored in flat[lo:lo + rows cols], row after row."""
    return flat[lo:lo + rows * cols].reshape((rows, cols))


@_jit
def _blocks(A, first, width, m):
    """Blocks first..first+width-1 of a contiguous scratch A (T, n, w m) that a cell lays out
    as w arrays (T, n, m) one after another: (T, n, width m), contiguous, so that one product
    covers all T steps of the lanes."""
    T, n = A.shape[0], A.shape[1]
    size = T * n * m
    return A.reshape(-1)[first * size:(first + width) * size].reshape((T, n, width * m))
