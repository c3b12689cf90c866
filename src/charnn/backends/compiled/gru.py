"""The GRU cell's compiled kernels (cells.py says what a cell provides): one time step of one
layer for a group of lanes, forward and backward side by side. The math is networks/gru.py's
(PyTorch's gates r, z, n):

    ax = W_ih x + b_ih        ah = W_hh h_{t-1} + b_hh          (3m,) each
    r = sigmoid(ax_r + ah_r)    z = sigmoid(ax_z + ah_z)
    n = tanh(ax_n + r * ah_n)   h_t = (1 - z) * n + z * h_{t-1}

Rows are lanes. Each step keeps, per lane, r, z, n and ah_n = W_hn h + b_hn (a row of 4m);
the backward carries dL/dah (3m per lane), which differs from dL/dax in its n block.
"""

from __future__ import annotations

from .cells import Sizes
from .numerics import _copy, _jit, _mat, _sum_rows, _vsigmoid, _vtanh
from .products import _gemm, _gemm_wt


class GRUCell(Sizes):
    """The GRU's tag: the stack compiled for it calls the kernels below."""


CELL = GRUCell(inputs=3, states=1, stash=4, product=3, carried=3)
OWN = ("W_hh", "b_hh")
TRANSPOSED = ("W_hh",)


# The gates of one lane, one step, forward and back, each a function of its own: written
# inline in the loop over the lanes, LLVM vectorised the backward's loop for none of them,
# and it took three times as long (8 lanes of 256: 7.8 us against 2.9 on the Intel Xeon).

@_jit
def _gates_forward(z, ax, ah, bhh, hp, ho, m, one):
    """From the input part ax (3m), ah = W_hh h_{t-1} (3m, without b_hh) and h_{t-1} (hp):
    r, z, n and ah_n + b_hn into the stash row z (4m), h_t into ho."""
    for k in range(2 * m):                            # r and z
        z[k] = ax[k] + ah[k] + bhh[k]
    _vsigmoid(z, 2 * m)
    zn = z[2 * m:3 * m]
    hn = z[3 * m:]
    for j in range(m):
        hn[j] = ah[2 * m + j] + bhh[2 * m + j]
        zn[j] = ax[2 * m + j] + z[j] * hn[j]
    _vtanh(zn, m)
    for j in range(m):
        zz = z[m + j]
        ho[j] = (one - zz) * zn[j] + zz * hp[j]


@_jit
def _gates_backward(z, hp, dht, dh, dax, dah, m, one):
    """Back through _gates_forward: from the stash row z, h_{t-1} (hp) and dL/dh_t from above
    (dht) and through t+1 (dh): dL/dax into dax, dL/dah into dah (3m each), and dh made the
    part of dL/dh_{t-1} that goes through h_t = ... + z h_{t-1}."""
    for j in range(m):
        rr = z[j]
        zz = z[m + j]
        nn = z[2 * m + j]
        hn = z[3 * m + j]
        d = dht[j] + dh[j]                            # dL/dh_t: from above and from t+1
        dan = d * (one - zz) * (one - nn * nn)
        dar = dan * hn * rr * (one - rr)
        daz = d * (hp[j] - nn) * zz * (one - zz)
        dax[j] = dar
        dax[m + j] = daz
        dax[2 * m + j] = dan
        dah[j] = dar
        dah[m + j] = daz
        dah[2 * m + j] = dan * rr
        dh[j] = d * zz                                # through h_t = ... + z h_{t-1}


@_jit
def forward_step(cell, theta, off, WT, offT, AXt, ST, ti, to, Z, AH, Ls, t):
    n, m = ST.shape[2], ST.shape[3]
    _gemm_wt(ST[0, ti], WT, offT[1], offT[-1], AH)                    # H_{t-1} W_hh^T
    bhh = theta[off[3]:off[3] + 3 * m]
    Hp, Hn, Zt = ST[0, ti], ST[0, to], Z[t]
    one = bhh[0] - bhh[0] + 1
    for r in range(n):
        if t >= Ls[r]:
            _copy(Hn[r], Hp[r])
            continue
        _gates_forward(Zt[r], AXt[r], AH[r], bhh, Hp[r], Hn[r], m, one)


@_jit
def backward_step(cell, theta, off, WT, offT, DHt, dS, Z, ST, t, DAXt, DC, Ls):
    n, m = DHt.shape
    dh, Hp, Zt, DAHt = dS[0], ST[0, t], Z[t], DC[t]
    one = Hp[0, 0] - Hp[0, 0] + 1
    for r in range(n):
        dax = DAXt[r]
        dah = DAHt[r]
        dhr = dh[r]
        if t >= Ls[r]:
            dax[:] = 0
            dah[:] = 0
            dhr[:] = 0
            continue
        _gates_backward(Zt[r], Hp[r], DHt[r], dhr, dax, dah, m, one)
    if t > 0:                                         # dL/dh_{t-1} += DAH_t W_hh
        _gemm(DAHt, _mat(theta, off[2], 3 * m, m), dh, False, True)


@_jit
def backward_window(cell, theta, off, grad, ST, Z, DAX, DC, L):
    n, m = ST.shape[2], ST.shape[3]
    N = L * n
    DAH = DC[:L].reshape((N, 3 * m))
    _gemm(DAH, ST[0, :L].reshape((N, m)), _mat(grad, off[2], 3 * m, m), True, False)
    _sum_rows(DAH, N, grad[off[3]:off[3] + 3 * m])  # dW_hh = DAH^T H_prev, db_hh = sum DAH
