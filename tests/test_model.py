import math

import numpy as np
import pytest

from charnn import gradcheck
from charnn.gradcheck import check_gradients
from charnn.model import Params, forward, loss_and_gradients, sequence_loss, to_assignment


def gradcheck_problem(*args, **kwargs):
    """gradcheck.gradcheck_problem's vanilla RNN in the assignment's names, its state h."""
    params, inputs, targets, state = gradcheck.gradcheck_problem(*args, **kwargs)
    return to_assignment(params), inputs, targets, state.reshape(-1)


@pytest.mark.parametrize("m,K,seq_length", [(5, 10, 25), (3, 7, 1), (8, 4, 6), (1, 2, 3), (12, 30, 9)])
def test_gradients_match_centred_differences(m, K, seq_length):
    rng = np.random.default_rng(m * 100 + K * 10 + seq_length)
    data = rng.integers(0, K, seq_length + 1)
    params, inputs, targets, h_prev = gradcheck_problem(data, K, hidden=m, seq_length=seq_length,
                                                        seed=seq_length)
    rows = check_gradients(params, inputs, targets, h_prev)
    assert [r.name for r in rows] == ["b", "c", "U", "W", "V"]
    for row in rows:
        assert row.passed, row
        assert row.max_rel <= 1e-6


def test_gradient_check_catches_a_wrong_gradient():
    rng = np.random.default_rng(0)
    K, m = 6, 4
    data = rng.integers(0, K, 11)
    params, inputs, targets, h_prev = gradcheck_problem(data, K, hidden=m, seq_length=10)

    def transposed_outer(params, inputs, targets, h_prev):
        # the report's bug: one product taken the wrong way round
        loss, grads, h = loss_and_gradients(params, inputs, targets, h_prev)
        grads.W = grads.W.T.copy()
        return loss, grads, h

    rows = {r.name: r for r in check_gradients(params, inputs, targets, h_prev,
                                               gradient_fn=transposed_outer)}
    assert not rows["W"].passed
    assert all(rows[n].passed for n in "bcUV")


def test_initial_loss_is_about_seq_length_ln_K():
    K, m, tau = 80, 100, 25
    rng = np.random.default_rng(3)
    params = Params.initial(m, K, 0.01, rng)
    data = rng.integers(0, K, tau + 1)
    loss, _ = sequence_loss(params, data[:-1], data[1:], np.zeros(m))
    assert loss == pytest.approx(tau * math.log(K), rel=1e-3)     # 109.55 for K = 80


def test_initialisation_is_seeded_with_zero_biases():
    a = Params.initial(7, 5, 0.01, np.random.default_rng(9))
    b = Params.initial(7, 5, 0.01, np.random.default_rng(9))
    for (name, x), (_, y) in zip(a.items(), b.items()):
        np.testing.assert_array_equal(x, y)
    assert not a.b.any() and not a.c.any()
    assert a.U.shape == (7, 5) and a.W.shape == (7, 7) and a.V.shape == (5, 7)
    assert 0.005 < a.W.std() < 0.015


def test_softmax_is_stable_for_huge_logits():
    params = Params.initial(3, 4, 0.01, np.random.default_rng(0))
    params.c[:] = [1000.0, -1000.0, 0.0, 999.0]
    _, P = forward(params, np.array([0, 1]), np.zeros(3))
    assert np.isfinite(P).all()
    np.testing.assert_allclose(P.sum(axis=1), 1.0)


def test_gradients_of_a_batch_match_centred_differences():
    # the batch loss is the mean over lanes of each lane's summed loss
    rng = np.random.default_rng(21)
    K, m, B, L = 9, 6, 4, 7
    params = Params.initial(m, K, 0.1, rng)
    inputs, targets = rng.integers(0, K, (B, L)), rng.integers(0, K, (B, L))
    h_prev = np.tanh(rng.standard_normal((B, m)))
    rows = check_gradients(params, inputs, targets, h_prev)
    assert all(r.passed for r in rows), rows


@pytest.mark.parametrize("m", [256, 512])
def test_gradients_of_large_models_match_centred_differences(m):
    rng = np.random.default_rng(m)
    K, L = 30, 8
    params = Params.initial(m, K, 0.01, rng)
    data = rng.integers(0, K, L + 1)
    rows = check_gradients(params, data[:-1], data[1:], np.tanh(rng.standard_normal(m)),
                           elements=6, seed=m)
    assert all(r.passed for r in rows), rows
