"""Backends: the code that runs the math, behind one interface.

A backend is a module with the functions of the Backend protocol below and two tuples that
say what it runs: NETWORKS (names of charnn.networks) and DTYPES. The registry lists them
fastest first; a new backend is one module plus one line in BACKENDS.

    numpy      reference.py, the readable reference (the networks' math, a lane at a time)
    compiled   compiled/, the same functions compiled with numba for every network (RNN, LSTM,
               GRU), tested against reference.py
    torch      backends/pytorch.py, PyTorch's RNN modules on a CPU, a GPU (cuDNN) or several
               processes (torch.distributed); optional (pip install -e ".[torch]"), and last,
               so that 'auto' picks it only where nothing else runs: --device cuda or mps, or
               several processes (train.py)

A training run talks to its backend through a session (open_session): for the backends that
work on the trainer's numpy arrays in place it is a thin wrapper; the torch backend keeps the
parameters, optimiser state and lanes' states on its device between calls and copies them back
only when the trainer syncs (before it evaluates, samples, saves or keeps a best model).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import CharnnError
from .calls import NO_DROPOUT, Dropout, Optimiser, Windows

# name -> module, fastest first
BACKENDS = {"compiled": "charnn.backends.compiled", "numpy": "charnn.backends.reference",
            "torch": "charnn.backends.pytorch"}
# Backends that need an optional extra: the one-line hint when it is missing.
EXTRAS = {"torch": ('torch', 'pip install -e ".[torch]"')}


@runtime_checkable
class Backend(Protocol):
    """What the trainer, evaluation and sampling call; reference.py documents each function and
    is the reference every other backend must equal.

    train_updates takes the named objects of calls.py and applies one learning rate to every
    update of the call: the trainer ends a call wherever the learning-rate schedule changes it
    (schedule.py), so a backend never sees a schedule."""

    NETWORKS: tuple[str, ...]
    DTYPES: tuple[str, ...]

    def train_updates(self, params, optimiser: Optimiser, h: np.ndarray, windows: Windows,
                      dropout: Dropout = NO_DROPOUT) -> np.ndarray: ...

    def total_loss(self, params, data: np.ndarray, segments: np.ndarray,
                   h0: np.ndarray | None = None) -> tuple[float, int]: ...

    def advance(self, params, h: np.ndarray, inputs: np.ndarray) -> np.ndarray: ...

    def sample_indices(self, params, h: np.ndarray, x: int, uniforms: np.ndarray,
                       temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                       greedy: bool = False, stop_index: int = -1) -> np.ndarray: ...

    def loss_and_gradients(self, params, inputs: np.ndarray, targets: np.ndarray,
                           state: np.ndarray, masks=None): ...


class TrainingSession(Protocol):
    """What a training run holds while it trains (open_session): train_updates with the
    backend's arguments (calls.py), on the arrays the session was opened on; sync() brings those arrays
    up to date (a backend that keeps them elsewhere, such as on a GPU, copies them back);
    agree(stop, updates) -> (stop, updates) makes every process of a multi-process run take the
    same decision; close() lets go of the device and the processes."""

    def train_updates(self, params, optimiser: Optimiser, h: np.ndarray, windows: Windows,
                      dropout: Dropout = NO_DROPOUT) -> np.ndarray: ...
    def sync(self) -> None: ...
    def agree(self, stop: int, updates: int) -> tuple[int, int]: ...
    def close(self) -> None: ...


class HostSession:
    """The session of a backend that changes the trainer's numpy arrays in place: nothing to
    copy, one process."""

    def __init__(self, backend: ModuleType):
        self.train_updates = backend.train_updates

    def sync(self) -> None:
        pass

    def agree(self, stop: int, updates: int) -> tuple[int, int]:
        return stop, updates

    def close(self) -> None:
        pass


def open_session(backend: ModuleType, params, optimizer: str, opt_state: dict, h: np.ndarray,
                 device: str = "auto", dropout: Dropout = NO_DROPOUT) -> TrainingSession:
    """The backend's own session when it has one (on `device`, for the run's `dropout`: the
    choices it makes once), else a HostSession."""
    if hasattr(backend, "open_session"):
        return backend.open_session(params, optimizer, opt_state, h, device=device,
                                    dropout=dropout)
    return HostSession(backend)


def import_backend(name: str) -> ModuleType:
    """The module of backend `name`; a CharnnError naming the extra to install when the
    backend needs a package that is missing."""
    try:
        return importlib.import_module(BACKENDS[name])
    except ImportError as exc:
        if name in EXTRAS and exc.name == EXTRAS[name][0]:
            package, command = EXTRAS[name]
            raise CharnnError(f"--backend {name} needs {package}, which is not installed; "
                              f"install it with: {command}") from None
        raise


def _cell(network) -> str:
    """The cell of `network`: a Network, or a cell's name."""
    return network if isinstance(network, str) else network.cell


def resolve_backend(name: str, network="rnn", dtype: str = "float64") -> str:
    """The backend `name` stands for: itself, or for 'auto' the fastest one that runs
    `network` (a Network, or a cell's name) in `dtype`."""
    if name != "auto":
        return name
    network = _cell(network)
    for candidate in BACKENDS:
        try:
            backend = import_backend(candidate)
        except CharnnError:                              # an optional backend not installed
            continue
        if network in backend.NETWORKS and np.dtype(dtype).name in backend.DTYPES:
            return candidate
    raise CharnnError(f"no backend runs {network} in {dtype}")


def training_jobs(batch_size: int) -> tuple[str, ...]:
    """What a training run needs compiled: its training kernel (one lane or a batch), the
    evaluation (the first update's loss, the held-out text) and sampling."""
    return ("train-one" if batch_size == 1 else "train-batch", "evaluate", "sample")


def ready_backend(name: str, network, dtype: str, jobs) -> tuple[str, str]:
    """(backend, why) for a short job: for 'auto', the fastest backend whose kernels for
    `jobs` are ready on this machine, so that sampling or scoring a short text never waits
    for a compile the numpy reference does not need (a backend named explicitly is kept,
    and compiles what it must)."""
    if name != "auto":
        return name, name
    fastest = resolve_backend(name, network, dtype)
    module = import_backend(fastest)
    if hasattr(module, "is_compiled") and not module.is_compiled(network, jobs, dtype):
        return "numpy", (f"numpy (auto: the {fastest} kernels for this network in {dtype} are "
                         "not compiled on this machine yet, and the numpy reference does "
                         "this job at once; a training run compiles them, or give "
                         f"--backend {fastest})")
    return fastest, f"{fastest} (auto)"


def get_backend(name: str, announce=None, dtype: str = "float64",
                network="rnn", jobs=None) -> ModuleType:
    """The backend module `name` ('auto': the fastest that can) for `network` (a Network, or
    a cell's name for one layer) in `dtype`; the compiled one is built on first use on a
    machine for `jobs` (default: all of them; compiled.cache lists them), and `announce` is
    told so before it starts."""
    name = resolve_backend(name, network, dtype)
    if name not in BACKENDS:
        raise CharnnError(f"--backend {name!r} is unknown; choose auto, "
                          f"{' or '.join(BACKENDS)}")
    module = import_backend(name)
    cell = _cell(network)
    if cell not in module.NETWORKS:
        runs = [b for b in BACKENDS if b not in EXTRAS and cell in import_backend(b).NETWORKS]
        raise CharnnError(f"--backend {name} has no {cell} yet; use --backend "
                          f"{' or '.join(runs) or 'another'}")
    if np.dtype(dtype).name not in module.DTYPES:
        raise CharnnError(f"--backend {name} does not run {dtype}; use "
                          f"{' or '.join(module.DTYPES)}")
    if hasattr(module, "ensure_compiled"):
        module.ensure_compiled(announce or (lambda message: None), dtypes=(np.dtype(dtype),),
                               networks=(network,), **({} if jobs is None else {"jobs": jobs}))
    return module
