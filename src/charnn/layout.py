"""An exported model's tensors: charnn's parameters under the names and layouts of PyTorch's
modules, so that a model exported by charnn loads into

    model = nn.ModuleDict({"rnn": nn.GRU(K, m, num_layers=L),     # or nn.LSTM, or
                           "out": nn.Linear(m, K)})                # nn.RNN(K, m) (tanh)
    model.load_state_dict(tensors)           # after taking out start_state (below)

with the character read as a one-hot vector of K. The mapping is the torch backend's
(backends/pytorch.py, CharNet), written here without importing PyTorch:

    charnn      exported name           shape         note
    U           rnn.weight_ih_l0        (m, K)        vanilla RNN: h = tanh(W h + U x + b)
    W           rnn.weight_hh_l0        (m, m)
    b           rnn.bias_ih_l0          (m,)
    -           rnn.bias_hh_l0          (m,)          zeros: charnn's RNN has one bias
    W_ih{l}     rnn.weight_ih_l{l}      (G*m, K|m)    LSTM (G = 4: i, f, g, o) and GRU (G = 3:
    W_hh{l}     rnn.weight_hh_l{l}      (G*m, m)      r, z, n): networks/ keeps PyTorch's gate
    b_ih{l}     rnn.bias_ih_l{l}        (G*m,)        order, so these are copies, not
    b_hh{l}     rnn.bias_hh_l{l}        (G*m,)        rearrangements
    V           out.weight              (K, m)        logits o = V h + c of the top layer's h
    c           out.bias                (K,)
    (state)     start_state             (L, S, m)     where charnn starts sampling and scoring
                                                      (the state training carried, or zeros):
                                                      [:, 0] is h0, and for the LSTM [:, 1] c0

Reading folds a nonzero rnn.bias_hh_l0 (weights trained in PyTorch) into b: the vanilla RNN
adds both biases to the same sum, so b = bias_ih + bias_hh is the same network.
"""

from __future__ import annotations

import numpy as np

from .networks import NETWORKS

START_STATE = "start_state"
_STACKED = (("W_ih", "weight_ih_l"), ("W_hh", "weight_hh_l"), ("b_ih", "bias_ih_l"),
            ("b_hh", "bias_hh_l"))
_RNN = {"U": "rnn.weight_ih_l0", "W": "rnn.weight_hh_l0", "b": "rnn.bias_ih_l0"}
_OUT = {"V": "out.weight", "c": "out.bias"}


def exported_names(network: str, layers: int) -> dict[str, str]:
    """charnn's parameter name -> its exported (PyTorch) name."""
    if network == "rnn":
        return {**_RNN, **_OUT}
    names = {f"{ours}{l}": f"rnn.{theirs}{l}" for l in range(layers) for ours, theirs in _STACKED}
    return {**names, **_OUT}


def to_exported(params, network: str, layers: int, start_state: np.ndarray) -> dict:
    """The tensors of an exported model: the parameters under PyTorch's names, the vanilla
    RNN's second bias as zeros, and the start state as (layers, S, m)."""
    names = exported_names(network, layers)
    tensors = {names[name]: np.ascontiguousarray(a) for name, a in params.items()}
    if network == "rnn":
        tensors["rnn.bias_hh_l0"] = np.zeros_like(params["b"])
    S = NETWORKS[network].STATE_VECTORS
    tensors[START_STATE] = np.ascontiguousarray(
        np.asarray(start_state, params.dtype).reshape(layers, S, params.hidden_size))
    return tensors


def from_exported(tensors: dict, network: str, layers: int) -> dict[str, np.ndarray]:
    """charnn's parameters from an exported model's tensors (checked by the caller)."""
    params = {ours: tensors[theirs] for ours, theirs in exported_names(network, layers).items()}
    if network == "rnn":
        bias_hh = tensors["rnn.bias_hh_l0"]
        if np.any(bias_hh):
            params["b"] = params["b"] + bias_hh
    # in networks/' order, as every other path holds them
    order = NETWORKS[network].param_shapes(1, 1, layers)
    return {name: params[name] for name in order}


def expected_names(network: str, layers: int) -> set[str]:
    """Every tensor an exported model of this network holds."""
    names = set(exported_names(network, layers).values()) | {START_STATE}
    return names | ({"rnn.bias_hh_l0"} if network == "rnn" else set())
