"""The vanilla RNN cell's compiled kernels for the stack (cells.py says what a cell provides):
one time step of one layer for a group of lanes, forward and backward side by side. The math
is networks/rnn.py's:

    h_t = tanh(W_hh h_{t-1} + W_ih x_t + b_ih)

Rows are lanes. The new state is all the backward needs (1 - h_t^2), so nothing is stashed and
nothing is carried: dL/da is DAX. One layer runs on rnn_one_layer.py's own kernels instead
(compiled/__init__.py registers both).
"""

from __future__ import annotations

from .cells import Sizes
from .numerics import _copy, _jit, _mat, _vtanh
from .products import _gemm, _gemm_wt


class RNNCell(Sizes):
    """The vanilla RNN's tag: the stack compiled for it calls the kernels below."""


CELL = RNNCell(inputs=1, states=1, stash=1, product=1, carried=0)
OWN = ("W_hh",)
TRANSPOSED = ("W_hh",)


@_jit
def forward_step(cell, theta, off, WT, offT, AXt, ST, ti, to, Z, AH, Ls, t):
    n, m = ST.shape[2], ST.shape[3]
    _gemm_wt(ST[0, ti], WT, offT[1], offT[-1], AH)                    # H_{t-1} W_hh^T
    Hp, Hn = ST[0, ti], ST[0, to]
    for r in range(n):
        hn = Hn[r]
        if t >= Ls[r]:
            _copy(hn, Hp[r])
            continue
        ah = AH[r]
        ax = AXt[r]
        for j in range(m):
            hn[j] = ah[j] + ax[j]
        _vtanh(hn, m)


@_jit
def backward_step(cell, theta, off, WT, offT, DHt, dS, Z, ST, t, DAXt, DC, Ls):
    n, m = DHt.shape
    dh, Hn = dS[0], ST[0, t + 1]
    one = Hn[0, 0] - Hn[0, 0] + 1
    for r in range(n):
        da = DAXt[r]
        if t >= Ls[r]:
            da[:] = 0
            continue
        h = Hn[r]
        dhr = dh[r]
        dht = DHt[r]
        for j in range(m):
            da[j] = (dht[j] + dhr[j]) * (one - h[j] * h[j])    # through the tanh
    if t > 0:                                         # dL/dh_{t-1} = DA_t W_hh
        _gemm(DAXt, _mat(theta, off[2], m, m), dh, False, False)


@_jit
def backward_window(cell, theta, off, grad, ST, Z, DAX, DC, L):
    n, m = ST.shape[2], ST.shape[3]
    N = L * n
    _gemm(DAX[:L].reshape((N, m)), ST[0, :L].reshape((N, m)), _mat(grad, off[2], m, m), True,
          False)                                      # dW_hh = DA^T H_prev
