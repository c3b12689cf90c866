"""A stacked multiplicative LSTM (mLSTM) character model, written in numpy as the readable
reference.

The mLSTM (Krause, Lu, Murray and Renals, "Multiplicative LSTM for sequence modelling", 2016)
gives the LSTM a recurrent transition that depends on the input: the gates read an
intermediate state m_t, the elementwise product of the input's and the previous state's
projections, so each character chooses its own hidden-to-hidden matrix. Each layer
l = 0..L-1, with x_t its input and h_{t-1}, c_{t-1} its own state:

    m_t = (W_mx x_t + b_m) * (W_mh h_{t-1})                      intermediate state
    i_t = sigmoid(W_ix x_t + b_i + W_im m_t)                     input gate
    f_t = sigmoid(W_fx x_t + b_f + W_fm m_t)                     forget gate
    g_t = tanh   (W_gx x_t + b_g + W_gm m_t)                     candidate cell
    o_t = sigmoid(W_ox x_t + b_o + W_om m_t)                     output gate
    c_t = f_t * c_{t-1} + i_t * g_t                              cell
    h_t = o_t * tanh(c_t)

(* is the elementwise product.) The input's five projections are stacked m, i, f, g, o:
W_ih{l} = [W_mx; W_ix; W_fx; W_gx; W_ox] (5m, K for layer 0, else m) and b_ih{l} (5m,); the
state's projection is W_mh{l} (m, m), and the gates' projections of m_t are stacked i, f, g, o
in W_hm{l} (4m, m), PyTorch's LSTM order. The paper's equations have no biases; the gates'
biases here are the LSTM's (the forget gate's starts at 1), and b_m lets a character scale the
product where its column of W_mx is small. With b_m = 0 and the bias-free paper's weights, this
is the paper's cell.

Layer 0's input x_t is the character, one-hot, so W_ih0 x_t is the column W_ih0[:, x_t].
Layer l > 0 reads layer l-1's h_t (times a dropout mask when training with dropout); the top
layer's h_t feeds the output p_t = softmax(V h_t + c), as for every network. A state is an
array (layers, 2, m): state[l, 0] = h of layer l, state[l, 1] = its cell c.

Every function here has the same signature as its namesake in networks/lstm.py.
"""

from __future__ import annotations

import numpy as np

from . import stack
from .dropout import dropout_masks
from .stack import sigmoid

STATE_VECTORS = 2       # h and the cell c
GATES = 5               # input projections: m, i, f, g, o
# What charnn.networks.spec asks of every network module (see lstm.py).
GATED = True
TITLE = "multiplicative LSTM"
ABBREVIATION = "mLSTM"


def param_shapes(K: int, m: int, layers: int) -> dict[str, tuple[int, ...]]:
    """Per layer W_ih (5m, K | m), W_mh (m, m), W_hm (4m, m), b_ih (5m,); then V, c."""
    shapes = {}
    for l in range(layers):
        shapes[f"W_ih{l}"] = (GATES * m, K if l == 0 else m)
        shapes[f"W_mh{l}"] = (m, m)
        shapes[f"W_hm{l}"] = (4 * m, m)
        shapes[f"b_ih{l}"] = (GATES * m,)
    shapes["V"] = (K, m)
    shapes["c"] = (K,)
    return shapes


def initial_params(K: int, m: int, layers: int, sigma: float, rng: np.random.Generator,
                   dtype=np.float64) -> dict[str, np.ndarray]:
    """Weights ~ N(0, sigma^2), drawn from `rng` in param_shapes' order; biases zero, except
    the forget gate's, 1, as the LSTM's (networks/lstm.py says why)."""
    params = stack.initial_params(param_shapes(K, m, layers), sigma, rng, dtype)
    for l in range(layers):
        params[f"b_ih{l}"][2 * m:3 * m] = 1.0            # the forget gate: block 2 of m, i, f, g, o
    return params


def zero_state(m: int, layers: int, dtype=np.float64) -> np.ndarray:
    """The state before any character: h = c = 0 in every layer, (layers, 2, m)."""
    return np.zeros((layers, STATE_VECTORS, m), dtype)


# One cell, one time step: the forward and, next to it, its backward (networks/stack.py runs
# them over layers and time).

def _cell_forward(params, l: int, x, state_l: np.ndarray):
    """(h_t, c_t) of layer l as a (2, m) state, and what the backward needs."""
    W_ih, W_mh, W_hm, b_ih = (params[f"{w}{l}"] for w in ("W_ih", "W_mh", "W_hm", "b_ih"))
    h_prev, c_prev = state_l
    m = h_prev.shape[0]
    ax = (W_ih[:, x] if np.ndim(x) == 0 else W_ih @ x) + b_ih   # (5m,): the input's part
    mh = W_mh @ h_prev                                      # (m,)
    mt = ax[:m] * mh                                        # (m,): m_t
    a = ax[m:] + W_hm @ mt                                  # (4m,): the four gates' inputs
    i = sigmoid(a[:m])
    f = sigmoid(a[m:2 * m])
    g = np.tanh(a[2 * m:3 * m])
    o = sigmoid(a[3 * m:])
    c = f * c_prev + i * g
    tanh_c = np.tanh(c)
    h = o * tanh_c
    return np.stack([h, c]), (x, h_prev, c_prev, ax[:m], mh, mt, i, f, g, o, tanh_c)


def _cell_backward(params, grads, l: int, cell, dstate: np.ndarray):
    """Back through one _cell_forward: from dL/dh_t and dL/dc_t through c_{t+1} (dstate), add
    the layer's weight and bias gradients into `grads`; return dL/dx (None for the character
    of layer 0) and (dL/dh_{t-1}, dL/dc_{t-1})."""
    W_ih, W_mh, W_hm = params[f"W_ih{l}"], params[f"W_mh{l}"], params[f"W_hm{l}"]
    x, h_prev, c_prev, mx, mh, mt, i, f, g, o, tanh_c = cell
    dh, dc_next = dstate
    do = dh * tanh_c                                        # h = o * tanh(c)
    dc = dc_next + dh * o * (1 - tanh_c ** 2)
    da = np.concatenate([dc * g * i * (1 - i),              # c = f * c_prev + i * g, through
                         dc * c_prev * f * (1 - f),         # the sigmoids and the tanh
                         dc * i * (1 - g ** 2),
                         do * o * (1 - o)])                 # (4m,): dL/da
    dc_prev = dc * f
    grads[f"W_hm{l}"] += np.outer(da, mt)                   # a = ax[m:] + W_hm m_t
    dmt = W_hm.T @ da                                       # (m,)
    dmh = dmt * mx                                          # m_t = mx * mh
    dax = np.concatenate([dmt * mh, da])                    # (5m,): dL/dax
    grads[f"W_mh{l}"] += np.outer(dmh, h_prev)              # mh = W_mh h_prev
    dh_prev = W_mh.T @ dmh
    grads[f"b_ih{l}"] += dax                                # ax = W_ih x + b_ih
    if np.ndim(x) == 0:
        grads[f"W_ih{l}"][:, x] += dax                      # only the character's column
        dx = None
    else:
        grads[f"W_ih{l}"] += np.outer(dax, x)
        dx = W_ih.T @ dax
    return dx, np.stack([dh_prev, dc_prev])


# The network over time: networks/stack.py with this cell.
step, forward, sequence_loss, loss_and_gradients = stack.over_time(_cell_forward, _cell_backward)


__all__ = ["STATE_VECTORS", "GATES", "param_shapes", "initial_params", "zero_state",
           "dropout_masks", "step", "forward", "sequence_loss", "loss_and_gradients"]
