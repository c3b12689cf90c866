"""An exported model's tensors: charnn's parameters under the names and layouts of PyTorch's
modules, so that a model exported by charnn loads into

    model = nn.ModuleDict({"rnn": nn.GRU(K, m, num_layers=L),     # or nn.LSTM, or
                           "out": nn.Linear(m, K)})                # nn.RNN(K, m) (tanh)
    model.load_state_dict(tensors)           # after taking out start_state (below)

with the character read as a one-hot vector of K. The mapping is the torch backend's
(backends/pytorch.py, CharNet), written here without importing PyTorch:

    charnn      exported name           shape         note
    W_ih{l}     rnn.weight_ih_l{l}      (m, K|m)      vanilla RNN: h = tanh(W_hh h + W_ih x +
    W_hh{l}     rnn.weight_hh_l{l}      (m, m)        b_ih), one bias
    b_ih{l}     rnn.bias_ih_l{l}        (m,)
    -           rnn.bias_hh_l{l}        (m,)          zeros: charnn's RNN cell has one bias
    W_ih{l}     rnn.weight_ih_l{l}      (G*m, K|m)    LSTM (G = 4: i, f, g, o) and GRU (G = 3:
    W_hh{l}     rnn.weight_hh_l{l}      (G*m, m)      r, z, n): networks/ keeps PyTorch's gate
    b_ih{l}     rnn.bias_ih_l{l}        (G*m,)        order, so these are copies, not
    b_hh{l}     rnn.bias_hh_l{l}        (G*m,)        rearrangements
    W_<x>{l}    rnn.weight_<x>_l{l}                   every stacked cell's weights and biases
    b_<x>{l}    rnn.bias_<x>_l{l}                     by that rule (the mLSTM's W_mh{l} is
                                                      rnn.weight_mh_l{l}: its module,
                                                      backends/torch_cells/mlstm.py, is named
                                                      so)
    V           out.weight              (K, m)        logits o = V h + c of the top layer's h
    c           out.bias                (K,)
    (state)     start_state             (L, S, m)     where charnn starts sampling and scoring
                                                      (the state training carried, or zeros):
                                                      [:, 0] is h0, and for the LSTM [:, 1] c0

Reading folds a nonzero rnn.bias_hh_l{l} (weights trained in PyTorch) into b_ih{l}: the
vanilla RNN adds both biases to the same sum, so b_ih = bias_ih + bias_hh is the same network.

The names, layers and shapes are the network spec's to say: nothing here reads them off the
arrays.
"""

from __future__ import annotations

import re
import numpy as np

from .networks import Network

START_STATE = "start_state"
_OUT = {"V": "out.weight", "c": "out.bias"}


# A bias PyTorch's module of a cell has and the cell has not -> the bias it adds to, per layer:
# nn.RNN has two biases where the vanilla RNN cell has one.
FOLDED = {"rnn": ("bias_hh", "b_ih")}


def torch_name(name: str) -> str:
    """PyTorch's name of a stacked layer's parameter in its recurrent module: W_ih0 ->
    weight_ih_l0, b_hh2 -> bias_hh_l2, W_mh1 -> weight_mh_l1."""
    kind, part, layer = re.fullmatch(r"([Wb])_([a-z]+)(\d+)", name).groups()
    return f"{'weight' if kind == 'W' else 'bias'}_{part}_l{layer}"


def _spec(network: Network | str, layers: int | None) -> Network:
    """A Network as it is, or the one a cell's name and its layers make."""
    if isinstance(network, Network):
        return network
    return Network(network, 1 if layers is None else layers)


def exported_names(network: Network | str, layers: int | None = None) -> dict[str, str]:
    """charnn's parameter name -> its exported (PyTorch) name, for a Network (or a cell's
    name and its layers)."""
    network = _spec(network, layers)
    names = {name: f"rnn.{torch_name(name)}" for name in _layer_names(network)}
    return {**names, **_OUT}


def _layer_names(network: Network) -> list[str]:
    """The stacked layers' parameter names (all but the output layer's), from the spec; a
    spec without a vocabulary gives them too."""
    return [name for name in Network(network.cell, network.layers, network.hidden,
                                     network.vocab or 1).param_names if name not in _OUT]


def folded_biases(network: Network) -> dict[str, str]:
    """The exported biases charnn's network lacks -> charnn's bias each is added to."""
    if network.cell not in FOLDED:
        return {}
    theirs, ours = FOLDED[network.cell]
    return {f"rnn.{theirs}_l{l}": f"{ours}{l}" for l in range(network.layers)}


def exported_shapes(network: Network) -> dict[str, tuple[int, ...]]:
    """Every tensor an exported model of this network holds -> its shape."""
    names, shapes = exported_names(network), network.param_shapes()
    out = {names[ours]: shape for ours, shape in shapes.items()}
    out.update({theirs: shapes[ours] for theirs, ours in folded_biases(network).items()})
    out[START_STATE] = network.layered_shape
    return out


def to_exported(params, network: Network, start_state: np.ndarray) -> dict:
    """The tensors of an exported model: the parameters under PyTorch's names, the biases
    charnn's network lacks as zeros, and the start state as (layers, S, m)."""
    names = exported_names(network)
    tensors = {names[name]: np.ascontiguousarray(a) for name, a in params.items()}
    for theirs, ours in folded_biases(network).items():
        tensors[theirs] = np.zeros_like(params[ours])
    tensors[START_STATE] = np.ascontiguousarray(
        np.asarray(start_state, params.dtype).reshape(network.layered_shape))
    return tensors


def from_exported(tensors: dict, network: Network) -> dict[str, np.ndarray]:
    """charnn's parameters from an exported model's tensors (checked by the caller), in the
    network's order, as every other path holds them."""
    params = {ours: tensors[theirs] for ours, theirs in exported_names(network).items()}
    for theirs, ours in folded_biases(network).items():
        if np.any(tensors[theirs]):
            params[ours] = params[ours] + tensors[theirs]
    return {name: params[name] for name in network.param_names}


def expected_names(network: Network) -> set[str]:
    """Every tensor an exported model of this network holds."""
    return set(exported_shapes(network))
