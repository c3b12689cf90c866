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

Which of the two namings a network has is its spec's to say (Network.stacked), as are its
layers and shapes: nothing here reads them off the arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .networks import Network

START_STATE = "start_state"
_OUT = {"V": "out.weight", "c": "out.bias"}


@dataclass(frozen=True)
class _Naming:
    """How one kind of network's parameters are named in PyTorch's module."""
    per_layer: tuple[tuple[str, str], ...] = ()  # (charnn's prefix, PyTorch's), + the layer
    fixed: dict[str, str] = field(default_factory=dict)  # charnn's name -> PyTorch's
    # a bias PyTorch's module has and charnn's network has not -> the bias it adds to
    folded: dict[str, str] = field(default_factory=dict)


# keyed by Network.stacked: the stacked cells keep PyTorch's names, the vanilla RNN the
# assignment's, with one bias where nn.RNN has two
_NAMINGS = {
    True: _Naming(per_layer=(("W_ih", "rnn.weight_ih_l"), ("W_hh", "rnn.weight_hh_l"),
                             ("b_ih", "rnn.bias_ih_l"), ("b_hh", "rnn.bias_hh_l"))),
    False: _Naming(fixed={"U": "rnn.weight_ih_l0", "W": "rnn.weight_hh_l0",
                          "b": "rnn.bias_ih_l0"},
                   folded={"rnn.bias_hh_l0": "b"}),
}


def _spec(network: Network | str, layers: int | None) -> Network:
    """A Network as it is, or the one a cell's name and its layers make."""
    if isinstance(network, Network):
        return network
    return Network(network, 1 if layers is None else layers)


def exported_names(network: Network | str, layers: int | None = None) -> dict[str, str]:
    """charnn's parameter name -> its exported (PyTorch) name, for a Network (or a cell's
    name and its layers)."""
    network = _spec(network, layers)
    naming = _NAMINGS[network.stacked]
    names = {f"{ours}{l}": f"{theirs}{l}" for l in range(network.layers)
             for ours, theirs in naming.per_layer}
    return {**names, **naming.fixed, **_OUT}


def folded_biases(network: Network) -> dict[str, str]:
    """The exported biases charnn's network lacks -> charnn's bias each is added to."""
    return dict(_NAMINGS[network.stacked].folded)


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
