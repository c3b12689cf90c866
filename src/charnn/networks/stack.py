"""What every stacked network shares: layers of one cell over time, the output layer, dropout
between layers and on the top's output, and back-propagation through time. A network
(lstm.py, gru.py) brings its cell, one time step of one layer, forward and backward side by
side:

    cell_forward(params, l, x, state_l) -> (new_state_l, cache)
        x: a character index for layer 0 (one-hot: W_ih0 x is a column of W_ih0), the layer
        below's h_t (m,) above it; state_l (S, m) with h first (the LSTM adds its cell c);
        new_state_l (S, m), its h is what the next layer and the output read.
    cell_backward(params, grads, l, cache, dstate) -> (dx, dstate_prev)
        dstate (S, m): dL/dh_t (from above and through t+1) and, for the LSTM, dL/dc_t through
        c_{t+1}; adds the layer's weight and bias gradients into `grads`; returns dL/dx (None
        for the character) and dL/dstate_{t-1}.

The output is as in model.py: p_t = softmax(V h_t + c) of the top layer's h_t, and
loss = -sum_t log p_t[y_t], summed over the window, not averaged.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ..model import softmax


def param_shapes(gates: int, K: int, m: int, layers: int) -> dict[str, tuple[int, ...]]:
    """Per layer W_ih, W_hh, b_ih, b_hh (PyTorch's order, `gates` blocks of m rows each), then
    the output layer V, c."""
    shapes = {}
    for l in range(layers):
        shapes[f"W_ih{l}"] = (gates * m, K if l == 0 else m)
        shapes[f"W_hh{l}"] = (gates * m, m)
        shapes[f"b_ih{l}"] = (gates * m,)
        shapes[f"b_hh{l}"] = (gates * m,)
    shapes["V"] = (K, m)
    shapes["c"] = (K,)
    return shapes


def initial_params(shapes: dict, sigma: float, rng: np.random.Generator,
                   dtype=np.float64) -> dict[str, np.ndarray]:
    """Weights ~ N(0, sigma^2), drawn from `rng` in the shapes' order; biases zero."""
    params = {}
    for name, shape in shapes.items():
        if name.startswith("b") or name == "c":
            params[name] = np.zeros(shape, dtype)
        else:
            params[name] = (sigma * rng.standard_normal(shape)).astype(dtype)
    return params


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-a))


def _time_step(cell_forward, params, x: int, state: np.ndarray, mask_t):
    """One time step through every layer: the new state (layers, S, m) and each layer's cell
    cache. mask_t: None, or vectors (m,), mask_t[l] applied to layer l's h_t on its way into
    layer l + 1 (the top's, when given, is forward's to apply)."""
    layers = state.shape[0]
    new_state = np.empty(state.shape, np.result_type(state, params["V"]))
    caches = []
    inp = x                                                 # layer 0 reads the character
    for l in range(layers):
        new_state[l], cache = cell_forward(params, l, inp, state[l])
        caches.append(cache)
        h = new_state[l, 0]
        inp = h if mask_t is None or l == layers - 1 else h * mask_t[l]   # dropout between layers
    return new_state, caches


def step(cell_forward, params, x: int, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One character x from `state` (layers, S, m): the new state and the logits o (K,) of the
    next character, p = softmax(o). No dropout: this is for sampling."""
    state, _ = _time_step(cell_forward, params, x, state, None)
    o = params["V"] @ state[-1, 0] + params["c"]             # (K,)
    return state, o


def forward(cell_forward, params, inputs: np.ndarray, state: np.ndarray, masks=None):
    """Run the network over `inputs` (tau character indices) from `state` (layers, S, m), with
    the dropout `masks` of dropout_masks (or None).

    Returns (cache, P, state_last): P (tau, K) = p_t; state_last (layers, S, m) after the last
    character; cache = {"cells": caches[t][l] as cell_forward returns them, "H": the top
    layer's h_t (tau, m) as the output layer reads them (masked when `masks` has one for the
    top), "masks": masks}, what loss_and_gradients needs.
    """
    tau, layers, m = len(inputs), state.shape[0], state.shape[-1]
    H = np.empty((tau, m), np.result_type(state, params["V"]))
    cells = []
    for t, x in enumerate(inputs):
        mask_t = None if masks is None else [mask[t] for mask in masks]
        state, caches = _time_step(cell_forward, params, x, state, mask_t)
        cells.append(caches)
        H[t] = state[-1, 0]
    if masks is not None and len(masks) == layers:          # dropout on the top's output
        H *= masks[-1]
    O = H @ params["V"].T + params["c"]                     # (tau, K): all o_t in one product
    return {"cells": cells, "H": H, "masks": masks}, softmax(O), state.copy()


def sequence_loss(cell_forward, params, inputs: np.ndarray, targets: np.ndarray,
                  state: np.ndarray) -> tuple[float, np.ndarray]:
    """Loss of one sequence, -sum_t log p_t[y_t], and the last state (no dropout)."""
    _, P, state_last = forward(cell_forward, params, inputs, state)
    loss = -np.log(P[np.arange(len(targets)), targets]).sum()
    return float(loss), state_last


def loss_and_gradients(cell_forward, cell_backward, params, inputs: np.ndarray,
                       targets: np.ndarray, state: np.ndarray,
                       masks=None) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
    """Forward and backward through one sequence (back-propagation through time).

    Returns (loss, grads, state_last): grads holds dL/dp for every parameter p, same keys and
    shapes. The initial state is a constant: no gradient flows out of it.
    """
    V = params["V"]
    layers, tau = state.shape[0], len(inputs)
    cache, P, state_last = forward(cell_forward, params, inputs, state, masks)
    top_mask = masks[-1] if masks is not None and len(masks) == layers else None
    loss = -np.log(P[np.arange(tau), targets]).sum()

    grads = {name: np.zeros_like(a) for name, a in params.items()}
    G = P.copy()                                            # dL/d(V h_t + c) = p_t - y_t (one-hot)
    G[np.arange(tau), targets] -= 1                         # (tau, K)
    grads["c"][:] = G.sum(axis=0)                           # (K,)
    grads["V"][:] = G.T @ cache["H"]                        # (K, m) = sum_t g_t h_t^T
    dstate_next = np.zeros_like(state_last)                 # (layers, S, m): dL/dstate_t via t+1
    for t in reversed(range(tau)):
        # from above: the output, then layer l+1 (one step's product, as model.py takes it, so
        # that the vanilla RNN of one layer gives model.py's bits)
        dh_in = V.T @ G[t]
        if top_mask is not None:                            # the output layer read h_t masked
            dh_in = dh_in * top_mask[t]
        for l in reversed(range(layers)):
            dstate = dstate_next[l].copy()
            dstate[0] += dh_in                              # h_t: from above and from t+1
            dx, dstate_next[l] = cell_backward(params, grads, l, cache["cells"][t][l], dstate)
            if l > 0:                                       # layer l read h_t of layer l-1 (masked)
                dh_in = dx if masks is None else dx * masks[l - 1][t]
    return float(loss), grads, state_last


def over_time(cell_forward, cell_backward) -> tuple:
    """A cell's network over time: (step, forward, sequence_loss, loss_and_gradients), this
    module's functions with the cell's, each with its signature less the cell functions."""
    return (partial(step, cell_forward), partial(forward, cell_forward),
            partial(sequence_loss, cell_forward),
            partial(loss_and_gradients, cell_forward, cell_backward))
