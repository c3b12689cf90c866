"""The LSTM cell's compiled kernels (cells.py says what a cell provides): one time step of one
layer for a group of lanes, forward and backward side by side. The math is networks/lstm.py's
(PyTorch's gates i, f, g, o):

    a = W_ih x + b_ih + W_hh h_{t-1} + b_hh          (4m,): the four gates' inputs
    i, f, o = sigmoid(a_i, a_f, a_o)    g = tanh(a_g)
    c_t = f * c_{t-1} + i * g            h_t = o * tanh(c_t)

Rows are lanes. Each step keeps, per lane, the gates i, f, g, o and tanh(c_t) in one row of 5m
of the stash. The input and the recurrent part share a, so dL/da is DAX and the cell carries
nothing else to backward_window.
"""

from __future__ import annotations

from .cells import Sizes
from .numerics import _copy, _jit, _mat, _sum_rows, _vsigmoid, _vtanh
from .products import _gemm, _gemm_wt


class LSTMCell(Sizes):
    """The LSTM's tag: the stack compiled for it calls the kernels below."""


CELL = LSTMCell(inputs=4, states=2, stash=5, product=4, carried=0)
OWN = ("W_hh", "b_hh")
TRANSPOSED = ("W_hh",)


# The gates of one lane, one step, forward and back: the LSTM's, and the mLSTM's (whose gates
# read m_t where the LSTM's read h_{t-1}).

@_jit
def _gates_forward(z, cp, cn, hn, tc, m):
    """From the gates' inputs z[:4m] (i, f, g, o) and c_{t-1} (cp): the gates, in place in z,
    c_t (cn), tanh(c_t) (tc) and h_t (hn)."""
    _vsigmoid(z, 2 * m)                               # i, f
    zo = z[3 * m:]
    _vsigmoid(zo, m)                                  # o
    zg = z[2 * m:3 * m]
    _vtanh(zg, m)
    for j in range(m):
        cn[j] = z[m + j] * cp[j] + z[j] * zg[j]
        tc[j] = cn[j]
    _vtanh(tc, m)
    for j in range(m):
        hn[j] = zo[j] * tc[j]


@_jit
def _gates_backward(z, tc, cp, dht, dh, dc, da, m, one):
    """Back through _gates_forward: from dL/dh_t from above (dht) and through t+1 (dh), and
    dL/dc_t through c_{t+1} (dc), write dL/d(the gates' inputs) into da (4m) and make dc
    dL/dc_{t-1}."""
    for j in range(m):
        i = z[j]
        f = z[m + j]
        g = z[2 * m + j]
        o = z[3 * m + j]
        tcj = tc[j]
        d = dht[j] + dh[j]                            # dL/dh_t: from above and from t+1
        dcj = dc[j] + d * o * (one - tcj * tcj)
        da[j] = dcj * g * i * (one - i)
        da[m + j] = dcj * cp[j] * f * (one - f)
        da[2 * m + j] = dcj * i * (one - g * g)
        da[3 * m + j] = d * tcj * o * (one - o)
        dc[j] = dcj * f


@_jit
def forward_step(cell, theta, off, WT, offT, AXt, ST, ti, to, Z, AH, Ls, t):
    n, m = ST.shape[2], ST.shape[3]
    _gemm_wt(ST[0, ti], WT, offT[1], offT[-1], AH)                    # H_{t-1} W_hh^T
    bhh = theta[off[3]:off[3] + 4 * m]
    Hp, Cp, Hn, Cn = ST[0, ti], ST[1, ti], ST[0, to], ST[1, to]
    Zt = Z[t]
    for r in range(n):
        if t >= Ls[r]:
            _copy(Hn[r], Hp[r])
            _copy(Cn[r], Cp[r])
            continue
        z = Zt[r]
        ax = AXt[r]
        ah = AH[r]
        for k in range(4 * m):
            z[k] = ax[k] + ah[k] + bhh[k]
        _gates_forward(z, Cp[r], Cn[r], Hn[r], z[4 * m:], m)


@_jit
def backward_step(cell, theta, off, WT, offT, DHt, dS, Z, ST, t, DAXt, DC, Ls):
    n, m = DHt.shape
    dh, dc, Cp, Zt = dS[0], dS[1], ST[1, t], Z[t]
    one = Cp[0, 0] - Cp[0, 0] + 1
    for r in range(n):
        da = DAXt[r]
        if t >= Ls[r]:
            da[:] = 0
            dc[r] = 0
            continue
        z = Zt[r]
        _gates_backward(z, z[4 * m:], Cp[r], DHt[r], dh[r], dc[r], da, m, one)
    if t > 0:                                         # dL/dh_{t-1} = DA_t W_hh
        _gemm(DAXt, _mat(theta, off[2], 4 * m, m), dh, False, False)


@_jit
def backward_window(cell, theta, off, grad, ST, Z, DAX, DC, L):
    n, m = ST.shape[2], ST.shape[3]
    N = L * n
    DA = DAX[:L].reshape((N, 4 * m))
    _gemm(DA, ST[0, :L].reshape((N, m)), _mat(grad, off[2], 4 * m, m), True, False)
    _sum_rows(DA, N, grad[off[3]:off[3] + 4 * m])  # dW_hh = DA^T H_prev, db_hh = sum DA
