"""Each update rule against a step computed by hand."""

import math

import numpy as np
import pytest

from charnn import optim
from charnn.model import Params


def one_param_model(theta, grad):
    params = Params(b=np.array([theta]), c=np.zeros(1), U=np.zeros((1, 1)), W=np.zeros((1, 1)),
                    V=np.zeros((1, 1)))
    grads = Params.zeros_like(params)
    grads.b[0] = grad
    return params, grads


def test_adagrad_step_by_hand():
    params, grads = one_param_model(1.0, 0.5)
    state = optim.initial_state("adagrad", params)
    optim.step_("adagrad", params, grads, state, eta=0.1, t=1)
    assert state["m_b"][0] == 0.25
    assert params.b[0] == pytest.approx(1.0 - 0.1 * 0.5 / math.sqrt(0.25 + 1e-8), rel=1e-15)
    optim.step_("adagrad", params, grads, state, eta=0.1, t=2)
    assert state["m_b"][0] == 0.5
    assert params.b[0] == pytest.approx(1.0 - 0.1 * 0.5 / math.sqrt(0.25 + 1e-8)
                                        - 0.1 * 0.5 / math.sqrt(0.5 + 1e-8), rel=1e-15)


def test_rmsprop_step_by_hand():
    params, grads = one_param_model(1.0, 0.5)
    state = optim.initial_state("rmsprop", params)
    optim.step_("rmsprop", params, grads, state, eta=0.01, t=1)
    m1 = 0.1 * 0.25                                            # gamma = 0.9
    assert state["m_b"][0] == pytest.approx(m1, rel=1e-15)
    theta1 = 1.0 - 0.01 * 0.5 / math.sqrt(m1 + 1e-8)
    assert params.b[0] == pytest.approx(theta1, rel=1e-15)
    grads.b[0] = -2.0
    optim.step_("rmsprop", params, grads, state, eta=0.01, t=2)
    m2 = 0.9 * m1 + 0.1 * 4.0
    assert params.b[0] == pytest.approx(theta1 + 0.01 * 2.0 / math.sqrt(m2 + 1e-8), rel=1e-15)


def test_adam_step_by_hand_is_bias_corrected():
    params, grads = one_param_model(1.0, 0.5)
    state = optim.initial_state("adam", params)
    optim.step_("adam", params, grads, state, eta=0.01, t=1)
    # after one step the bias-corrected moments are g and g^2: a step of eta * sign(g)
    assert state["m_b"][0] == pytest.approx(0.05) and state["v_b"][0] == pytest.approx(0.00025)
    theta1 = 1.0 - 0.01 * 0.5 / (0.5 + 1e-8)
    assert params.b[0] == pytest.approx(theta1, rel=1e-12)
    grads.b[0] = 0.1
    optim.step_("adam", params, grads, state, eta=0.01, t=2)
    m = 0.9 * 0.05 + 0.1 * 0.1
    v = 0.999 * 0.00025 + 0.001 * 0.01
    m_hat, v_hat = m / (1 - 0.9 ** 2), v / (1 - 0.999 ** 2)
    assert params.b[0] == pytest.approx(theta1 - 0.01 * m_hat / (math.sqrt(v_hat) + 1e-8),
                                        rel=1e-12)


def test_clipping_is_elementwise():
    params, grads = one_param_model(0.0, 7.0)
    grads.W[0, 0] = -12.0
    grads.c[0] = 3.0
    optim.clip_(grads, 5.0)
    assert (grads.b[0], grads.W[0, 0], grads.c[0]) == (5.0, -5.0, 3.0)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_every_optimizer_state_has_a_slot_per_parameter(name):
    params, _ = one_param_model(0.0, 0.0)
    state = optim.initial_state(name, params)
    assert len(state) == 5 * len(optim.STATE_SLOTS[name])
