"""Clipping and the update rules of optim.py (AdaGrad, RMSProp, Adam), fused per element,
for the compiled kernels of every network: one pass over a parameter reads its gradient,
clips it, updates the optimiser state and steps the weights.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from ... import optim
from .numerics import _FASTMATH, _add, _copy, _jit

_OPT_CODE = {"adagrad": 0, "rmsprop": 1, "adam": 2}

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
        _copy(row, gs[0, i])
        for g in range(1, G):
            _add(row, gs[g, i])
        if active == 0:                               # nothing to learn from: zero gradient
            row[:] = 0
        elif active > 1:
            for j in range(row.size):
                row[j] = row[j] / div
        _update_dense(theta[i], row, s1[i], s2[i] if opt == 2 else s2[0], opt, consts, bc1,
                      bc2)
