"""What every network's kernels share about their inputs: the text as they read it (its bytes,
never a copy), the lanes' windows, how the lanes are grouped for the threads, and the checks
on the parameters' arrays.
"""

from __future__ import annotations

import numpy as np

from ...model import Params
from .numerics import _jit


@_jit
def _char(text, width, i):
    """Character i of the text as int32. The kernels get every text as its bytes (see _text):
    width 1 for a uint8 text, 4 for an int32 one (little-endian), so that numba compiles each
    kernel once, not once per dtype."""
    if width == 1:
        return np.int32(text[i])
    j = 4 * i
    return (np.int32(text[j]) | (np.int32(text[j + 1]) << 8) | (np.int32(text[j + 2]) << 16)
            | (np.int32(text[j + 3]) << 24))


@_jit
def _active_lanes(ln):
    """Lanes with at least one character in this update."""
    active = 0
    for lane in range(ln.shape[0]):
        if ln[lane] > 0:
            active += 1
    return active


@_jit
def _gather_windows(data, width, st, ln, win, wst):
    """win[wst[l]:wst[l]+L+1] = characters s..s+L of the text for each lane l with a window
    (s = st[l], L = ln[l]), as int32 (see _char)."""
    for lane in range(ln.shape[0]):
        L = ln[lane]
        if L > 0:
            s = st[lane]
            w = wst[lane]
            for t in range(L + 1):
                win[w + t] = _char(data, width, s + t)


def _check_params(params: Params) -> None:
    dtype = params.dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"parameters must be float32 or float64, not {dtype}")
    for name, a in params.items():
        if a.dtype != dtype or not a.flags.c_contiguous:
            raise ValueError(f"parameter {name} must be a C-contiguous {dtype} array")


_GROUP_LANES = 8
_MAX_GROUPS = 8


def _text(data) -> tuple[np.ndarray, int]:
    """Character indices as the kernels read them: (the bytes, the bytes per character), the
    bytes a one-dimensional, read-only uint8 view of the text's own memory when the text is a
    contiguous uint8 or int32 array (an np.memmap, a read-only one, included): no copy. Other
    integer types are converted to int32 first. One argument type for both dtypes, so numba
    compiles every kernel once (_char reads a character)."""
    a = np.asarray(data)
    if a.dtype != np.uint8 and a.dtype != np.int32:
        a = a.astype(np.int32)                        # native byte order
    a = np.ascontiguousarray(a.reshape(-1))
    if a.dtype == np.int32 and not np.little_endian:  # _char reads int32 little-endian
        a = a.astype("<i4")
    view = a.view(np.uint8)
    view.flags.writeable = False
    return view, a.itemsize


def lane_groups(lanes: int) -> int:
    """The number of lane groups the batched kernel splits `lanes` lanes into: each group has
    its own gradient buffers, and they are summed in group order, so the result depends on
    `lanes` alone, never on the number of threads that share the groups out.

    Groups of at least _GROUP_LANES = 8 lanes where there are enough (the register tiles are
    8 rows high on AVX-512), at least two groups (two cores busy from B = 2), a power of two
    (so 2, 4 or 8 threads share them evenly) and at most _MAX_GROUPS = 8: B < 32 gives 2
    groups, B < 64 gives 4, more gives 8. Measured on 2 cores (float32, m = 100 and 256)
    against one group per thread: as fast at B = 8 and 32 (within a few per cent), 4-15%
    faster at B = 128, where smaller groups' buffers fit the caches; 4 groups at B = 8 and
    16 at B = 128 were slower."""
    groups = 2
    while groups < _MAX_GROUPS and 2 * groups * _GROUP_LANES <= lanes:
        groups *= 2
    return max(1, min(groups, lanes))


def _windows_arrays(windows) -> tuple:
    """A calls.Windows as the training kernels take it: the text's bytes and width (_text),
    starts (int64), lengths (int32) and resets (uint8), contiguous, then first and last."""
    resets = np.ascontiguousarray(windows.resets)
    if resets.dtype == np.bool_:
        resets = resets.view(np.uint8)
    return (*_text(windows.data), np.ascontiguousarray(windows.starts, dtype=np.int64),
            np.ascontiguousarray(windows.lengths, dtype=np.int32),
            resets.astype(np.uint8, copy=False), int(windows.first), int(windows.last))


class WindowsArrays:
    """_windows_arrays for a training session's calls: a run's calls share the text and the
    epoch's schedule and differ in first and last only, so the arrays (and the longest
    window, which sizes the session's scratch) are made once per schedule."""

    def __init__(self):
        self.source, self.arrays, self.longest = None, None, 1

    def __call__(self, windows) -> tuple:
        """(_windows_arrays(windows) without first and last, the longest window of the
        whole schedule)."""
        source = (windows.data, windows.starts, windows.lengths, windows.resets)
        if self.source is None or any(a is not b for a, b in zip(source, self.source)):
            self.arrays = _windows_arrays(windows)[:-2]
            self.longest = max(int(np.max(windows.lengths, initial=1)), 1)
            self.source = source
        return self.arrays, self.longest

