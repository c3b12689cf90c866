"""The compiled kernels' disk cache: where numba keeps them, and compiling what a command
needs, once per machine, announced and counted (a cold compile takes seconds to a minute).

This module is the package's first import (see __init__.py): it sets NUMBA_CACHE_DIR before
numba is imported by any kernel file, so the kernels are cached in charnn's own folder.

The kernels come in groups, one per (family, job, dtype): the vanilla RNN's kernels and the
stack's compiled for each cell (LSTM, GRU, mLSTM), each for sampling, evaluation,
one-lane training, batched training and gradients. A command compiles only the groups it
runs (a run of the vanilla RNN at batch 1 never waits for the GRU's batched kernels), and
is_compiled tells whether a group is ready without compiling it, so that a short job can
take the numpy reference instead of waiting.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ... import optim, paths
from ...networks import CELLS, Network
from ..calls import Dropout, Optimiser, Windows

os.environ.setdefault("NUMBA_CACHE_DIR", str(paths.cache_dir() / "numba"))

import numba  # noqa: E402  (must follow the cache folder's setting)

if not numba.config.CACHE_DIR:     # numba was imported before charnn and missed the setting
    numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]

from numba.core.caching import UserProvidedCacheLocator  # noqa: E402

# What a command may need compiled.
JOBS = ("sample", "evaluate", "train-one", "train-batch", "gradients")


def _sources() -> list[Path]:
    """Every source file of this package, in a fixed order."""
    return sorted(Path(__file__).resolve().parent.glob("*.py"))


def _sources_key() -> str:
    """A digest of every source file's path and contents."""
    digest = hashlib.sha256()
    for source in _sources():
        digest.update(str(source).encode() + source.read_bytes())
    return digest.hexdigest()[:16]


def _marker(family: str, job: str, dtype) -> Path:
    # numba's cache is keyed by the source file's path as well as its contents, so a second
    # installation of the same code compiles again: the marker names every file's path and
    # contents, so an edit anywhere in the package announces the compilation again.
    folder = Path(numba.config.CACHE_DIR)
    return folder / (f"charnn-{numba.__version__}-{_sources_key()}-{paths.compile_target()}-"
                     f"{family}-{job}-{np.dtype(dtype).name}.ok")


def _forget_stale_kernels() -> None:
    """numba checks a cached kernel against its own file only, not against the files of the
    kernels it calls (a product in products.py, an exp in numerics.py): after an edit of one
    file the others' cached kernels would still load, with the old code inside. So when the
    package's sources differ from those last compiled from this folder, its numba index files
    are removed and every kernel compiles afresh."""
    folder = Path(numba.config.CACHE_DIR) / UserProvidedCacheLocator.get_suitable_cache_subpath(
        str(_sources()[0]))
    stamp = folder / "charnn-sources"
    key = _sources_key()
    try:
        if stamp.read_text() == key:
            return
    except OSError:
        pass
    try:
        for index in folder.glob("*.nbi"):
            index.unlink(missing_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(key)
    except OSError:
        pass                                          # a read-only cache only costs time


_forget_stale_kernels()


# -- what each group calls, on tiny inputs, so that numba compiles (or loads) it --------------

def family_of(network) -> str:
    """The family of kernels that runs `network` (a Network, or a cell's name for a network of
    one layer): the cell's own one-layer kernels where it has them (named after the cell),
    else the stack compiled for its cell (numba compiles the stack once per cell)."""
    from . import ONE_LAYER
    cell, layers = (network, 1) if isinstance(network, str) else (network.cell, network.layers)
    if cell in ONE_LAYER:
        return cell if layers == 1 else f"{cell}-stack"
    return cell


def _family_for(network, job: str) -> str:
    """The family whose kernels do `job` for `network`: its family_of, except that a cell's own
    one-layer kernels drop nothing, so a network of them that drops out on its output trains
    (and has its gradients) on the stack's (compiled/__init__.py's _kernels)."""
    from . import ONE_LAYER
    family = family_of(network)
    if job in ("train-one", "train-batch", "gradients") and family in ONE_LAYER and \
            getattr(network, "output_dropout", 0.0) > 0:
        return f"{family}-stack"
    return family


def _example(family_name: str) -> Network:
    """One tiny network of a family: one layer for a cell's own kernels, two for the stack's
    (the kernels between layers compile too)."""
    cell = family_name.removesuffix("-stack")
    network = Network(cell, 1, 5, 4)
    return network if family_of(network) == family_name else Network(cell, 2, 5, 4)


def _steps(family: str, job: str, dtype) -> list[Callable[[], None]]:
    """The calls that compile group (family, job, dtype), one top-level kernel each (so that
    progress can be counted); texts as int32 and as uint8, which share one compiled version
    (lanes._text)."""
    from . import advance, loss_and_gradients, sample_indices, total_loss, train_updates
    rng = np.random.default_rng(0)
    network = _example(family)
    params, state = network.initial_params(0.1, rng, dtype), network.zero_state(dtype)
    data = rng.integers(0, 4, 20).astype(np.int32)
    u = np.full(3, 0.5)

    def train(lanes):
        # the optimiser is a run-time argument: one call compiles every rule
        h = np.zeros((lanes,) + state.shape, dtype)
        opt_state = optim.initial_state("adagrad", params)
        train_updates(params.copy(), Optimiser("adagrad", opt_state, 0, 0.1, 5.0), h,
                      Windows(data, np.zeros((2, lanes), np.int64),
                              np.full((2, lanes), 3, np.int32), np.zeros((2, lanes), np.uint8),
                              0, 2), Dropout(0.1 if network.layers > 1 else 0.0))

    if job == "sample":
        return [lambda: advance(params, state, data[:3]),
                lambda: sample_indices(params, state.copy(), 0, u, temperature=0.5, top_k=2,
                                       top_p=0.9)]
    if job == "evaluate":                             # several segments, and one (stack.py)
        return [lambda: total_loss(params, data, np.array([[0, 10], [10, 20]])),
                lambda: total_loss(params, data, np.array([[0, 20]]))]
    if job == "gradients":
        return [lambda: loss_and_gradients(params, data[:3], data[1:4], state)]
    if job == "train-one":
        return [lambda: train(1)]
    return [lambda: train(2)]


def is_compiled(network, jobs: Iterable[str], dtype) -> bool:
    """Whether every group of `jobs` for `network` (a Network, or a cell's name) in `dtype` is
    compiled on this machine."""
    return all(_marker(_family_for(network, job), job, dtype).exists() for job in jobs)


def _describe(family: str, job: str, dtypes: list[str]) -> str:
    network = _example(family)
    layers = " (stacked)" if network.layers > 1 and family != network.cell else ""
    return f"{network.title}{layers} {job} ({', '.join(dtypes)})"


def _compile_here(family: str, job: str, dtypes: Iterable[str]) -> None:
    """Compile (or load) group (family, job) for each dtype in this process, and mark it."""
    for dtype in dtypes:
        for step in _steps(family, job, dtype):
            step()
        marker = _marker(family, job, dtype)
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"numba {numba.__version__}\n")
        except OSError:
            pass                                      # a read-only cache only costs time


def _tiled(family: str, job: str) -> bool:
    """Whether the group's kernels run products.py's register tiles: all but the vanilla RNN's
    one-lane kernels (matrix-vector products)."""
    return family != "rnn" or job == "train-batch"


def _choose_blocking(announce) -> None:
    """Measure this CPU's products and record their blocking (tuning.py), once per CPU, before
    the first kernels that use it compile; announced, and counted when it takes a while."""
    from . import tuning
    if tuning.recorded() is not None or os.environ.get("CHARNN_BLOCKING") == "default":
        return
    announce("measuring this CPU's products to choose their blocking, once for this machine "
             "(about 20 s; `charnn tune` shows the choice)")
    record = tuning.measure()
    announce(f"  {tuning.describe(record)} ({record['seconds']:.0f} s)")


def forget_compiled() -> None:
    """Make every kernel compile again (after the blocking is measured again): numba's index
    files and the groups' markers are removed."""
    folder = Path(numba.config.CACHE_DIR)
    for pattern in ("*/*.nbi", "charnn-*.ok"):
        for path in folder.glob(pattern):
            path.unlink(missing_ok=True)


# A group's worker: compiles into the shared cache folder (numba's cache is safe across
# processes: each file is written aside, then renamed).
_WORKER = ("import sys; from charnn.backends.compiled import cache; "
           "cache._compile_here(sys.argv[1], sys.argv[2], sys.argv[3].split(','))")
# Rough compile costs, to start the longest groups first (measured: benchmarks/bench_compile.py).
_COST = {"train-batch": 3, "train-one": 2, "gradients": 2, "evaluate": 1, "sample": 1}


def ensure_compiled(announce=print, dtypes=(np.float64, np.float32),
                    networks: Iterable = tuple(CELLS), jobs: Iterable[str] = JOBS,
                    progress=None) -> None:
    """Compile the groups of `jobs` for `networks` in `dtypes` that this machine has not
    compiled for this numba, this source and this CPU. Announced through `announce` before it
    starts (what, and how many groups); counted group by group through progress(done, total,
    what, seconds) (default: a line through announce). The groups compile side by side in
    worker processes, one per core (numba compiles on one thread), longest first; this
    process then loads them from the cache in a fraction of a second each."""
    wanted: dict[tuple[str, str], list[str]] = {}
    for network in networks:
        for job in jobs:
            for dtype in dtypes:
                name = np.dtype(dtype).name
                family = _family_for(network, job)
                if not _marker(family, job, name).exists():
                    listed = wanted.setdefault((family, job), [])
                    if name not in listed:
                        listed.append(name)
    if not wanted:
        return
    if any(_tiled(family, job) for family, job in wanted):
        _choose_blocking(announce)
    # one worker a (family, job): a kernel's two dtypes share numba's index file
    units = sorted(wanted.items(), key=lambda unit: -_COST[unit[0][1]] * len(unit[1]))
    cores = min(len(units), os.cpu_count() or 1)
    announce(f"compiling the kernels this needs, once for this machine: "
             f"{'; '.join(_describe(f, j, d) for (f, j), d in units)} "
             f"({'in ' + str(cores) + ' processes' if cores > 1 else 'one process'}; later "
             "runs load them at once)")
    report = progress or (lambda done, total, what, seconds: announce(
        f"  compiled {done}/{total}: {what} ({seconds:.0f} s)"))
    started = time.perf_counter()
    if cores == 1:
        for done, ((family, job), names) in enumerate(units, start=1):
            _compile_here(family, job, names)
            report(done, len(units), _describe(family, job, names),
                   time.perf_counter() - started)
        return
    waiting, running, done = list(units), [], 0
    while waiting or running:
        while waiting and len(running) < cores:
            (family, job), names = unit = waiting.pop(0)
            running.append((unit, subprocess.Popen(
                [sys.executable, "-c", _WORKER, family, job, ",".join(names)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        time.sleep(0.05)
        for entry in [e for e in running if e[1].poll() is not None]:
            running.remove(entry)
            ((family, job), names), _ = entry
            done += 1
            report(done, len(units), _describe(family, job, names),
                   time.perf_counter() - started)
    # load what the workers compiled (or, where a worker failed, compile it here)
    for (family, job), names in units:
        _compile_here(family, job, names)
