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
training with dropout (between layers only, as PyTorch's `dropout` argument). The top layer's
h_t feeds the output, as in model.py:

    p_t = softmax(V h_t + c)          loss = - sum_t log p_t[y_t]   (summed, not averaged)

V (K, m), c (K,). Two names clash with model.py's: the logits V h_t + c are its o_t (step()
returns them as `o`), while o_t above is the output gate; the output bias c is not the cell
c_t. A state is an array (layers, 2, m): state[l, 0] = h of layer l, state[l, 1] = its cell c.

Every function here has the same signature as its namesake in networks/gru.py.
"""

from __future__ import annotations

import numpy as np

from ..model import softmax

STATE_VECTORS = 2       # h and the cell c
GATES = 4               # i, f, g, o


def param_shapes(K: int, m: int, layers: int) -> dict[str, tuple[int, ...]]:
    """The parameters' names and shapes, in a fixed order: per layer W_ih, W_hh, b_ih, b_hh
    (PyTorch's order), then the output layer V, c."""
    shapes = {}
    for l in range(layers):
        shapes[f"W_ih{l}"] = (GATES * m, K if l == 0 else m)
        shapes[f"W_hh{l}"] = (GATES * m, m)
        shapes[f"b_ih{l}"] = (GATES * m,)
        shapes[f"b_hh{l}"] = (GATES * m,)
    shapes["V"] = (K, m)
    shapes["c"] = (K,)
    return shapes


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
    params = {}
    for name, shape in param_shapes(K, m, layers).items():
        if name.startswith("b") or name == "c":
            params[name] = np.zeros(shape, dtype)
        else:
            params[name] = (sigma * rng.standard_normal(shape)).astype(dtype)
    for l in range(layers):
        params[f"b_ih{l}"][m:2 * m] = 1.0                # the forget gate: rows m..2m-1
    return params


def zero_state(m: int, layers: int, dtype=np.float64) -> np.ndarray:
    """The state before any character: h = c = 0 in every layer, (layers, 2, m)."""
    return np.zeros((layers, STATE_VECTORS, m), dtype)


def dropout_masks(p: float, tau: int, m: int, layers: int, rng: np.random.Generator,
                  dtype=np.float64) -> list[np.ndarray] | None:
    """Masks for dropout with probability p between stacked layers, for a window of tau steps:
    layers - 1 arrays (tau, m) of 0 (dropped) and 1 / (1 - p) (kept, scaled so the expected
    input is unchanged); mask l multiplies layer l's h_t on its way into layer l + 1. None when
    there is nothing to drop (p == 0 or a single layer)."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if p == 0 or layers == 1:
        return None
    return [((rng.random((tau, m)) >= p) / (1 - p)).astype(dtype) for _ in range(layers - 1)]


def _layers(params) -> int:
    return sum(name.startswith("W_hh") for name in params)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-a))


# One cell, one time step: the forward and, next to it, its backward. x is a character index
# for layer 0 (x one-hot: W_ih x is a column of W_ih) and a vector (the layer below's h) above.

def _cell_forward(params, l: int, x, h_prev: np.ndarray, c_prev: np.ndarray):
    """h_t, c_t of layer l from its input x and its state h_{t-1}, c_{t-1}, and what the
    backward needs."""
    W_ih, W_hh, b_ih, b_hh = (params[f"{w}{l}"] for w in ("W_ih", "W_hh", "b_ih", "b_hh"))
    m = h_prev.shape[0]
    Wx = W_ih[:, x] if np.ndim(x) == 0 else W_ih @ x        # (4m,)
    a = Wx + b_ih + W_hh @ h_prev + b_hh                    # (4m,): the four gates' inputs
    i = _sigmoid(a[:m])                                     # (m,) each
    f = _sigmoid(a[m:2 * m])
    g = np.tanh(a[2 * m:3 * m])
    o = _sigmoid(a[3 * m:])
    c = f * c_prev + i * g                                  # (m,)
    tanh_c = np.tanh(c)
    h = o * tanh_c                                          # (m,)
    return h, c, (x, h_prev, c_prev, i, f, g, o, tanh_c)


def _cell_backward(params, grads, l: int, cell, dh: np.ndarray, dc_next: np.ndarray):
    """Back through one _cell_forward: from dL/dh_t (dh) and dL/dc_t through c_{t+1} (dc_next),
    add dL/dW_ih, dW_hh, db_ih, db_hh of layer l into `grads`; return dL/dx (None for the
    character of layer 0), dL/dh_{t-1} and dL/dc_{t-1}."""
    W_ih, W_hh = params[f"W_ih{l}"], params[f"W_hh{l}"]
    x, h_prev, c_prev, i, f, g, o, tanh_c = cell
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
    return dx, dh_prev, dc_prev


def _stack_forward(params, x: int, state: np.ndarray, mask_t):
    """One time step through every layer: the new state (layers, 2, m) and each layer's cell
    cache. mask_t: None, or layers - 1 vectors (m,), mask_t[l] applied to layer l's h_t."""
    layers = state.shape[0]
    new_state = np.empty(state.shape, np.result_type(state, params["V"]))
    cells = []
    inp = x                                                 # layer 0 reads the character
    for l in range(layers):
        h, c, cell = _cell_forward(params, l, inp, state[l, 0], state[l, 1])
        new_state[l, 0], new_state[l, 1] = h, c
        cells.append(cell)
        inp = h if mask_t is None or l == layers - 1 else h * mask_t[l]   # dropout between layers
    return new_state, cells


def step(params, x: int, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One character x from `state` (layers, 2, m): the new state and the logits o (K,) of the
    next character, p = softmax(o). No dropout: this is for sampling."""
    state, _ = _stack_forward(params, x, state, None)
    o = params["V"] @ state[-1, 0] + params["c"]             # (K,)
    return state, o


def forward(params, inputs: np.ndarray, state: np.ndarray, masks=None):
    """Run the network over `inputs` (tau character indices) from `state` (layers, 2, m), with
    the dropout `masks` of dropout_masks (or None).

    Returns (cache, P, state_last): P (tau, K) = p_t; state_last (layers, 2, m) after the last
    character; cache = {"cells": cells[t][l] as _cell_forward returns, "H": the top layer's
    h_t (tau, m), "masks": masks}, what loss_and_gradients needs.
    """
    tau, m = len(inputs), state.shape[-1]
    H = np.empty((tau, m), np.result_type(state, params["V"]))
    cells = []
    for t, x in enumerate(inputs):
        mask_t = None if masks is None else [mask[t] for mask in masks]
        state, cells_t = _stack_forward(params, x, state, mask_t)
        cells.append(cells_t)
        H[t] = state[-1, 0]
    O = H @ params["V"].T + params["c"]                     # (tau, K): all o_t in one product
    return {"cells": cells, "H": H, "masks": masks}, softmax(O), state.copy()


def sequence_loss(params, inputs: np.ndarray, targets: np.ndarray,
                  state: np.ndarray) -> tuple[float, np.ndarray]:
    """Loss of one sequence, -sum_t log p_t[y_t], and the last state (no dropout)."""
    _, P, state_last = forward(params, inputs, state)
    loss = -np.log(P[np.arange(len(targets)), targets]).sum()
    return float(loss), state_last


def loss_and_gradients(params, inputs: np.ndarray, targets: np.ndarray, state: np.ndarray,
                       masks=None) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
    """Forward and backward through one sequence (back-propagation through time).

    Returns (loss, grads, state_last): grads holds dL/dp for every parameter p, same keys and
    shapes. The initial state is a constant: no gradient flows out of it.
    """
    V = params["V"]
    layers, tau = _layers(params), len(inputs)
    cache, P, state_last = forward(params, inputs, state, masks)
    loss = -np.log(P[np.arange(tau), targets]).sum()

    grads = {name: np.zeros_like(a) for name, a in params.items()}
    G = P.copy()                                            # dL/d(V h_t + c) = p_t - y_t (one-hot)
    G[np.arange(tau), targets] -= 1                         # (tau, K)
    grads["c"][:] = G.sum(axis=0)                           # (K,)
    grads["V"][:] = G.T @ cache["H"]                        # (K, m) = sum_t g_t h_t^T
    dH_top = G @ V                                          # (tau, m): dL/dh_t of the top layer
    dh_next = np.zeros_like(state_last[:, 0])               # (layers, m): dL/dh_t through h_{t+1}
    dc_next = np.zeros_like(state_last[:, 1])               # (layers, m): dL/dc_t through c_{t+1}
    for t in reversed(range(tau)):
        dh_in = dH_top[t]                                   # from above: the output, then layer l+1
        for l in reversed(range(layers)):
            dx, dh_next[l], dc_next[l] = _cell_backward(params, grads, l, cache["cells"][t][l],
                                                        dh_in + dh_next[l], dc_next[l])
            if l > 0:                                       # layer l read h_t of layer l-1 (masked)
                dh_in = dx if masks is None else dx * masks[l - 1][t]
    return float(loss), grads, state_last
