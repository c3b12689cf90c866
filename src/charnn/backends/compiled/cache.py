"""The compiled kernels' disk cache: where numba keeps them, and compiling every kernel once
per machine (announced, since it takes a while).

This module is the package's first import (see __init__.py): it sets NUMBA_CACHE_DIR before
numba is imported by any kernel file, so the kernels are cached in charnn's own folder.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ... import optim, paths
from ...model import Params
from ...networks import NETWORKS

os.environ.setdefault("NUMBA_CACHE_DIR", str(paths.cache_dir() / "numba"))

import numba  # noqa: E402  (must follow the cache folder's setting)

if not numba.config.CACHE_DIR:     # numba was imported before charnn and missed the setting
    numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]

from numba.core.caching import UserProvidedCacheLocator  # noqa: E402


def _sources() -> list[Path]:
    """Every source file of this package, in a fixed order."""
    return sorted(Path(__file__).resolve().parent.glob("*.py"))


def _sources_key() -> str:
    """A digest of every source file's path and contents."""
    digest = hashlib.sha256()
    for source in _sources():
        digest.update(str(source).encode() + source.read_bytes())
    return digest.hexdigest()[:16]


def _marker(dtype) -> Path:
    # numba's cache is keyed by the source file's path as well as its contents, so a second
    # installation of the same code compiles again: the marker names every file's path and
    # contents, so an edit anywhere in the package announces the compilation again.
    folder = Path(numba.config.CACHE_DIR)
    return folder / f"charnn-kernels-{numba.__version__}-{_sources_key()}-{np.dtype(dtype).name}.ok"


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


def _exercise(dtype) -> None:
    """Call every kernel once on tiny inputs of `dtype`, so numba compiles (or loads) it;
    with the text as int32 and as uint8, which share one compiled version (see lanes._text)."""
    from . import advance, loss_and_gradients, sample_indices, total_loss, train_updates
    rng = np.random.default_rng(0)
    m, K = 5, 4
    params = Params.initial(m, K, 0.1, rng, dtype=dtype)
    data = rng.integers(0, K, 20).astype(np.int32)
    for text in (data, data.astype(np.uint8)):
        for optimizer in optim.OPTIMIZERS:
            for lanes in (1, 2):
                state = optim.initial_state(optimizer, params)
                h = np.zeros((lanes, m), dtype)
                starts = np.zeros((2, lanes), np.int64)
                lengths = np.full((2, lanes), 3, np.int32)
                resets = np.zeros((2, lanes), np.uint8)
                train_updates(params.copy(), optimizer, state, 0, 0.1, 5.0, h, text,
                              starts, lengths, resets, 0, 2)
        total_loss(params, text, np.array([[0, 10], [10, 20]]))
        advance(params, np.zeros(m, dtype), text[:3])
    loss_and_gradients(params, data[:3], data[1:4], np.zeros(m, dtype))
    u = np.full(3, 0.5)
    sample_indices(params, np.zeros(m, dtype), 0, u)
    sample_indices(params, np.zeros(m, dtype), 0, u, temperature=0.5, top_k=2, top_p=0.9)
    sample_indices(params, np.zeros(m, dtype), 0, u, greedy=True)
    for network in ("lstm", "gru"):                   # one set of kernels runs both
        stacked = Params(NETWORKS[network].initial_params(K, m, 2, 0.1, rng, dtype))
        h = np.zeros((2, 2, NETWORKS[network].STATE_VECTORS, m), dtype)
        for optimizer in optim.OPTIMIZERS:
            state = optim.initial_state(optimizer, stacked)
            train_updates(stacked.copy(), optimizer, state, 0, 0.1, 5.0, h, data,
                          np.zeros((1, 2), np.int64), np.full((1, 2), 3, np.int32),
                          np.zeros((1, 2), np.uint8), 0, 1, dropout=0.1)
        total_loss(stacked, data, np.array([[0, 10]]))
        advance(stacked, h[0], data[:3])
        sample_indices(stacked, h[0].copy(), 0, u, top_p=0.9)
        loss_and_gradients(stacked, data[:3], data[1:4], h[0])


def ensure_compiled(announce=print, dtypes=(np.float64, np.float32)) -> None:
    """Compile every kernel for `dtypes` unless this machine has done so for this numba and
    this source; says so once through `announce`, since it takes a while."""
    missing = [d for d in dtypes if not _marker(d).exists()]
    if not missing:
        return
    announce("compiling kernels, once per machine (about a minute)")
    for dtype in missing:
        _exercise(dtype)
        marker = _marker(dtype)
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"numba {numba.__version__}\n")
        except OSError:
            pass                                      # a read-only cache only costs time
