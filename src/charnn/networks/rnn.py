"""The vanilla RNN as a cell of the stack, written in numpy as the readable reference. Each
layer l = 0..L-1, with x_t its input and h_{t-1} its state:

    h_t = tanh(W_hh h_{t-1} + W_ih x_t + b_ih)

W_ih{l} (m, K for layer 0, else m), W_hh{l} (m, m), b_ih{l} (m,): PyTorch's nn.RNN (tanh),
weight_ih_l{l}, weight_hh_l{l}, bias_ih_l{l}, without its second bias (one bias adds the
same). The top layer's h_t feeds the output p_t = softmax(V h_t + c), as for every network.

With one layer this is the assignment's network, model.py, written in the assignment's names:
U = W_ih0, W = W_hh0, b = b_ih0. The sums are taken in model.py's order, so that one layer
here gives model.py's numbers bit for bit (tests/test_networks.py holds it), and the initial
weights are drawn in its order (W_ih0, W_hh0, V: U, W, V).

A state is an array (layers, 1, m): state[l, 0] = h of layer l.

Every function here has the same signature as its namesake in networks/lstm.py.
"""

from __future__ import annotations

import numpy as np

from . import stack
from .dropout import dropout_masks

STATE_VECTORS = 1       # h
GATES = 1               # the tanh's input: W_ih's rows are m
# What charnn.networks.spec asks of every network module (see lstm.py); not gated, so started
# at the assignment's scale. ASSIGNMENT: with one layer, the assignment's network (model.py).
GATED = False
ASSIGNMENT = True
TITLE = "vanilla RNN"
ABBREVIATION = "RNN"


def param_shapes(K: int, m: int, layers: int) -> dict[str, tuple[int, ...]]:
    """Per layer W_ih (m, K | m), W_hh (m, m), b_ih (m,); then V, c."""
    shapes = {}
    for l in range(layers):
        shapes[f"W_ih{l}"] = (m, K if l == 0 else m)
        shapes[f"W_hh{l}"] = (m, m)
        shapes[f"b_ih{l}"] = (m,)
    shapes["V"] = (K, m)
    shapes["c"] = (K,)
    return shapes


def initial_params(K: int, m: int, layers: int, sigma: float, rng: np.random.Generator,
                   dtype=np.float64) -> dict[str, np.ndarray]:
    """Weights ~ N(0, sigma^2) drawn from `rng` in param_shapes' order, biases zero: for one
    layer the assignment's b = c = 0 and U, W, V in that order (model.Params.initial)."""
    return stack.initial_params(param_shapes(K, m, layers), sigma, rng, dtype)


def zero_state(m: int, layers: int, dtype=np.float64) -> np.ndarray:
    """The state before any character: h = 0 in every layer, (layers, 1, m)."""
    return np.zeros((layers, STATE_VECTORS, m), dtype)


# One cell, one time step: the forward and, next to it, its backward (networks/stack.py runs
# them over layers and time).

def _cell_forward(params, l: int, x, state_l: np.ndarray):
    """h_t of layer l as a (1, m) state, and what the backward needs."""
    W_ih, W_hh, b_ih = params[f"W_ih{l}"], params[f"W_hh{l}"], params[f"b_ih{l}"]
    h_prev = state_l[0]
    Wx = W_ih[:, x] if np.ndim(x) == 0 else W_ih @ x
    h = np.tanh(W_hh @ h_prev + Wx + b_ih)                  # model.py's order of the sum
    return h[None], (x, h_prev, h)


def _cell_backward(params, grads, l: int, cell, dstate: np.ndarray):
    """Back through one _cell_forward: from dL/dh_t (dstate[0]), add dL/dW_ih, dW_hh, db_ih
    of layer l into `grads`; return dL/dx (None for the character of layer 0) and
    dL/dh_{t-1} as a (1, m) state."""
    W_ih, W_hh = params[f"W_ih{l}"], params[f"W_hh{l}"]
    x, h_prev, h = cell
    da = dstate[0] * (1 - h ** 2)                           # through the tanh
    grads[f"b_ih{l}"] += da
    grads[f"W_hh{l}"] += np.outer(da, h_prev)
    if np.ndim(x) == 0:
        grads[f"W_ih{l}"][:, x] += da                       # only the character's column
        dx = None
    else:
        grads[f"W_ih{l}"] += np.outer(da, x)
        dx = W_ih.T @ da
    return dx, (W_hh.T @ da)[None]


# The network over time: networks/stack.py with this cell.
step, forward, sequence_loss, loss_and_gradients = stack.over_time(_cell_forward, _cell_backward)


__all__ = ["STATE_VECTORS", "GATES", "param_shapes", "initial_params", "zero_state",
           "dropout_masks", "step", "forward", "sequence_loss", "loss_and_gradients"]
