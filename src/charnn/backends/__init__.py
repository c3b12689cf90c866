"""Backends: the code that runs the math, behind one interface.

A backend is a module with the functions of the Backend protocol below and two tuples that
say what it runs: NETWORKS (names of charnn.networks) and DTYPES. The registry lists them
fastest first; a new backend is one module plus one line in BACKENDS.

    numpy      steps.py, the readable reference (model.py's math, a lane at a time)
    compiled   kernels.py, the same functions compiled with numba, tested against steps.py
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import CharnnError

# name -> module, fastest first
BACKENDS = {"compiled": "charnn.kernels", "numpy": "charnn.steps"}


@runtime_checkable
class Backend(Protocol):
    """What the trainer, evaluation and sampling call; steps.py documents each function and
    is the reference every other backend must equal.

    train_updates applies one learning rate, eta, to every update of the call: the trainer
    ends a call wherever the learning-rate schedule changes eta (schedule.py), so a backend
    never sees a schedule."""

    NETWORKS: tuple[str, ...]
    DTYPES: tuple[str, ...]

    def train_updates(self, params, optimizer: str, opt_state: dict, opt_step: int, eta: float,
                      clip: float, h: np.ndarray, data: np.ndarray, starts: np.ndarray,
                      lengths: np.ndarray, resets: np.ndarray, first: int,
                      last: int) -> np.ndarray: ...

    def total_loss(self, params, data: np.ndarray, segments: np.ndarray,
                   h0: np.ndarray | None = None) -> tuple[float, int]: ...

    def advance(self, params, h: np.ndarray, inputs: np.ndarray) -> np.ndarray: ...

    def sample_indices(self, params, h: np.ndarray, x: int, uniforms: np.ndarray,
                       temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                       greedy: bool = False, stop_index: int = -1) -> np.ndarray: ...

    def loss_and_gradients(self, params, inputs: np.ndarray, targets: np.ndarray,
                           h_prev: np.ndarray): ...


def resolve_backend(name: str, network: str = "rnn", dtype: str = "float64") -> str:
    """The backend `name` stands for: itself, or for 'auto' the fastest one that runs
    `network` in `dtype`."""
    if name != "auto":
        return name
    for candidate, module in BACKENDS.items():
        backend = importlib.import_module(module)
        if network in backend.NETWORKS and np.dtype(dtype).name in backend.DTYPES:
            return candidate
    raise CharnnError(f"no backend runs {network} in {dtype}")


def get_backend(name: str, announce=None, dtype: str = "float64",
                network: str = "rnn") -> ModuleType:
    """The backend module `name` ('auto': the fastest that can) for `network` in `dtype`; the
    compiled one is built for `dtype` on first use on a machine, and `announce` is told so
    before it starts."""
    name = resolve_backend(name, network, dtype)
    if name not in BACKENDS:
        raise CharnnError(f"--backend {name!r} is unknown; choose auto, "
                          f"{' or '.join(BACKENDS)}")
    module = importlib.import_module(BACKENDS[name])
    if network not in module.NETWORKS:
        runs = [b for b in BACKENDS if network in importlib.import_module(BACKENDS[b]).NETWORKS]
        raise CharnnError(f"--backend {name} has no {network} yet; use --backend "
                          f"{' or '.join(runs) or 'another'}")
    if np.dtype(dtype).name not in module.DTYPES:
        raise CharnnError(f"--backend {name} does not run {dtype}; use "
                          f"{' or '.join(module.DTYPES)}")
    if hasattr(module, "ensure_compiled"):
        module.ensure_compiled(announce or (lambda message: None), dtypes=(np.dtype(dtype),))
    return module
