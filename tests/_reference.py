"""The corpus and data code as it was before texts were encoded without Python objects per
character: the reference that the tests hold today's code to, array for array.

OldCorpus is the old Corpus (the text as a str, records as a list of strings); the functions
below it are the old data.py, unchanged but for the names of their imports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charnn.config import TrainConfig
from charnn.corpus import END_OF_RECORD, Vocabulary
from charnn.errors import CharnnError


@dataclass
class OldCorpus:
    name: str
    text: str
    vocab: Vocabulary
    records: list[str] | None = None

    def encoded(self) -> np.ndarray:
        return self.vocab.encode(self.text)


def old_corpus(text: str, records: bool = False, record_separator: str = "\n",
               name: str = "text") -> OldCorpus:
    """The old load_corpus, from a str."""
    if not records:
        return OldCorpus(name=name, text=text, vocab=Vocabulary.from_text(text))
    if END_OF_RECORD in text:
        raise CharnnError(f"{name} contains the character U+001E, which charnn uses to end "
                          "records; remove it from the text")
    if not record_separator:
        raise CharnnError("--record-separator is empty; give the string between records")
    items = [r for r in text.split(record_separator) if r.strip()]
    if not items:
        raise CharnnError(f"{name} has no records; check --record-separator")
    vocab = Vocabulary(sorted(set("".join(items)) | {END_OF_RECORD}))
    return OldCorpus(name=name, text=text, vocab=vocab, records=items)


@dataclass
class Schedule:
    starts: np.ndarray
    lengths: np.ndarray
    resets: np.ndarray

    def __len__(self) -> int:
        return self.starts.shape[0]


@dataclass
class Dataset:
    data: np.ndarray
    train: np.ndarray
    val: np.ndarray
    full_windows_only: bool


def _spans(edges) -> np.ndarray:
    return np.array(edges, dtype=np.int64).reshape(-1, 2)


def build_dataset(corpus: OldCorpus, config: TrainConfig) -> Dataset:
    """Encode the corpus and split it into training and held-out segments.

    The held-out part is the tail of the text (sequential order), one contiguous piece starting
    at a random chunk boundary (shuffled order), or the last / randomly chosen records.
    """
    tau, rng = config.seq_length, np.random.default_rng([config.seed, 7919])
    if corpus.records is not None:
        eor = corpus.vocab.index[END_OF_RECORD]
        pieces, edges, pos = [], [], 0
        for record in corpus.records:
            encoded = corpus.vocab.encode(record)
            pieces += [np.array([eor], np.int32), encoded, np.array([eor], np.int32)]
            edges.append((pos, pos + len(encoded) + 2))
            pos += len(encoded) + 2
        data, segments = np.concatenate(pieces), _spans(edges)
        n_val = int(round(config.val_frac * len(segments)))
        if config.val_frac > 0 and (n_val < 1 or n_val >= len(segments)):
            raise CharnnError(f"--val-frac {config.val_frac} leaves no records for validation or "
                              f"for training out of {len(segments)}; give a fraction that does")
        if config.order == "shuffled":
            held = np.zeros(len(segments), bool)
            held[rng.choice(len(segments), n_val, replace=False)] = True
        else:
            held = np.arange(len(segments)) >= len(segments) - n_val
        return Dataset(data, segments[~held], segments[held], full_windows_only=False)

    data = corpus.encoded()
    N = len(data)
    n_val = int(round(config.val_frac * N))
    if config.order == "sequential":
        train_end = N - n_val
        if train_end < tau + 1:
            raise CharnnError(f"{corpus.name} has {train_end} training characters, fewer than "
                              f"--seq-length + 1 = {tau + 1}; give a longer text or a shorter "
                              "--seq-length")
        if n_val and n_val < 2:
            raise CharnnError("--val-frac holds out fewer than 2 characters; give a larger fraction")
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
    chunks = [(s, min(s + chunk, end)) for start, end in rest
              for s in range(start, end, chunk) if min(s + chunk, end) - s >= 2]
    return Dataset(data, _spans(chunks), val, full_windows_only=False)


def _segment_windows(start: int, end: int, tau: int, full_only: bool):
    """Window starts and lengths of one segment (inputs data[s:s+L], targets one later)."""
    last = end - tau - 1 if full_only else end - 2
    starts = np.arange(start, last + 1, tau, dtype=np.int64)
    lengths = np.minimum(tau, end - 1 - starts).astype(np.int32)
    return starts, lengths


def epoch_schedule(dataset: Dataset, config: TrainConfig, epoch: int) -> Schedule:
    """The windows of one epoch (epoch counts from 1), laid out in lanes.

    Shuffled order draws the epoch's chunk order from (seed, epoch), so a resumed run
    rebuilds the same schedule without storing it.
    """
    B, tau = config.batch_size, config.seq_length
    segments = dataset.train
    if config.order == "shuffled":
        segments = segments[np.random.default_rng([config.seed, epoch]).permutation(len(segments))]
    elif dataset.full_windows_only and B > 1:
        # B contiguous streams; each stream's last target is the next stream's first input.
        start, end = segments[0]
        length = (end - start) // B
        if length < tau + 1:
            raise CharnnError(f"--batch-size {B} cuts the text into streams of {length} "
                              f"characters, shorter than --seq-length + 1; give a smaller "
                              "batch or a longer text")
        segments = _spans([(start + l * length, min(start + (l + 1) * length + 1, end))
                           for l in range(B)])

    # Lanes take segments in turn: each next segment goes to the lane with the fewest windows
    # so far (for contiguous streams that is exactly one stream per lane).
    lane_windows = [[] for _ in range(B)]
    load = np.zeros(B, np.int64)
    if config.order == "sequential" and not dataset.full_windows_only:
        # records in order: lane l gets the l-th contiguous share, so each lane reads in order
        shares = np.array_split(np.arange(len(segments)), B)
        assignment = np.concatenate([np.full(len(s), l) for l, s in enumerate(shares)])
    else:
        assignment = None
    for i, (start, end) in enumerate(segments):
        starts, lengths = _segment_windows(int(start), int(end), tau, dataset.full_windows_only)
        if len(starts) == 0:
            continue
        lane = int(assignment[i]) if assignment is not None else int(np.argmin(load))
        lane_windows[lane].append((starts, lengths))
        load[lane] += len(starts)

    updates = int(load.max())
    if updates == 0:
        raise CharnnError("the training text gives no window to train on; give a longer text")
    sched = Schedule(starts=np.zeros((updates, B), np.int64),
                     lengths=np.zeros((updates, B), np.int32),
                     resets=np.zeros((updates, B), np.uint8))
    for lane, pieces in enumerate(lane_windows):
        row = 0
        for starts, lengths in pieces:
            n = len(starts)
            sched.starts[row:row + n, lane] = starts
            sched.lengths[row:row + n, lane] = lengths
            sched.resets[row, lane] = 1
            row += n
    return sched
