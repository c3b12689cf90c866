"""The compiled backend: the functions of backends/reference.py in numba (nopython, cached on
disk), tested against the reference. Each function here takes the reference's arguments and
hands them to the kernels of the parameters' network.

    cache.py       where numba keeps the kernels; compiling the groups a command needs, once
                   per machine (imported first: it sets NUMBA_CACHE_DIR before any kernel
                   file imports numba)
    numerics.py    the jit settings, exp and tanh without a call per element, softmax rows,
                   numpy's pairwise sum
    products.py    dense products: loop kernels, register tiles (LLVM IR), _gemm
    optimisers.py  clipping and AdaGrad / RMSProp / Adam fused per element
    lanes.py       the text as the kernels read it, the lanes' windows, lane groups
    rnn_one_layer.py  the vanilla RNN of one layer (model.py): its own training, loss,
                   evaluation and sampling kernels
    rnn.py         the vanilla RNN cell (networks/rnn.py): one step of one layer, forward,
                   backward
    cells.py       what a cell provides the stack, and the dispatch to its kernels
    lstm.py        the LSTM cell (networks/lstm.py): one step of one layer, forward, backward
    gru.py         the GRU cell (networks/gru.py), the same
    mlstm.py       the multiplicative LSTM cell (networks/mlstm.py), the same
    stack.py       what the stacked networks share: layers over time, the output layer,
                   dropout, the batch loop over lane groups, evaluation and sampling

A cell is registered in CELLS below: its name (as charnn.networks.CELLS has it) and its file;
ONE_LAYER registers a cell's own kernels for one layer, where it has them.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from . import cache  # noqa: F401  (first: the cache folder's setting precedes numba's import)
from ...networks import Network
from ..calls import NO_DROPOUT, Dropout, Optimiser, Windows
from . import gru, lstm, mlstm, rnn, rnn_one_layer, stack
from .cache import ensure_compiled, is_compiled
from .lanes import lane_groups

# The cells the stack runs: name -> the file of its kernels.
CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru, "mlstm": mlstm}
# A cell's own kernels for networks of one layer, which the stack's cannot match (the file
# says why): name -> the module, with reference.py's functions.
ONE_LAYER = {"rnn": rnn_one_layer}
# What this backend runs (see backends/__init__.py).
NETWORKS = tuple(CELLS)
DTYPES = ("float64", "float32")


class _Stacked:
    """stack.py's functions for one cell, called as a one-layer module's are."""

    def __init__(self, cell_module):
        self.cell_module = cell_module

    def __getattr__(self, name):
        return partial(getattr(stack, name), self.cell_module)


def _kernels(params, stacked: bool = False):
    """The kernels for these parameters' network: the cell's own for one layer where it has
    them (and `stacked` does not ask for the stack's), else the stack's for its cell."""
    network = Network.of_params(params)
    if network.layers == 1 and network.cell in ONE_LAYER and not stacked:
        return ONE_LAYER[network.cell]
    return _Stacked(CELLS[network.cell])


def train_updates(params, optimiser: Optimiser, h: np.ndarray, windows: Windows,
                  dropout: Dropout = NO_DROPOUT) -> np.ndarray:
    """reference.train_updates, compiled: the updates of `windows` in one call, in place. (A
    cell's own one-layer kernels drop nothing: dropout on the top's output takes the stack's.)"""
    return _kernels(params, dropout.output > 0).train_updates(params, optimiser, h, windows,
                                                              dropout)


def open_session(params, optimizer: str, opt_state: dict, h: np.ndarray, device: str = "auto",
                 dropout: Dropout = NO_DROPOUT):
    """A training run's session (backends.TrainingSession): the stack's keeps the flat
    parameters, optimiser state and scratch from call to call (stack.Session); a cell's own
    one-layer kernels keep their scratch and train the trainer's arrays in place."""
    kernels = _kernels(params, dropout.output > 0)
    if isinstance(kernels, _Stacked):
        return stack.Session(kernels.cell_module, params, optimizer, opt_state, h)
    return kernels.Session(params, optimizer, opt_state, h)


def loss_and_gradients(params, inputs: np.ndarray, targets: np.ndarray, state: np.ndarray,
                       masks=None):
    """The network's loss_and_gradients over one sequence (networks/stack.py), compiled:
    (loss, grads, state_last) from a state (layers, S, m), with the dropout masks (or
    None)."""
    return _kernels(params, masks is not None).loss_and_gradients(params, inputs, targets,
                                                                  state, masks)


def total_loss(params, data: np.ndarray, segments: np.ndarray,
               h0: np.ndarray | None = None) -> tuple[float, int]:
    """reference.total_loss, compiled."""
    return _kernels(params).total_loss(params, data, segments, h0)


def advance(params, h: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """reference.advance, compiled."""
    return _kernels(params).advance(params, h, inputs)


def sample_indices(params, h: np.ndarray, x: int, uniforms: np.ndarray,
                   temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                   greedy: bool = False, stop_index: int = -1) -> np.ndarray:
    """reference.sample_indices, compiled."""
    return _kernels(params).sample_indices(params, h, x, uniforms, temperature, top_k, top_p,
                                           greedy, stop_index)


__all__ = ["DTYPES", "NETWORKS", "advance", "ensure_compiled", "is_compiled", "lane_groups",
           "loss_and_gradients", "open_session", "sample_indices", "total_loss", "train_updates"]
