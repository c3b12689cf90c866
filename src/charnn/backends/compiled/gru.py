"""The GRU cell's compiled kernels: one time step of one layer for a group of lanes, forward
and backward side by side. The math is networks/gru.py's (PyTorch's gates r, z, n):

    ax = W_ih x + b_ih        ah = W_hh h_{t-1} + b_hh          (3m,) each
    r = sigmoid(ax_r + ah_r)    z = sigmoid(ax_z + ah_z)
    n = tanh(ax_n + r * ah_n)   h_t = (1 - z) * n + z * h_{t-1}

stack.py runs these over layers and time and makes the products; rows are lanes, and a lane
whose window has ended (t >= Ls[r]) carries its state and gets zero gradients. The same
signatures as lstm.py's, so stack.py calls either (the cell arguments Cp, Cn, TCt are the
LSTM's and unused here).
"""

from __future__ import annotations

from .numerics import _copy, _jit, _vexp, _vtanh

GATES = 3               # r, z, n
STATE_VECTORS = 1       # h


@_jit
def _cell_forward(AXt, AH, bhh, Hp, Cp, Hn, Cn, Zt, TCt, Ls, t):
    """Step t of one layer for n lanes: AXt (n, 3m) = W_ih x_t + b_ih, AH (n, 3m) = H_{t-1}
    W_hh^T; Hp (n, m) the state before, Hn after. Keeps r, z, n and ah_n = W_hn h + b_hn in
    Zt (n, 4m) for the backward."""
    n, m = Hp.shape
    one = bhh[0] - bhh[0] + 1
    for r in range(n):
        if t >= Ls[r]:
            _copy(Hn[r], Hp[r])
            continue
        z = Zt[r]
        ax = AXt[r]
        ah = AH[r]
        for k in range(2 * m):                        # -(ax + ah) of r and z, for the sigmoid
            z[k] = -(ax[k] + ah[k] + bhh[k])
        _vexp(z, 2 * m)
        for k in range(2 * m):
            z[k] = one / (one + z[k])
        zn = z[2 * m:3 * m]
        hn = z[3 * m:]
        for j in range(m):
            hn[j] = ah[2 * m + j] + bhh[2 * m + j]
            zn[j] = ax[2 * m + j] + z[j] * hn[j]
        _vtanh(zn, m)
        hp = Hp[r]
        ho = Hn[r]
        for j in range(m):
            zz = z[m + j]
            ho[j] = (one - zz) * zn[j] + zz * hp[j]


@_jit
def _cell_backward(DHt, dh, dc, Zt, TCt, Cp, Hp, DAXt, DAHt, Ls, t):
    """Back through step t of one layer: dh (n, m) holds dL/dh_t through h_{t+1} and DHt
    dL/dh_t from above. Writes dL/dax into DAXt and dL/dah into DAHt (n, 3m) and leaves in dh
    the part of dL/dh_{t-1} through h_t = ... + z h_{t-1}; stack.py adds DAH W_hh."""
    n, m = dh.shape
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
        z = Zt[r]
        hp = Hp[r]
        dht = DHt[r]
        for j in range(m):
            rr = z[j]
            zz = z[m + j]
            nn = z[2 * m + j]
            hn = z[3 * m + j]
            d = dht[j] + dhr[j]                       # dL/dh_t: from above and from t+1
            dan = d * (one - zz) * (one - nn * nn)
            dar = dan * hn * rr * (one - rr)
            daz = d * (hp[j] - nn) * zz * (one - zz)
            dax[j] = dar
            dax[m + j] = daz
            dax[2 * m + j] = dan
            dah[j] = dar
            dah[m + j] = daz
            dah[2 * m + j] = dan * rr
            dhr[j] = d * zz
