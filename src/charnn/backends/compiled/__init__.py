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
    rnn.py         the vanilla RNN (model.py): training, loss, evaluation, sampling
    cells.py       what a cell provides the stack, and the dispatch to its kernels
    lstm.py        the LSTM cell (networks/lstm.py): one step of one layer, forward, backward
    gru.py         the GRU cell (networks/gru.py), the same
    mlstm.py       the multiplicative LSTM cell (networks/mlstm.py), the same
    stack.py       what the stacked networks share: layers over time, the output layer,
                   dropout, the batch loop over lane groups, evaluation and sampling

A cell is registered in STACKED_CELLS below: its name (as charnn.networks.CELLS has it) and its
file.
"""

from __future__ import annotations

import numpy as np

from . import cache  # noqa: F401  (first: the cache folder's setting precedes numba's import)
from ...networks import Network
from ..calls import NO_DROPOUT, Dropout, Optimiser, Windows
from . import gru, lstm, mlstm, rnn, stack
from .cache import ensure_compiled, is_compiled
from .lanes import lane_groups

# The cells the stack runs: name -> the file of its kernels.
STACKED_CELLS = {"lstm": lstm, "gru": gru, "mlstm": mlstm}
# What this backend runs (see backends/__init__.py).
NETWORKS = ("rnn",) + tuple(STACKED_CELLS)
DTYPES = ("float64", "float32")


class _Stacked:
    """stack.py's functions for one cell, called as rnn.py's are."""

    def __init__(self, cell_module):
        self.cell_module = cell_module

    def __getattr__(self, name):
        function = getattr(stack, name)
        return lambda *args: function(self.cell_module, *args)


def _kernels(params):
    """The kernels for these parameters' network: the stack's, for its cell, or the vanilla
    RNN's own."""
    network = Network.of_params(params)
    return _Stacked(STACKED_CELLS[network.cell]) if network.stacked else rnn


def train_updates(params, optimiser: Optimiser, h: np.ndarray, windows: Windows,
                  dropout: Dropout = NO_DROPOUT) -> np.ndarray:
    """reference.train_updates, compiled: the updates of `windows` in one call, in place. (The
    vanilla RNN has one layer, so no dropout, as in the reference.)"""
    kernels = _kernels(params)
    if kernels is rnn:
        return rnn.train_updates(params, optimiser, h, windows)
    return kernels.train_updates(params, optimiser, h, windows, dropout)


def loss_and_gradients(params, inputs: np.ndarray, targets: np.ndarray, h_prev: np.ndarray,
                       masks=None):
    """The network's loss_and_gradients over one sequence, compiled: (loss, grads, h_last);
    h_prev (m,) for the vanilla RNN (model.loss_and_gradients), a state (layers, S, m) and
    the dropout masks (or None) for a stacked network (networks/stack.py)."""
    kernels = _kernels(params)
    if kernels is rnn:
        return rnn.loss_and_gradients(params, inputs, targets, h_prev)
    return kernels.loss_and_gradients(params, inputs, targets, h_prev, masks)


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
           "loss_and_gradients", "sample_indices", "total_loss", "train_updates"]
