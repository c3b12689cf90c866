"""The LSTM cell's compiled kernels: one time step of one layer for a group of lanes, forward
and backward side by side. The math is networks/lstm.py's (PyTorch's gates i, f, g, o):

    a = W_ih x + b_ih + W_hh h_{t-1} + b_hh          (4m,): the four gates' inputs
    i, f, o = sigmoid(a_i, a_f, a_o)    g = tanh(a_g)
    c_t = f * c_{t-1} + i * g            h_t = o * tanh(c_t)

stack.py runs these over layers and time; the products (the input part W_ih x + b_ih of every
step at once, the recurrent part H_{t-1} W_hh^T of all lanes per step) are made there. Rows
are lanes; a lane whose window has ended (t >= Ls[r]) carries its state and gets zero
gradients.
"""

from __future__ import annotations

from .numerics import _copy, _jit, _vexp, _vtanh

GATES = 4               # i, f, g, o
STATE_VECTORS = 2       # h and the cell c


@_jit
def _cell_forward(AXt, AH, bhh, Hp, Cp, Hn, Cn, Zt, TCt, Ls, t):
    """Step t of one layer for n lanes: AXt (n, 4m) = W_ih x_t + b_ih, AH (n, 4m) = H_{t-1}
    W_hh^T; Hp, Cp (n, m) the state before, Hn, Cn after. Keeps the gates i, f, g, o in
    Zt (n, 4m) and tanh(c_t) in TCt (n, m) for the backward."""
    n, m = Hp.shape
    one = bhh[0] - bhh[0] + 1
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
        for k in range(2 * m):                        # sigmoid(a) = 1 / (1 + exp(-a))
            z[k] = -z[k]
        for k in range(3 * m, 4 * m):
            z[k] = -z[k]
        _vexp(z, 2 * m)
        zo = z[3 * m:]
        _vexp(zo, m)
        for k in range(2 * m):
            z[k] = one / (one + z[k])
        for k in range(m):
            zo[k] = one / (one + zo[k])
        zg = z[2 * m:3 * m]
        _vtanh(zg, m)
        hn = Hn[r]
        cn = Cn[r]
        cp = Cp[r]
        tc = TCt[r]
        for j in range(m):
            cn[j] = z[m + j] * cp[j] + z[j] * zg[j]
            tc[j] = cn[j]
        _vtanh(tc, m)
        for j in range(m):
            hn[j] = zo[j] * tc[j]


@_jit
def _cell_backward(DHt, dh, dc, Zt, TCt, Cp, Hp, DAXt, DAHt, Ls, t):
    """Back through step t of one layer: dh (n, m) holds dL/dh_t through h_{t+1} and DHt
    dL/dh_t from above; dc (n, m) dL/dc_t through c_{t+1}. Writes dL/da into DAXt (n, 4m)
    (DAHt is the same array: the input and the recurrent part share a), dc becomes
    dL/dc_{t-1}; dL/dh_{t-1} = DA W_hh is stack.py's product (it overwrites dh)."""
    n, m = dh.shape
    one = Cp[0, 0] - Cp[0, 0] + 1
    for r in range(n):
        da = DAXt[r]
        if t >= Ls[r]:
            da[:] = 0
            dc[r] = 0
            continue
        z = Zt[r]
        tc = TCt[r]
        cp = Cp[r]
        dhr = dh[r]
        dcr = dc[r]
        dht = DHt[r]
        for j in range(m):
            i = z[j]
            f = z[m + j]
            g = z[2 * m + j]
            o = z[3 * m + j]
            d = dht[j] + dhr[j]                       # dL/dh_t: from above and from t+1
            dcj = dcr[j] + d * o * (one - tc[j] * tc[j])
            da[j] = dcj * g * i * (one - i)
            da[m + j] = dcj * cp[j] * f * (one - f)
            da[2 * m + j] = dcj * i * (one - g * g)
            da[3 * m + j] = d * tc[j] * o * (one - o)
            dcr[j] = dcj * f
