"""A stacked LSTM character model, written in numpy as the readable reference.

Each layer l = 0..L-1 is PyTorch's nn.LSTM cell (equations and weight layout as in
https://pytorch.org/docs/stable/generated/torch.nn.LSTM.html). With x_t its input and
h_{t-1}, c_{t-1} its own state:

    i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)        input gate
    f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)        forget gate
    g_t = tanh   (W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)        candidate cell
    o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)        output gate
    c_t = f_t * c_{t-1} + i_t * g_t                             cell
    h_t = o_t * tanh(c_t)

(* is the elementwise product.) The four gates' weights are stacked in that order, i, f, g, o:
W_ih{l} = [W_ii; W_if; W_ig; W_io] (4m, K for layer 0, else m), W_hh{l} (4m, m), b_ih{l},
b_hh{l} (4m,), exactly PyTorch's weight_ih_l{l}, weight_hh_l{l}, bias_ih_l{l}, bias_hh_l{l}.

Layer 0's input x_t is the character, one-hot, so W_ih0 x_t is the column W_ih0[:, x_t]: no
one-hot vector is ever built. Layer l > 0 reads layer l-1's h_t, times a dropout mask when
training with dropout (between layers, as PyTorch's `dropout` argument). The top layer's h_t
feeds the output (times its own mask with --output-dropout), as in model.py:

    p_t = softmax(V h_t + c)          loss = - sum_t log p_t[y_t]   (summed, not averaged)

V (K, m), c (K,). Two names clash with model.py's: the logits V h_t + c are its o_t (step()
returns them as `o`), while o_t above is the output gate; the output bias c is not the cell
c_t. A state is an array (layers, 2, m): state[l, 0] = h of layer l, state[l, 1] = its cell c.

Every function here has the same signature as its namesake in networks/gru.py.
"""

from __future__ import annotations

import numpy as np

from . import stack
from .dropout import dropout_masks
from .stack import sigmoid

STATE_VECTORS = 2       # h and the cell c
GATES = 4               # i, f, g, o
# What charnn.networks.spec asks of every network module: layers of this cell stack, each
# with PyTorch's names (W_ih{l}, ...), the state (layers, STATE_VECTORS, m); gated, so started
# at PyTorch's scale (see Network.default_sigma).
GATED = True
TITLE = "LSTM"
ABBREVIATION = "LSTM"


def param_shapes(K: int, m: int, layers: int) -> dict[str, tuple[int, ...]]:
    return stack.param_shapes(GATES, K, m, layers)


def initial_params(K: int, m: int, layers: int, sigma: float, rng: np.random.Generator,
                   dtype=np.float64) -> dict[str, np.ndarray]:
    """Weights ~ N(0, sigma^2), drawn from `rng` in param_shapes' order; biases zero, except the
    forget gate's block of each b_ih{l}, which starts at 1.

    A forget bias of 1 (Gers et al. 2000; Jozefowicz, Zaremba and Sutskever, "An Empirical
    Exploration of Recurrent Network Architectures", 2015) starts f_t near sigmoid(1) = 0.73
    instead of 0.5: the cell keeps most of itself from step to step, so the gradient through
    c reaches further back before training has learnt to remember. PyTorch instead starts every
    weight and bias at U(-1/sqrt(m), 1/sqrt(m)). Only b_ih holds the 1 (b_hh's block is zero), so
    the sum b_if + b_hf that the gate sees is 1 here and in a PyTorch module loaded from these.
    """
    params = stack.initial_params(param_shapes(K, m, layers), sigma, rng, dtype)
    for l in range(layers):
        params[f"b_ih{l}"][m:2 * m] = 1.0                # the forget gate: rows m..2m-1
    return params


def zero_state(m: int, layers: int, dtype=np.float64) -> np.ndarray:
    """The state before any character: h = c = 0 in every layer, (layers, 2, m)."""
    return np.zeros((layers, STATE_VECTORS, m), dtype)


# One cell, one time step: the forward and, next to it, its backward (networks/stack.py runs
# them over layers and time). x is a character index for layer 0 (x one-hot: W_ih x is a
# column of W_ih) and a vector (the layer below's h) above.

def _cell_forward(params, l: int, x, state_l: np.ndarray):
    """(h_t, c_t) of layer l as a (2, m) state, from its input x and its state (h_{t-1},
    c_{t-1}), and what the backward needs."""
    W_ih, W_hh, b_ih, b_hh = (params[f"{w}{l}"] for w in ("W_ih", "W_hh", "b_ih", "b_hh"))
    h_prev, c_prev = state_l
    m = h_prev.shape[0]
    Wx = W_ih[:, x] if np.ndim(x) == 0 else W_ih @ x        # (4m,)
    a = Wx + b_ih + W_hh @ h_prev + b_hh                    # (4m,): the four gates' inputs
    i = sigmoid(a[:m])                                      # (m,) each
    f = sigmoid(a[m:2 * m])
    g = np.tanh(a[2 * m:3 * m])
    o = sigmoid(a[3 * m:])
    c = f * c_prev + i * g                                  # (m,)
    tanh_c = np.tanh(c)
    h = o * tanh_c                                          # (m,)
    return np.stack([h, c]), (x, h_prev, c_prev, i, f, g, o, tanh_c)


def _cell_backward(params, grads, l: int, cell, dstate: np.ndarray):
    """Back through one _cell_forward: from dL/dh_t and dL/dc_t through c_{t+1} (dstate),
    add dL/dW_ih, dW_hh, db_ih, db_hh of layer l into `grads`; return dL/dx (None for the
    character of layer 0) and (dL/dh_{t-1}, dL/dc_{t-1})."""
    W_ih, W_hh = params[f"W_ih{l}"], params[f"W_hh{l}"]
    x, h_prev, c_prev, i, f, g, o, tanh_c = cell
    dh, dc_next = dstate
    do = dh * tanh_c                                        # h = o * tanh(c)
    dc = dc_next + dh * o * (1 - tanh_c ** 2)               # (m,): dL/dc_t, both paths
    di, df, dg = dc * g, dc * c_prev, dc * i                # c = f * c_prev + i * g
    dc_prev = dc * f
    da = np.concatenate([di * i * (1 - i),                  # through the sigmoids and the tanh
                         df * f * (1 - f),
                         dg * (1 - g ** 2),
                         do * o * (1 - o)])                 # (4m,): dL/da
    grads[f"b_ih{l}"] += da                                 # a = W_ih x + b_ih + W_hh h_prev + b_hh
    grads[f"b_hh{l}"] += da
    grads[f"W_hh{l}"] += np.outer(da, h_prev)               # (4m, m)
    dh_prev = W_hh.T @ da                                   # (m,)
    if np.ndim(x) == 0:
        grads[f"W_ih{l}"][:, x] += da                       # only the character's column
        dx = None
    else:
        grads[f"W_ih{l}"] += np.outer(da, x)                # (4m, m)
        dx = W_ih.T @ da                                    # (m,)
    return dx, np.stack([dh_prev, dc_prev])


# The network over time: networks/stack.py with this cell.
step, forward, sequence_loss, loss_and_gradients = stack.over_time(_cell_forward, _cell_backward)


__all__ = ["STATE_VECTORS", "GATES", "param_shapes", "initial_params", "zero_state",
           "dropout_masks", "step", "forward", "sequence_loss", "loss_and_gradients"]
