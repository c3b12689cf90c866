"""How a model is scored on a text: the one figure that validation during training, the
report's held-out loss and `charnn eval` all print.

A model trained by the pointer walk carries its hidden state from window to window and sees
h = 0 only at the first update of each epoch. Scored from h = 0, such a model can fall into a
state it never leaves, and the figure then depends on which character the text happens to
start with (by nats, not by rounding). So a text is scored as the model is used:

  1. the hidden state starts where sampling starts: the state training carried (lane 0) for
     models trained by the pointer walk, zeros for models trained on shuffled chunks or on
     records, which start every chunk or record from zeros themselves;
  2. the first `warmup` characters (WARMUP = 200, at most half the text) are read to set the
     state and are not scored;
  3. every later character is scored: loss = -sum_t log p(x_t | x_<t), reported per character
     in nats and in bits (nats / ln 2).

Record models are scored record by record, each framed by END_OF_RECORD and read from zeros,
exactly as they are trained; no warm-up there, since a record's start is part of the model.

At most `max_chars` characters are scored (the first ones after the warm-up; for records, the
first records that reach it), so that a held-out part of a huge text costs a bounded time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .model import Params
from .networks import state_shape

WARMUP = 200
# Held-out parts longer than this are scored on their first MAX_CHARS characters.
MAX_CHARS = 1_000_000


@dataclass
class Score:
    total: float      # summed loss, nats
    count: int        # characters scored
    warmup: int       # characters read before scoring (per stream; 0 for records)

    @property
    def nats(self) -> float:
        return self.total / self.count if self.count else math.nan

    @property
    def bits(self) -> float:
        return self.nats / math.log(2)


def carries_state(config: dict) -> bool:
    """Whether a model trained with this config starts from the state training carried
    (the pointer walk), rather than from zeros (shuffled chunks, records)."""
    return not config.get("records") and config.get("order", "sequential") == "sequential"


def warmup_length(chars: int, warmup: int = WARMUP) -> int:
    """Characters read before the first scored one: `warmup`, at most half the text, and at
    least one (the first character has nothing before it to be predicted from)."""
    return max(1, min(warmup, chars // 2))


def score_stream(params: Params, data: np.ndarray, start: int, end: int, backend,
                 h_start: np.ndarray | None, warmup: int = WARMUP,
                 max_chars: int = MAX_CHARS) -> Score:
    """Score data[start:end] as one stream: read the first warmup_length characters from
    h_start (zeros when None), then score the characters after them, at most max_chars."""
    shape = state_shape(params)
    w = warmup_length(end - start, warmup)
    h = np.zeros(shape, params.dtype) if h_start is None else \
        np.array(h_start, dtype=params.dtype).reshape(shape)
    if w > 1:                                          # read all warm-up characters but the last
        h = backend.advance(params, h, data[start:start + w - 1])
    # the segment's first input is the last warm-up character; its targets are scored
    stop = min(end, start + w + max_chars) if max_chars else end
    segment = np.array([[start + w - 1, stop]], np.int64)
    total, count = backend.total_loss(params, data, segment, h0=h[None])
    return Score(float(total), int(count), w)


def score_records(params: Params, data: np.ndarray, segments: np.ndarray, backend,
                  max_chars: int = MAX_CHARS) -> Score:
    """Score framed records (segments (S, 2) of data), each from zeros, in order, until the
    records scored reach max_chars characters."""
    segments = np.asarray(segments, np.int64).reshape(-1, 2)
    if max_chars:
        predicted = np.maximum(segments[:, 1] - segments[:, 0] - 1, 0)
        reach = np.searchsorted(np.cumsum(predicted), max_chars, side="left") + 1
        segments = segments[:reach]
    total, count = backend.total_loss(params, data, segments)
    return Score(float(total), int(count), 0)


def score_held_out(params: Params, data: np.ndarray, segments: np.ndarray, backend,
                   records: bool, h_start: np.ndarray | None, max_chars: int = MAX_CHARS,
                   warmup: int = WARMUP) -> Score:
    """A run's held-out part as validation scores it: records one by one, or the one
    contiguous piece (the text's tail, or a piece of a shuffled run) as a stream."""
    if records:
        return score_records(params, data, segments, backend, max_chars)
    (start, end), = np.asarray(segments, np.int64).reshape(-1, 2)
    return score_stream(params, data, int(start), int(end), backend, h_start, warmup, max_chars)
