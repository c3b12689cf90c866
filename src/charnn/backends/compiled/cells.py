"""How the compiled stack (stack.py) runs a cell: the three calls every cell file provides, and
the dispatch that picks a cell's own kernels while numba compiles the stack for it.

A cell file (lstm.py, gru.py, mlstm.py) holds its own subclass of Sizes, named after the cell
(LSTMCell: numba names compiled functions after their argument types, so two cells' classes
must not share a name), and one instance of it, CELL, plus what the stack's Python side needs:

    CELL            LSTMCell(inputs, states, stash, product, carried), in blocks of m:
                      inputs    rows of W_ih (the input's projections: 4 for the LSTM)
                      states    vectors in a layer's state (h first; the LSTM adds c)
                      stash     what one step keeps per lane for the backward
                      product   the per-step scratch AH per lane
                      carried   what one step of the backward keeps per lane for
                                backward_window (0: DAX is all it needs)
    OWN             the layer's parameters besides W_ih and b_ih, in the flat vectors' order
                    ("W_hh", "b_hh" for the LSTM); the stack hands the cell their offsets
    TRANSPOSED      those of OWN the forward reads transposed (the stack keeps the copies)

and three kernels, for a group of n lanes and one layer, on the flat parameters theta (off:
the layer's offsets, W_ih first, b_ih second, then OWN; offT: W_ih^T's copy first, then
TRANSPOSED's):

    forward_step(cell, theta, off, WT, offT, AXt, ST, ti, to, Z, AH, Ls, t)
        AXt (n, inputs m) = W_ih x_t + b_ih; ST (states, T, n, m) the layer's states: read
        ST[:, ti], write ST[:, to]; Z (T', n, stash m) the layer's stash, step t's part laid
        out as the cell likes (rows of stash m per lane, or blocks that numerics._blocks
        views across all steps); AH (n, product m) scratch. Rows whose window has ended
        (t >= Ls[r]) carry their state.
    backward_step(cell, theta, off, WT, offT, DHt, dS, Z, ST, t, DAXt, DC, Ls)
        DHt (n, m) dL/dh_t from above; dS (states, n, m) dL/dstate_t through step t+1 on
        entry, dL/dstate_{t-1} on return (no product at t = 0); write dL/d(W_ih x_t + b_ih)
        into DAXt (n, inputs m) and the cell's own record of step t into DC (T', n,
        carried m). Ended rows: zeros.
    backward_window(cell, theta, off, grad, ST, Z, DAX, DC, L)
        the gradients of OWN over the window's L steps, as products over all of them at
        once, written into grad at OWN's offsets: overwritten, not added to (the stack
        does not zero them first).

A cell is registered by listing its file in compiled/__init__.py. The dispatch below picks the
kernels of the module that defines the Cell class of its first argument while numba types the
stack, so each cell gets its own compiled stack (cached on disk like every kernel: the Cell
class is found again by name).
"""

from __future__ import annotations

import sys
from typing import NamedTuple

from numba.extending import overload

from .numerics import _FASTMATH

_OPTIONS = {"fastmath": _FASTMATH, "error_model": "numpy"}


class Sizes(NamedTuple):
    """A cell's sizes in blocks of m (above); each cell subclasses it as its own class."""
    inputs: int
    states: int
    stash: int
    product: int
    carried: int


def _module(cell_class):
    """The cell file that defines this Cell class."""
    return sys.modules[cell_class.__module__]


def _kernel(cell_type, name: str):
    return getattr(_module(cell_type.instance_class), name)


# Called from Python (NUMBA_DISABLE_JIT=1, to debug the kernels as Python code), the cell's
# own function runs; compiled, the overloads below put its kernel in place.

def forward_step(cell, theta, off, WT, offT, AXt, ST, ti, to, Z, AH, Ls, t):
    _module(type(cell)).forward_step(cell, theta, off, WT, offT, AXt, ST, ti, to, Z, AH, Ls, t)


def backward_step(cell, theta, off, WT, offT, DHt, dS, Z, ST, t, DAXt, DC, Ls):
    _module(type(cell)).backward_step(cell, theta, off, WT, offT, DHt, dS, Z, ST, t, DAXt, DC,
                                      Ls)


def backward_window(cell, theta, off, grad, ST, Z, DAX, DC, L):
    _module(type(cell)).backward_window(cell, theta, off, grad, ST, Z, DAX, DC, L)


@overload(forward_step, jit_options=_OPTIONS)
def _forward_step(cell, theta, off, WT, offT, AXt, ST, ti, to, Z, AH, Ls, t):
    kernel = _kernel(cell, "forward_step")

    def run(cell, theta, off, WT, offT, AXt, ST, ti, to, Z, AH, Ls, t):
        kernel(cell, theta, off, WT, offT, AXt, ST, ti, to, Z, AH, Ls, t)
    return run


@overload(backward_step, jit_options=_OPTIONS)
def _backward_step(cell, theta, off, WT, offT, DHt, dS, Z, ST, t, DAXt, DC, Ls):
    kernel = _kernel(cell, "backward_step")

    def run(cell, theta, off, WT, offT, DHt, dS, Z, ST, t, DAXt, DC, Ls):
        kernel(cell, theta, off, WT, offT, DHt, dS, Z, ST, t, DAXt, DC, Ls)
    return run


@overload(backward_window, jit_options=_OPTIONS)
def _backward_window(cell, theta, off, grad, ST, Z, DAX, DC, L):
    kernel = _kernel(cell, "backward_window")

    def run(cell, theta, off, grad, ST, Z, DAX, DC, L):
        kernel(cell, theta, off, grad, ST, Z, DAX, DC, L)
    return run
