"""What a training call hands a backend, as named objects: the optimiser's side, the slice of
the batch schedule, and the dropout. With the parameters and the lanes' states
(the arrays the call changes in place) they are every argument of train_updates:

    losses = backend.train_updates(params, Optimiser("adam", state, step, eta, clip), h,
                                   Windows(data, starts, lengths, resets, first, last),
                                   Dropout(0.2, seed))

The trainer builds them once per call; the backends read them by name down to the kernels,
which take plain arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Optimiser:
    """The optimiser's side of a call: its rule (optim.OPTIMIZERS), its state (optim.
    initial_state's arrays, changed in place), the updates it has made before the call, the
    learning rate of every update of the call (the trainer ends a call where the schedule
    changes it) and the elementwise clip of the gradient."""
    rule: str
    state: dict
    step: int
    eta: float
    clip: float


@dataclass
class Windows:
    """Updates first..last-1 of a batch schedule over the text `data` (character indices,
    uint8 or int32, a memmap too): update u reads, for each lane l, inputs data[s : s+L] and
    targets data[s+1 : s+L+1] with s = starts[u, l], L = lengths[u, l] (0: the lane sits the
    update out); resets[u, l] zeroes the lane's state before its window."""
    data: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    resets: np.ndarray
    first: int
    last: int

    @property
    def count(self) -> int:
        """The number of updates."""
        return max(self.last - self.first, 0)


@dataclass(frozen=True)
class Dropout:
    """Units dropped while training: between stacked layers with probability p, on the top
    layer's output (into the output layer) with probability `output`; the masks of update t
    (counted from 1) and lane l drawn from (seed, t, l) as networks/dropout.py says, so that
    any split of the updates into calls, and a resumed run, draws the same ones."""
    p: float = 0.0
    seed: int = 0
    output: float = 0.0


NO_DROPOUT = Dropout()
