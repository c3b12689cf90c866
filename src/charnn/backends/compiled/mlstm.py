"""The multiplicative LSTM cell's compiled kernels (cells.py says what a cell provides): one
time step of one layer for a group of lanes, forward and backward side by side. The math is
networks/mlstm.py's:

    ax = W_ih x + b_ih                      (5m,): the input's parts m, i, f, g, o
    m_t = ax_m * (W_mh h_{t-1})             a = ax_{ifgo} + W_hm m_t      (4m,)
    i, f, o = sigmoid(a_i, a_f, a_o)    g = tanh(a_g)
    c_t = f * c_{t-1} + i * g            h_t = o * tanh(c_t)

Two products a step, one after the other: MH = H_{t-1} W_mh^T (lanes x m), then
MT W_hm^T (lanes x 4m). The stash holds, as blocks each contiguous over the whole window
(numerics._blocks), MH, MT, the gates i, f, g, o, tanh(c_t) and ax_m; the backward carries dL/da
(4m) and dL/dMH (m), so that dW_hm = DA^T MT and dW_mh = DMH^T H_prev are one product each
over the window.
"""

from __future__ import annotations

from .cells import Sizes
from .lstm import _gates_backward, _gates_forward
from .numerics import _blocks, _copy, _jit, _mat
from .products import _gemm, _gemm_wt


class MLSTMCell(Sizes):
    """The mLSTM's tag: the stack compiled for it calls the kernels below."""


CELL = MLSTMCell(inputs=5, states=2, stash=8, product=4, carried=5)
OWN = ("W_mh", "W_hm")
TRANSPOSED = ("W_mh", "W_hm")
# The stash's blocks (numerics._blocks): MH, MT, the gates (4 blocks), tanh(c_t), ax_m.
_MH, _MT, _GATES, _TC, _MX = 0, 1, 2, 6, 7
# The carried blocks: dL/da of the gates (4), dL/dMH.
_DA, _DMH = 0, 4


@_jit
def forward_step(cell, theta, off, WT, offT, AXt, ST, ti, to, Z, AH, Ls, t):
    n, m = ST.shape[2], ST.shape[3]
    Hp, Cp, Hn, Cn = ST[0, ti], ST[1, ti], ST[0, to], ST[1, to]
    MH = _blocks(Z, _MH, 1, m)[t]
    MT = _blocks(Z, _MT, 1, m)[t]
    Zg = _blocks(Z, _GATES, 4, m)[t]
    TC = _blocks(Z, _TC, 1, m)[t]
    MX = _blocks(Z, _MX, 1, m)[t]
    _gemm_wt(Hp, WT, offT[1], offT[-1], MH)                           # H_{t-1} W_mh^T
    for r in range(n):
        mt = MT[r]
        mx = MX[r]
        if t >= Ls[r]:                                # ended: m_t = 0 keeps its products finite
            for j in range(m):
                mt[j] = 0
                mx[j] = 0
            continue
        ax = AXt[r]
        mh = MH[r]
        for j in range(m):
            mx[j] = ax[j]
            mt[j] = ax[j] * mh[j]
    _gemm_wt(MT, WT, offT[2], offT[-1], AH)                           # M_t W_hm^T
    for r in range(n):
        if t >= Ls[r]:
            _copy(Hn[r], Hp[r])
            _copy(Cn[r], Cp[r])
            continue
        z = Zg[r]
        ax = AXt[r]
        ah = AH[r]
        for k in range(4 * m):
            z[k] = ax[m + k] + ah[k]
        _gates_forward(z, Cp[r], Cn[r], Hn[r], TC[r], m)              # the LSTM's gates


@_jit
def backward_step(cell, theta, off, WT, offT, DHt, dS, Z, ST, t, DAXt, DC, Ls):
    n, m = DHt.shape
    dh, dc, Cp = dS[0], dS[1], ST[1, t]
    MH = _blocks(Z, _MH, 1, m)[t]
    Zg = _blocks(Z, _GATES, 4, m)[t]
    TC = _blocks(Z, _TC, 1, m)[t]
    MX = _blocks(Z, _MX, 1, m)[t]
    DA = _blocks(DC, _DA, 4, m)[t]
    DMH = _blocks(DC, _DMH, 1, m)[t]
    one = Cp[0, 0] - Cp[0, 0] + 1
    for r in range(n):
        da = DA[r]
        if t >= Ls[r]:
            da[:] = 0
            dc[r] = 0
            continue
        _gates_backward(Zg[r], TC[r], Cp[r], DHt[r], dh[r], dc[r], da, m, one)
    _gemm(DA, _mat(theta, off[3], 4 * m, m), DMH, False, False)       # dL/dm_t = DA W_hm
    for r in range(n):
        dax = DAXt[r]
        dmh = DMH[r]
        if t >= Ls[r]:
            dax[:] = 0
            dmh[:] = 0
            continue
        da = DA[r]
        mh = MH[r]
        mx = MX[r]
        for j in range(m):
            dmt = dmh[j]
            dax[j] = dmt * mh[j]                      # m_t = ax_m * mh
            dmh[j] = dmt * mx[j]
        for k in range(4 * m):
            dax[m + k] = da[k]
    if t > 0:                                         # dL/dh_{t-1} = DMH W_mh
        _gemm(DMH, _mat(theta, off[2], m, m), dh, False, False)


@_jit
def backward_window(cell, theta, off, grad, ST, Z, DAX, DC, L):
    n, m = ST.shape[2], ST.shape[3]
    N = L * n
    DA = _blocks(DC, _DA, 4, m)[:L].reshape((N, 4 * m))
    MT = _blocks(Z, _MT, 1, m)[:L].reshape((N, m))
    DMH = _blocks(DC, _DMH, 1, m)[:L].reshape((N, m))
    _gemm(DA, MT, _mat(grad, off[3], 4 * m, m), True, False)          # dW_hm = DA^T M
    _gemm(DMH, ST[0, :L].reshape((N, m)), _mat(grad, off[2], m, m), True, False)
