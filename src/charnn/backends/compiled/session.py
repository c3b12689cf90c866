"""What the compiled training sessions share (stack.Session, rnn_one_layer.Session): the arrays
a session was opened on, checked at every call, and what a call would otherwise make again —
the windows' kernel arrays, the optimiser's constants, the scratch sized for the longest
window so far. backends.TrainingSession says what a session is for the trainer.
"""

from __future__ import annotations

import numpy as np

from ... import optim
from ..calls import Optimiser, Windows
from .lanes import WindowsArrays
from .optimisers import _OPT_CODE, _constants


class KernelSession:
    """The bookkeeping of a compiled session, opened on the trainer's params, optimiser state
    and lanes' states h; subclasses hold the kernels' scratch (self.scratch, made for windows
    of up to self.window characters; self.fresh until the first call has run)."""

    def __init__(self, params, rule: str, opt_state: dict, h: np.ndarray):
        if rule not in _OPT_CODE:
            raise ValueError(f"unknown optimizer {rule!r}")
        self.params, self.rule, self.opt_state, self.h = params, rule, opt_state, h
        self.betas = np.array([optim.ADAM_BETA1, optim.ADAM_BETA2])
        self.scratch, self.window, self.fresh = None, 0, True
        self._constants: dict = {}
        self._windows = WindowsArrays()

    def check(self, params, optimiser: Optimiser, h: np.ndarray) -> None:
        """A session trains the arrays it was opened on, with the rule it was opened for."""
        if params is not self.params or optimiser.state is not self.opt_state or \
                h is not self.h or optimiser.rule != self.rule:
            raise ValueError("a compiled training session trains the arrays it was opened on")

    def constants(self, dtype, optimiser: Optimiser) -> np.ndarray:
        """optimisers._constants for the call's learning rate and clip, kept while they hold."""
        key = (optimiser.eta, optimiser.clip)
        if key not in self._constants:
            self._constants = {key: _constants(dtype, optimiser.eta, optimiser.clip)}
        return self._constants[key]

    def windows(self, windows: Windows) -> tuple:
        """(the text's and schedule's kernel arrays, the longest window of the schedule)."""
        return self._windows(windows)

    def agree(self, stop: int, updates: int) -> tuple[int, int]:
        return stop, updates

    def close(self) -> None:
        self.sync()
        self.scratch = None

    def sync(self) -> None:
        pass
