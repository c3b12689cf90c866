"""How the text is cut into training windows, lanes and epochs, and what is held out.

The encoded text is split into *segments*: spans data[start:end] within which the hidden
state is carried, and at whose start it is reset. Each segment is walked in windows of
seq_length inputs (X = data[s:s+L], Y = data[s+1:s+L+1], s += seq_length), so no window
crosses a segment's end.

- sequential (the assignment): one segment, the whole training text, walked by full windows
  only, so an epoch is floor((N - tau - 1) / tau) + 1 updates and h resets at its start.
  With B lanes the text is cut into B contiguous streams, one per lane.
- shuffled: the text is cut into chunks of chunk_length; each epoch visits them in a new
  random order, the last window of a chunk may be shorter.
- records: each record is a segment of its own, framed by END_OF_RECORD on both sides so that
  the model learns to start a record and to end it.

Nothing here makes a Python object per segment or per window: segments are (S, 2) arrays,
and laying millions of them out in lanes runs in a compiled loop (numba, loaded only then).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .corpus import Corpus
from .errors import CharnnError, SettingError, setting

# Above this many segments the lane assignment and the schedule's filling run compiled.
COMPILE_ABOVE = 4096


@dataclass
class Schedule:
    """One epoch: update u trains lane l on the window at starts[u, l] of length lengths[u, l]."""

    starts: np.ndarray    # (updates, B) int64
    lengths: np.ndarray   # (updates, B) int32, 0 = the lane sits the update out
    resets: np.ndarray    # (updates, B) uint8, 1 = zero the lane's h before the window

    def __len__(self) -> int:
        return self.starts.shape[0]


@dataclass(eq=False)
class Dataset:
    data: np.ndarray          # the encoded text (uint8 when K <= 256, else int32)
    train: np.ndarray         # (S, 2) int64 training segments [start, end)
    val: np.ndarray           # (S', 2) int64 held-out segments, possibly empty
    full_windows_only: bool   # the assignment's pointer walk drops a short last window

    @cached_property
    def val_chars(self) -> int:
        return int((self.val[:, 1] - self.val[:, 0]).sum()) if len(self.val) else 0

    def val_prefix(self, max_chars: int) -> np.ndarray:
        """The held-out segments cut to their first `max_chars` characters (in the order of
        `val`; the last segment cut short, one left under 2 characters dropped), for an
        evaluation whose cost is bounded whatever the size of the held-out part."""
        if max_chars >= self.val_chars:
            return self.val
        lengths = self.val[:, 1] - self.val[:, 0]
        n = int(np.searchsorted(np.cumsum(lengths), max_chars, "left")) + 1
        out = np.array(self.val[:n], dtype=np.int64)
        out[-1, 1] = out[-1, 0] + max_chars - int(lengths[:n - 1].sum())
        return out if out[-1, 1] - out[-1, 0] >= 2 else out[:-1]


def _spans(edges) -> np.ndarray:
    return np.array(edges, dtype=np.int64).reshape(-1, 2)


def build_dataset(corpus: Corpus, config: TrainConfig) -> Dataset:
    """Split the encoded corpus into training and held-out segments.

    The held-out part is the tail of the text (sequential order), one contiguous piece starting
    at a random chunk boundary (shuffled order), or the last / randomly chosen records.
    """
    tau, rng = config.seq_length, np.random.default_rng([config.seed, 7919])
    B = config.batch_size
    if corpus.records is not None:
        data, segments = corpus.data, corpus.records
        R = len(segments)
        n_val = int(round(config.val_frac * R))
        if config.val_frac > 0 and (n_val < 1 or n_val >= R):
            raise SettingError(f"{setting('val_frac')} {config.val_frac} leaves no records for "
                               f"validation or for training out of {R}; give a fraction that "
                               "does")
        if config.order == "shuffled":
            held = np.zeros(R, bool)
            held[rng.choice(R, n_val, replace=False)] = True
            train, val = segments[~held], segments[held]
        else:
            train, val = segments[:R - n_val], segments[R - n_val:]
        if B > len(train):
            raise SettingError(f"{setting('batch_size')} {B} is more than the {len(train):,} "
                               f"training records; give {setting('batch_size')} {len(train)} "
                               "or less")
        return Dataset(data, train, val, full_windows_only=False)

    data = corpus.data
    N = len(data)
    n_val = int(round(config.val_frac * N))
    if config.order == "sequential":
        train_end = N - n_val
        if train_end < tau + 1:
            raise SettingError(f"{corpus.name} has {train_end} training characters, fewer than "
                               f"{setting('seq_length')} + 1 = {tau + 1}; give a longer text or "
                               f"a shorter {setting('seq_length')}")
        if n_val and n_val < 2:
            raise SettingError(f"{setting('val_frac')} holds out fewer than 2 characters; give a "
                               "larger fraction")
        val = _spans([(train_end, N)] if n_val else [])
        return Dataset(data, _spans([(0, train_end)]), val, full_windows_only=True)

    chunk = config.chunk_length
    if N < 2 or (n_val and N - n_val < 2):
        raise CharnnError(f"{corpus.name} is too short to train on; give a longer text")
    if n_val:
        first_chunk = int(rng.integers(0, max(1, (N - n_val) // chunk + 1)))
        v0 = min(first_chunk * chunk, N - n_val)
        val, rest = _spans([(v0, v0 + n_val)]), [(0, v0), (v0 + n_val, N)]
    else:
        val, rest = _spans([]), [(0, N)]
    pieces = []
    for start, end in rest:
        s = np.arange(start, end, chunk, dtype=np.int64)
        e = np.minimum(s + chunk, end)
        pieces.append(np.stack([s, e], axis=1)[e - s >= 2])
    chunks = np.concatenate(pieces)
    if B > len(chunks):
        raise SettingError(f"{setting('batch_size')} {B} is more than the {len(chunks):,} "
                           f"training chunks of {setting('chunk_length')} {chunk}; give "
                           f"{setting('batch_size')} {len(chunks)} or less, or a shorter "
                           f"{setting('chunk_length')}")
    return Dataset(data, chunks, val, full_windows_only=False)


# -- laying an epoch's windows out in lanes -------------------------------------------------
#
# Each next segment goes to the lane with the fewest windows so far, the lowest lane on ties
# (for contiguous streams that is exactly one stream per lane); records in sequential order
# instead give lane l the l-th contiguous share of the records, so each lane reads in order.

def _windows(starts: np.ndarray, ends: np.ndarray, tau: int, full_only: bool) -> np.ndarray:
    """Windows per segment: starts s, s + tau, ... up to end - tau - 1 (full windows only)
    or end - 2 (the last window may be shorter), as in the segments' walk."""
    last = ends - (tau + 1 if full_only else 2)
    return np.where(last >= starts, (last - starts) // tau + 1, 0)


def _greedy_lanes(seg_starts, seg_ends, order, tau, full_only, B, lanes, load):
    """Segment order[i] (i when order is empty) goes to the lane with the fewest windows so
    far, the lowest lane on ties: lanes[i] = that lane (-1: no window), load[l] = windows.

    A binary heap of lanes ordered by (load, lane), so the top is np.argmin(load); written in
    the subset of Python that numba compiles."""
    heap = np.arange(B)
    for i in range(len(lanes)):
        j = order[i] if len(order) else i
        last = seg_ends[j] - (tau + 1 if full_only else 2)
        w = (last - seg_starts[j]) // tau + 1 if last >= seg_starts[j] else 0
        if w == 0:
            lanes[i] = -1
            continue
        top = heap[0]
        lanes[i] = top
        load[top] += w
        pos = 0                                 # sift the top lane down to its place
        while True:
            child = 2 * pos + 1
            if child >= B:
                break
            if child + 1 < B:
                a, b = heap[child], heap[child + 1]
                if load[b] < load[a] or (load[b] == load[a] and b < a):
                    child += 1
            c = heap[child]
            if load[c] < load[top] or (load[c] == load[top] and c < top):
                heap[pos] = c
                pos = child
            else:
                break
        heap[pos] = top


def _fill(seg_starts, seg_ends, order, tau, full_only, lanes, B, starts, lengths, resets):
    """Write every segment's windows into its lane's next rows (segment order[i], or i when
    order is empty, in lane lanes[i]; -1: none)."""
    row = np.zeros(B, np.int64)
    for i in range(len(lanes)):
        lane = lanes[i]
        if lane < 0:
            continue
        j = order[i] if len(order) else i
        s, end = seg_starts[j], seg_ends[j]
        last = end - (tau + 1 if full_only else 2)
        if last < s:
            continue
        w = (last - s) // tau + 1
        r = row[lane]
        resets[r, lane] = 1
        for k in range(w):
            starts[r + k, lane] = s + k * tau
            lengths[r + k, lane] = min(tau, end - 1 - (s + k * tau))
        row[lane] = r + w


_compiled = {}


def _run(function, size: int, *args):
    """function(*args), compiled by numba when `size` (segments or windows) is large."""
    if size <= COMPILE_ABOVE:
        return function(*args)
    if function.__name__ not in _compiled:
        from . import paths
        os.environ.setdefault("NUMBA_CACHE_DIR", str(paths.cache_dir() / "numba"))
        import numba
        if not numba.config.CACHE_DIR:   # numba was imported before charnn and missed the setting
            numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
        _compiled[function.__name__] = numba.njit(cache=True, nogil=True)(function)
        marker = _compile_marker(function)
        if not marker.exists():                          # a compile nobody waits for unawares
            print(f"charnn: compiling the data layout's {function.__name__} once for this "
                  "machine (a few seconds)", file=sys.stderr, flush=True)
            result = _compiled[function.__name__](*args)
            try:
                marker.write_text("compiled\n")
            except OSError:
                pass                                     # a read-only cache only costs time
            return result
    return _compiled[function.__name__](*args)


def _compile_marker(function) -> Path:
    """The file that says `function` is compiled for this numba, this source and this CPU."""
    import hashlib

    import numba

    from .paths import compile_target
    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return Path(numba.config.CACHE_DIR) / (f"charnn-data-{function.__name__}-{numba.__version__}"
                                           f"-{source}-{compile_target()}.ok")


@dataclass
class _Layout:
    seg_starts: np.ndarray       # the segments, in the epoch's order when `order` is empty,
    seg_ends: np.ndarray         # else segment order[i] is the i-th
    order: np.ndarray
    lanes: np.ndarray            # (S,) the lane of each (in the epoch's order); -1: none
                                 # (a segment without a window is skipped wherever it is)
    load: np.ndarray             # (B,) windows per lane
    streams: bool                # one segment per lane (contiguous streams)


def _layout(dataset: Dataset, config: TrainConfig, epoch: int) -> _Layout:
    B, tau, full = config.batch_size, config.seq_length, dataset.full_windows_only
    seg_starts, seg_ends = dataset.train[:, 0], dataset.train[:, 1]
    order = np.zeros(0, np.int64)
    if config.order == "sequential" and full:
        if B > 1:
            # B contiguous streams; each stream's last target is the next stream's first input.
            start, end = int(seg_starts[0]), int(seg_ends[0])
            length = (end - start) // B
            if length < tau + 1:
                raise SettingError(f"{setting('batch_size')} {B} cuts the text into streams of "
                                   f"{length} characters, shorter than {setting('seq_length')} "
                                   "+ 1; give a smaller batch or a longer text")
            seg_starts = start + length * np.arange(B, dtype=np.int64)
            seg_ends = np.minimum(seg_starts + length + 1, end)
        w = _windows(seg_starts, seg_ends, tau, full)
        lanes = np.where(w > 0, np.arange(len(w)), -1).astype(np.int32)
        load = np.zeros(B, np.int64)
        load[:len(w)] = w                 # segment l (at least one window each) to lane l
        return _Layout(seg_starts, seg_ends, order, lanes, load, streams=True)
    S = len(seg_starts)
    lanes, load = np.empty(S, np.int32), np.zeros(B, np.int64)
    if config.order == "shuffled":
        order = np.random.default_rng([config.seed, epoch]).permutation(S)
        _run(_greedy_lanes, S, seg_starts, seg_ends, order, tau, full, B, lanes, load)
    else:
        # records in order: lane l gets the l-th contiguous share (np.array_split's sizes)
        sizes = np.full(B, S // B, np.int64)
        sizes[:S % B] += 1
        lanes = np.repeat(np.arange(B, dtype=np.int32), sizes)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        block = 1 << 20                   # windows counted a block of segments at a time
        for lane in range(B):
            for a in range(int(bounds[lane]), int(bounds[lane + 1]), block):
                b = min(a + block, int(bounds[lane + 1]))
                load[lane] += int(_windows(seg_starts[a:b], seg_ends[a:b], tau, full).sum())
    return _Layout(seg_starts, seg_ends, order, lanes, load, streams=False)


def epoch_updates(dataset: Dataset, config: TrainConfig, epoch: int = 1) -> int:
    """The number of updates of epoch `epoch` (len(epoch_schedule(...))), without building
    the schedule."""
    updates = int(_layout(dataset, config, epoch).load.max())
    if updates == 0:
        raise CharnnError("the training text gives no window to train on; give a longer text")
    return updates


def epoch_schedule(dataset: Dataset, config: TrainConfig, epoch: int) -> Schedule:
    """The windows of one epoch (epoch counts from 1), laid out in lanes.

    Shuffled order draws the epoch's chunk order from (seed, epoch), so a resumed run
    rebuilds the same schedule without storing it.
    """
    B, tau = config.batch_size, config.seq_length
    lay = _layout(dataset, config, epoch)
    updates = int(lay.load.max())
    if updates == 0:
        raise CharnnError("the training text gives no window to train on; give a longer text")
    sched = Schedule(starts=np.zeros((updates, B), np.int64),
                     lengths=np.zeros((updates, B), np.int32),
                     resets=np.zeros((updates, B), np.uint8))
    if lay.streams:
        # few, long segments: numpy, a block of windows at a time
        block = 1 << 20
        for lane in range(len(lay.seg_starts)):
            if lay.lanes[lane] < 0:
                continue
            s0, end, n = int(lay.seg_starts[lane]), int(lay.seg_ends[lane]), int(lay.load[lane])
            sched.resets[0, lane] = 1
            for r in range(0, n, block):
                starts = s0 + tau * np.arange(r, min(r + block, n), dtype=np.int64)
                sched.starts[r:r + len(starts), lane] = starts
                sched.lengths[r:r + len(starts), lane] = np.minimum(tau, end - 1 - starts)
        return sched
    _run(_fill, len(lay.lanes) + int(lay.load.sum()), lay.seg_starts, lay.seg_ends, lay.order,
         tau, dataset.full_windows_only, lay.lanes, B, sched.starts, sched.lengths, sched.resets)
    return sched
