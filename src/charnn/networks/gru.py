"""A stacked GRU character model, written in numpy as the readable reference.

Each layer l = 0..L-1 is PyTorch's nn.GRU cell (equations and weight layout as in
https://pytorch.org/docs/stable/generated/torch.nn.GRU.html). With x_t its input and h_{t-1}
its state:

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)              reset gate
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)              update gate
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))         candidate
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

(* is the elementwise product; the reset gate multiplies W_hn h_{t-1} + b_hn, after the
product, as PyTorch and cuDNN do, not h_{t-1} before it as in Cho et al. 2014.) The three
gates' weights are stacked in that order, r, z, n: W_ih{l} = [W_ir; W_iz; W_in] (3m, K for
layer 0, else m), W_hh{l} (3m, m), b_ih{l}, b_hh{l} (3m,), exactly PyTorch's weight_ih_l{l},
weight_hh_l{l}, bias_ih_l{l}, bias_hh_l{l}.

Layer 0's input x_t is the character, one-hot, so W_ih0 x_t is the column W_ih0[:, x_t]: no
one-hot vector is ever built. Layer l > 0 reads layer l-1's h_t, times a dropout mask when
training with dropout (between layers, as PyTorch's `dropout` argument). The top layer's h_t
feeds the output (times its own mask with --output-dropout), as in model.py:

    o_t = V h_t + c         p_t = softmax(o_t)
    loss = - sum_t log p_t[y_t]       (summed over the sequence, not averaged)

V (K, m), c (K,). A state is an array (layers, 1, m): state[l, 0] = h of layer l.

Every function here has the same signature as its namesake in networks/lstm.py.
"""

from __future__ import annotations

import numpy as np

from . import stack
from .dropout import dropout_masks
from .stack import sigmoid

STATE_VECTORS = 1       # h
GATES = 3               # r, z, n
# What charnn.networks.spec asks of every network module: layers of this cell stack, each
# with PyTorch's names (W_ih{l}, ...), the state (layers, STATE_VECTORS, m); gated, so started
# at PyTorch's scale (see Network.default_sigma).
GATED = True
TITLE = "GRU"
ABBREVIATION = "GRU"


def param_shapes(K: int, m: int, layers: int) -> dict[str, tuple[int, ...]]:
    return stack.param_shapes(GATES, K, m, layers)


def initial_params(K: int, m: int, layers: int, sigma: float, rng: np.random.Generator,
                   dtype=np.float64) -> dict[str, np.ndarray]:
    """Weights ~ N(0, sigma^2), drawn from `rng` in param_shapes' order; biases zero.
    (PyTorch instead starts every weight and bias at U(-1/sqrt(m), 1/sqrt(m)).)"""
    return stack.initial_params(param_shapes(K, m, layers), sigma, rng, dtype)


def zero_state(m: int, layers: int, dtype=np.float64) -> np.ndarray:
    """The state before any character: h = 0 in every layer, (layers, 1, m)."""
    return np.zeros((layers, STATE_VECTORS, m), dtype)


# One cell, one time step: the forward and, next to it, its backward (networks/stack.py runs
# them over layers and time). x is a character index for layer 0 (x one-hot: W_ih x is a
# column of W_ih) and a vector (the layer below's h) above.

def _cell_forward(params, l: int, x, state_l: np.ndarray):
    """h_t of layer l as a (1, m) state, from its input x and its state h_{t-1}, and what the
    backward needs."""
    W_ih, W_hh, b_ih, b_hh = (params[f"{w}{l}"] for w in ("W_ih", "W_hh", "b_ih", "b_hh"))
    h_prev = state_l[0]
    m = h_prev.shape[0]
    ax = (W_ih[:, x] if np.ndim(x) == 0 else W_ih @ x) + b_ih   # (3m,): the input's part
    ah = W_hh @ h_prev + b_hh                               # (3m,): the state's part
    r = sigmoid(ax[:m] + ah[:m])                            # (m,) each
    z = sigmoid(ax[m:2 * m] + ah[m:2 * m])
    hn = ah[2 * m:]                                         # W_hn h_prev + b_hn
    n = np.tanh(ax[2 * m:] + r * hn)
    h = (1 - z) * n + z * h_prev                            # (m,)
    return h[None], (x, h_prev, r, z, n, hn)


def _cell_backward(params, grads, l: int, cell, dstate: np.ndarray):
    """Back through one _cell_forward: from dL/dh_t (dstate[0]), add dL/dW_ih, dW_hh, db_ih,
    db_hh of layer l into `grads`; return dL/dx (None for the character of layer 0) and
    dL/dh_{t-1} as a (1, m) state."""
    W_ih, W_hh = params[f"W_ih{l}"], params[f"W_hh{l}"]
    x, h_prev, r, z, n, hn = cell
    dh = dstate[0]
    dn = dh * (1 - z)                                       # h = (1 - z) * n + z * h_prev
    dz = dh * (h_prev - n)
    dh_prev = dh * z
    dan = dn * (1 - n ** 2)                                 # n = tanh(an), an = ax_n + r * hn
    dr = dan * hn
    dar = dr * r * (1 - r)                                  # through the sigmoids
    daz = dz * z * (1 - z)
    dax = np.concatenate([dar, daz, dan])                   # (3m,): dL/dax
    dah = np.concatenate([dar, daz, dan * r])               # (3m,): dL/dah, hn scaled by r
    grads[f"b_ih{l}"] += dax                                # ax = W_ih x + b_ih
    grads[f"b_hh{l}"] += dah                                # ah = W_hh h_prev + b_hh
    grads[f"W_hh{l}"] += np.outer(dah, h_prev)              # (3m, m)
    dh_prev = dh_prev + W_hh.T @ dah                        # (m,): both paths to h_prev
    if np.ndim(x) == 0:
        grads[f"W_ih{l}"][:, x] += dax                      # only the character's column
        dx = None
    else:
        grads[f"W_ih{l}"] += np.outer(dax, x)               # (3m, m)
        dx = W_ih.T @ dax                                   # (m,)
    return dx, dh_prev[None]


# The network over time: networks/stack.py with this cell.
step, forward, sequence_loss, loss_and_gradients = stack.over_time(_cell_forward, _cell_backward)


__all__ = ["STATE_VECTORS", "GATES", "param_shapes", "initial_params", "zero_state",
           "dropout_masks", "step", "forward", "sequence_loss", "loss_and_gradients"]
