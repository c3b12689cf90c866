"""Beam search: the most likely continuations of a text, rather than drawn ones.

Every beam holds a text, the hidden state after it and its total log-probability
sum_t log p(x_t | x_<t). At each step each beam is advanced by its last character
(the backend's `advance`), the model's output o = V h + c gives log softmax(o) over the next
character, and of the beams x characters the `width` with the highest totals are kept. After
`length` steps the kept beams are the answer, best first.

Only two things are asked of the model: `advance(h, x) -> h` and `logits(h) -> o`, so any
network a TrainedModel wraps can be searched. In record models a beam that reaches the end of
a record is finished: it keeps its total and competes with the longer ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .corpus import END_OF_RECORD
from .errors import CharnnError

MAX_WIDTH = 100
# Beams print only when the search ends, and each character costs a step of every beam in
# Python: past this many characters the search would run for hours without a word.
MAX_LENGTH = 100_000


@dataclass
class Beam:
    text: str            # the continuation (the prime not repeated)
    logprob: float       # its total log-probability, nats
    finished: bool = False


def log_softmax(o: np.ndarray) -> np.ndarray:
    o = np.asarray(o, np.float64)
    shifted = o - o.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def beam_search(model, length: int, width: int = 5, prime: str = "",
                zero_state: bool = False,
                on_step: Callable[[int], None] | None = None) -> list[Beam]:
    """The `width` most likely continuations of `length` characters after `prime` (from the
    carried state unless zero_state), best first. `model` is a TrainedModel. on_step, if
    given, is called with the step number before each step; an exception it raises ends the
    search there (a server stops the search of a client that went away)."""
    if not 1 <= length <= MAX_LENGTH:
        raise CharnnError(f"a beam search of {length} characters: give a length (-n) from 1 "
                          f"to {MAX_LENGTH:,}")
    if not 1 <= width <= MAX_WIDTH:
        raise CharnnError(f"--beam is {width}; give a width from 1 to {MAX_WIDTH}")
    h, x = model.start_state(prime, zero_state)
    stop = model.vocab.index[END_OF_RECORD] if model.is_record_model else -1
    # live beams: (indices so far, h before the last index, last index, total)
    live = [([], h, x, 0.0)]
    finished: list[tuple[list[int], float]] = []
    for step in range(length):
        if on_step is not None:
            on_step(step)
        states = [model.advance(h, x) for _, h, x, _ in live]
        logp = log_softmax(model.logits(np.stack(states)))          # (beams, K)
        totals = np.array([total for *_, total in live])[:, None] + logp
        flat = np.argsort(-totals, axis=None, kind="stable")[:width]
        chosen = []
        for f in flat:
            beam, char = divmod(int(f), logp.shape[1])
            indices, total = live[beam][0] + [char], float(totals[beam, char])
            if char == stop:
                finished.append((indices[:-1], total))
            else:
                chosen.append((indices, states[beam], char, total))
        live = chosen
        # a finished beam that beats every live one cannot be overtaken (totals only fall)
        if not live or (len(finished) >= width and
                        sorted(t for _, t in finished)[-width] >= max(t for *_, t in live)):
            break
    results = [Beam(model.vocab.decode(np.array(i, np.int64)), t, True) for i, t in finished]
    results += [Beam(model.vocab.decode(np.array(i, np.int64)), t) for i, *_, t in live]
    results.sort(key=lambda b: -b.logprob)
    return results[:width]
