"""The vanilla RNN in the networks' interface (see networks/__init__.py), one layer.

The math is charnn.model's, the assignment's network and the reference every backend is
tested against; this module only speaks the interface: parameters as a mapping b, c, U, W, V,
a state (1, 1, m) holding h.
"""

from __future__ import annotations

import numpy as np

from .. import model

STATE_VECTORS = 1       # h
# What charnn.networks.spec asks of every network module. The vanilla RNN is not a stack:
# one layer, the assignment's names (b, c, U, W, V), and a state of h alone, (m,), as its
# kernels and checkpoints hold it.
STACKED = False
GATED = False           # its initial scale is the assignment's 0.01 (see Network.default_sigma)
TITLE = "vanilla RNN"
ABBREVIATION = "RNN"


def param_shapes(K: int, m: int, layers: int) -> dict[str, tuple[int, ...]]:
    _one_layer(layers)
    return {"b": (m,), "c": (K,), "U": (m, K), "W": (m, m), "V": (K, m)}


def initial_params(K: int, m: int, layers: int, sigma: float, rng: np.random.Generator,
                   dtype=np.float64) -> dict[str, np.ndarray]:
    """As model.Params.initial: b = c = 0; U, W, V ~ N(0, sigma^2) in that order."""
    _one_layer(layers)
    return dict(model.Params.initial(m, K, sigma, rng, dtype).items())


def zero_state(m: int, layers: int, dtype=np.float64) -> np.ndarray:
    _one_layer(layers)
    return np.zeros((1, STATE_VECTORS, m), dtype)


def dropout_masks(p: float, tau: int, m: int, layers: int, key: tuple[int, int, int],
                  dtype=np.float64):
    """One layer has nothing between layers to drop."""
    return None


def step(params, x: int, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = _params(params)
    h = np.tanh(p.W @ state[0, 0] + p.U[:, x] + p.b)          # (m,)
    return h.reshape(1, 1, -1), p.V @ h + p.c


def forward(params, inputs: np.ndarray, state: np.ndarray, masks=None):
    H, P = model.forward(_params(params), inputs, state[0, 0])
    return {"H": H[1:]}, P, H[-1].reshape(1, 1, -1).copy()


def sequence_loss(params, inputs: np.ndarray, targets: np.ndarray,
                  state: np.ndarray) -> tuple[float, np.ndarray]:
    loss, h = model.sequence_loss(_params(params), inputs, targets,
                                  state[0, 0])
    return loss, h.reshape(1, 1, -1)


def loss_and_gradients(params, inputs: np.ndarray, targets: np.ndarray, state: np.ndarray,
                       masks=None) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
    loss, grads, h = model.loss_and_gradients(_params(params), inputs,
                                              targets, state[0, 0])
    return loss, dict(grads.items()), h.reshape(1, 1, -1)


def _params(params) -> model.Params:
    return params if isinstance(params, model.Params) else model.Params(dict(params.items()))


def _one_layer(layers: int) -> None:
    if layers != 1:
        raise ValueError("the vanilla RNN has one layer here; stack LSTM or GRU layers instead")
