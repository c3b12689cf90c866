"""Generating text from a trained model.

Given h_0 and a first character x_0: h_t = tanh(W h_{t-1} + U x_{t-1} + b), p_t =
softmax((V h_t + c) / T), optionally cut to the top-k characters or to the nucleus (the
smallest set of most likely characters whose probabilities reach top_p) and renormalised;
x_t is drawn from p_t and fed back. A prime text sets h_0 by running the network over it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .config import WHOLE_LIMITS
from .corpus import END_OF_RECORD, Vocabulary
from .errors import CharnnError
from .evaluation import carries_state
from .model import Params
from .networks import state_shape

# Characters are drawn in blocks of this many, so that text can stream to the terminal
# while the compiled kernel still does the drawing.
BLOCK = 64
# The temperatures sampling accepts. At 0.001 the most likely character already takes all
# of the probability unless another's logit is within a few thousandths of it (--greedy
# asks for exactly that); much lower, o / T overflows (float32 past 3e38, and at T = 1e-320
# float64 too) and the probabilities become NaN. Above 1000 every character is equally
# likely to within a fraction of a percent at any logits a trained model gives.
TEMPERATURE_RANGE = (1e-3, 1e3)


@dataclass
class SamplingOptions:
    temperature: float = 1.0    # 1.0 = the model's distribution, < 1.0 = less random
    top_k: int = 0              # keep only the k most likely characters; 0 = all
    top_p: float = 1.0          # nucleus: keep the most likely characters reaching p; 1.0 = all
    greedy: bool = False        # always take the most likely character

    def validate(self) -> "SamplingOptions":
        low, high = TEMPERATURE_RANGE
        if not low <= self.temperature <= high:
            raise CharnnError(f"--temperature is {self.temperature}; give a number from {low:g} "
                              f"to {high:g}, such as 0.8 (--greedy always takes the most "
                              "likely character)")
        most = WHOLE_LIMITS["top_k"][1]
        if not (isinstance(self.top_k, (int, np.integer)) and 0 <= self.top_k <= most):
            raise CharnnError(f"--top-k is {self.top_k}; give 0 (off) or a count up to "
                              f"{most:,}")
        if not 0 < self.top_p <= 1:
            raise CharnnError(f"--top-p is {self.top_p}; give a probability in (0, 1], such as 0.9")
        return self


def start_state(params: Params, vocab: Vocabulary, prime: str, backend,
                h0: np.ndarray | None = None):
    """(h, x): the hidden state after the prime text but its last character, and that
    character. The prime runs from h0 (zeros when None); without a prime, h0 and a newline
    (or, in record models, the record start)."""
    shape = state_shape(params)
    h = np.zeros(shape, params.dtype) if h0 is None else \
        np.array(h0, dtype=params.dtype).reshape(shape)
    if prime:
        indices = vocab.encode(prime)
        if len(indices) > 1:
            h = backend.advance(params, h, indices[:-1]).astype(params.dtype)
        return h, int(indices[-1])
    for start in (END_OF_RECORD, "\n", " "):
        if start in vocab:
            return h, vocab.index[start]
    return h, 0


def carried_state(ckpt) -> np.ndarray | None:
    """Where sampling from a checkpoint starts: the hidden state training carried (its first
    lane) for models trained by the pointer walk, zeros (None) for models whose training
    reset h at every chunk or record.

    A pointer-walk model sees h = 0 only at the first update of each epoch, so zeros are
    out of its experience: a model trained for less than an epoch can fall from h = 0 into a
    state it never leaves (a run of one rare character), while from its carried state it
    writes text like the samples of its training.
    """
    if ckpt.h is None or not carries_state(ckpt.meta.get("config", {})):
        return None
    return np.asarray(ckpt.h)[0]


def generate(params: Params, vocab: Vocabulary, length: int, rng: np.random.Generator,
             backend, options: SamplingOptions = SamplingOptions(), prime: str = "",
             h: np.ndarray | None = None, x: int | None = None, stop_at: str | None = None,
             on_text: Callable[[str], None] | None = None) -> str:
    """Up to `length` new characters (the prime is not repeated). Stops early after
    `stop_at` appears in the new text (it is kept) or at the end of a record (not kept).
    The prime runs from h (zeros when None); with both h and x given and no prime, drawing
    starts right there. on_text receives the text as it is drawn."""
    if prime or h is None or x is None:
        h, x = start_state(params, vocab, prime, backend, h)
    else:
        h = np.array(h, dtype=params.dtype)
    stop_index = vocab.index.get(END_OF_RECORD, -1)
    out = ""
    produced = 0
    while produced < length:
        drawn = backend.sample_indices(params, h, x, rng.random(min(BLOCK, length - produced)),
                                       options.temperature, options.top_k, options.top_p,
                                       options.greedy, stop_index)
        if len(drawn) == 0:
            break
        produced += len(drawn)
        x = int(drawn[-1])
        ended = x == stop_index
        before = len(out)
        out += vocab.decode(drawn[:-1] if ended else drawn)
        if stop_at:
            hit = out.find(stop_at, max(0, before - len(stop_at) + 1))
            if hit >= 0:
                out, ended = out[:hit + len(stop_at)], True
        if on_text and len(out) > before:
            on_text(out[before:])
        if ended:
            break
    return out
