"""Recurrent networks for the character model, each a numpy module with one interface.

    from charnn.networks import NETWORKS
    net = NETWORKS["lstm"]
    params = net.initial_params(K, m, layers=2, sigma=0.1, rng=np.random.default_rng(0))
    loss, grads, state = net.loss_and_gradients(params, inputs, targets, net.zero_state(m, 2))

What a network is (cell, layers, hidden size, vocabulary, dropout) is a Network (spec.py):
its parameters' names and shapes, its state's shape, its parameter count, its initial scale
and its description come from there. Every module in NETWORKS provides, with the same names
and signatures:

    GATED                          gated cells start from a larger scale (Network.default_sigma)
    ASSIGNMENT (optional)          True for the vanilla RNN: with one layer it is the
                                   assignment's network (model.py, in the assignment's names)
    TITLE, ABBREVIATION            its name in words ("vanilla RNN", "LSTM") and short ("RNN")
    STATE_VECTORS                  vectors in each layer's state: 2 for the LSTM (h, cell c),
                                   1 for the GRU (h)
    param_shapes(K, m, layers)     {name: shape} in a fixed order: per layer l W_ih{l}
                                   (G*m, K for l = 0 else m), the cell's own (W_hh{l} (G*m, m),
                                   b_ih{l} (G*m,), b_hh{l} (G*m,) for the LSTM and GRU:
                                   PyTorch's weight_ih_l{l}, ..., G gates stacked in PyTorch's
                                   order), then the output layer V (K, m) and c (K,)
    initial_params(K, m, layers, sigma, rng, dtype=np.float64)
                                   {name: array}: weights ~ N(0, sigma^2) drawn in param_shapes'
                                   order, biases zero (the LSTM's forget bias 1)
    zero_state(m, layers, dtype)   zeros (layers, STATE_VECTORS, m)
    step(params, x, state)         one character x (int): (new_state, o), o (K,) the logits of
                                   the next character (no dropout; for sampling)
    forward(params, inputs, state, masks=None)
                                   over tau characters: (cache, P, state_last), P (tau, K)
    loss_and_gradients(params, inputs, targets, state, masks=None)
                                   (loss, grads, state_last): loss = -sum_t log P[t, y_t]
                                   (summed, not averaged), grads with params' keys and shapes
    sequence_loss(params, inputs, targets, state)
                                   (loss, state_last), forward only, no dropout
    dropout_masks(p, tau, m, layers, key, dtype=np.float64, output=0.0)
                                   None (nothing to drop) or arrays (tau, m) of 0 and 1 / (1 - p):
                                   mask l multiplies layer l's h_t on its way into layer l + 1
                                   (between layers, as PyTorch's dropout), then, when output > 0,
                                   one more on the top's h_t on its way into the output layer;
                                   key = (seed, update, lane), drawn as dropout.py says

K characters, m hidden units per layer; inputs and targets are arrays of character indices.
The top layer's h_t gives p_t = softmax(V h_t + c), as in charnn.model, the assignment's
vanilla RNN, which the rnn module is with one layer (U = W_ih0, W = W_hh0, b = b_ih0).
"""

from . import gru, lstm, mlstm, rnn
from .spec import CELLS, Network

NETWORKS = CELLS


def network_of(params):
    """The module of the network these parameters belong to (see Network.of_params)."""
    return Network.of_params(params).module


def state_shape(params) -> tuple[int, ...]:
    """The shape of one lane's state: (layers, STATE_VECTORS, m)."""
    return Network.of_params(params).state_shape


__all__ = ["CELLS", "NETWORKS", "Network", "gru", "lstm", "mlstm", "network_of", "rnn", "state_shape"]
