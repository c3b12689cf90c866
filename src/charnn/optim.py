"""Gradient clipping and the update rules, in numpy (the reference for the compiled path).

Each rule updates a parameter array and its state arrays in place:

    AdaGrad:  m <- m + g^2;                          theta <- theta - eta g / sqrt(m + eps)
    RMSProp:  m <- gamma m + (1 - gamma) g^2;        theta <- theta - eta g / sqrt(m + eps)
    Adam:     m <- beta1 m + (1 - beta1) g;   v <- beta2 v + (1 - beta2) g^2
              theta <- theta - eta m_hat / (sqrt(v_hat) + eps),
              m_hat = m / (1 - beta1^t),  v_hat = v / (1 - beta2^t)   (t counts updates from 1)
"""

from __future__ import annotations

import numpy as np

from .model import Params

OPTIMIZERS = ("adagrad", "rmsprop", "adam")
# The learning rate each rule gets when --eta is not given: the assignment's 0.1 for AdaGrad;
# the moment-based rules take much smaller steps for the same eta.
DEFAULT_ETA = {"adagrad": 0.1, "rmsprop": 0.005, "adam": 0.005}
EPS = 1e-8
RMSPROP_GAMMA = 0.9
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999

# The state arrays each rule keeps per parameter, named "<slot>_<param>" in checkpoints.
STATE_SLOTS = {"adagrad": ("m",), "rmsprop": ("m",), "adam": ("m", "v")}


def initial_state(optimizer: str, params: Params) -> dict[str, np.ndarray]:
    return {f"{slot}_{name}": np.zeros_like(a)
            for slot in STATE_SLOTS[optimizer] for name, a in params.items()}


def clip_(grads: Params, clip: float) -> None:
    """Clip every gradient element to [-clip, clip], in place."""
    for _, g in grads.items():
        np.clip(g, -clip, clip, out=g)


def step_(optimizer: str, params: Params, grads: Params, state: dict[str, np.ndarray],
          eta: float, t: int) -> None:
    """Apply update number t (counting from 1) of `optimizer` to params, in place."""
    for name, theta in params.items():
        g = getattr(grads, name)
        if optimizer == "adagrad":
            m = state[f"m_{name}"]
            m += g * g
            theta -= eta * g / np.sqrt(m + EPS)
        elif optimizer == "rmsprop":
            m = state[f"m_{name}"]
            m *= RMSPROP_GAMMA
            m += (1 - RMSPROP_GAMMA) * g * g
            theta -= eta * g / np.sqrt(m + EPS)
        elif optimizer == "adam":
            m, v = state[f"m_{name}"], state[f"v_{name}"]
            m *= ADAM_BETA1
            m += (1 - ADAM_BETA1) * g
            v *= ADAM_BETA2
            v += (1 - ADAM_BETA2) * g * g
            m_hat = m / (1 - ADAM_BETA1 ** t)
            v_hat = v / (1 - ADAM_BETA2 ** t)
            theta -= eta * m_hat / (np.sqrt(v_hat) + EPS)
        else:
            raise ValueError(f"unknown optimizer {optimizer!r}")
