"""A trained model, ready to use: the one call that starts where the command line starts.

    model = charnn.load("runs/mine")            # a run folder (its best.npz) or a .npz
    model.generate(500, prime="ROMEO:", temperature=0.8, seed=1)
    model.evaluate("some held-out text").bits   # as `charnn eval` scores it
    model.hidden_states("To be, or not to be")  # (characters, layers, S, m): the state after each
    model.beam_search(200, width=5, prime="ROMEO:") # the 5 most likely continuations
    model.analyse("To be, or not to be")        # states, each character's loss, top guesses

The model keeps its vocabulary, the hidden state training carried (sampling and evaluation
start there, as `charnn sample` and `charnn eval` do; see sampling.carried_state) and a
backend. The low-level functions (sampling.generate, the backends' total_loss, advance)
stay for those who want to drive them by hand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .checkpoint import Checkpoint
from .config import whole_limits_message
from .corpus import END_OF_RECORD, Vocabulary
from .errors import CharnnError
from .evaluation import WARMUP, Score, score_records, score_stream
from .model import Params
from .networks import Network
from .sampling import SamplingOptions, carried_state, generate, start_state

# A job that the numpy reference would finish in about this many seconds runs there rather
# than wait for the compiled kernels' first compile (TrainedModel.prefer_compiled).
NUMPY_SECONDS = 10.0


@dataclass
class Analysis:
    """What the model makes of a text, character by character (TrainedModel.analyse).

    layers[l][t]: layer l's hidden state h after reading text[t]; loss[t]: -ln p(text[t] | text[:t]) in nats (NaN for text[0], which nothing before
    it predicts); top[t], top_p[t]: the most likely next characters after text[t] and their
    probabilities, most likely first."""
    text: str
    layers: list[np.ndarray]     # each (T, m_l)
    loss: np.ndarray             # (T,)
    top: list[list[str]]         # (T, k)
    top_p: np.ndarray            # (T, k)


@dataclass
class TrainedModel:
    params: Params
    vocab: Vocabulary
    config: dict                 # the training settings (TrainConfig's fields)
    carried: np.ndarray | None   # where sampling and evaluation start; None: zeros
    backend: object              # the module that runs the math (backends.get_backend)
    checkpoint: Checkpoint
    backend_name: str = ""
    auto: bool = False           # the backend was chosen by load (backend='auto')

    @property
    def network(self) -> Network:
        """What the model is: cell, layers, hidden size, vocabulary (networks.Network)."""
        return Network.of_params(self.params)

    @property
    def is_record_model(self) -> bool:
        return END_OF_RECORD in self.vocab

    # -- text -----------------------------------------------------------------------------------

    def generate(self, length: int = 1000, prime: str = "", temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, greedy: bool = False,
                 stop_at: str | None = None, seed: int | None = None,
                 zero_state: bool = False, rng: np.random.Generator | None = None,
                 on_text: Callable[[str], None] | None = None) -> str:
        """Up to `length` new characters after `prime` (not repeated), drawn as `charnn
        sample` draws them: from the carried state unless zero_state."""
        options = SamplingOptions(temperature, top_k, top_p, greedy).validate()
        problem = whole_limits_message("length", length, "length")
        if problem:
            raise CharnnError(problem)
        self.check_known(prime, "the prime text")
        rng = rng if rng is not None else np.random.default_rng(seed)
        return generate(self.params, self.vocab, length, rng, self.backend, options,
                        prime=prime, h=None if zero_state else self.carried, stop_at=stop_at,
                        on_text=on_text)

    def evaluate(self, text: str, warmup: int = WARMUP, max_chars: int = 0,
                 separator: str | None = None) -> Score:
        """The loss of `text` as validation and `charnn eval` score it (evaluation.py): read
        from the carried state, the first `warmup` characters setting it; for record models,
        record by record (split at `separator`, default the training's). max_chars: score at
        most that many characters (0: all)."""
        if self.is_record_model:
            data, segments = self.frame_records(text, separator)
            score = score_records(self.params, data, segments, self.backend, max_chars)
        else:
            self.check_known(text, "the text")
            if len(text) < 2:
                raise CharnnError("the text has fewer than 2 characters; give a longer text")
            data = self.vocab.encode(text)
            score = score_stream(self.params, data, 0, len(data), self.backend, self.carried,
                                 warmup, max_chars)
        if not np.isfinite(score.total):
            raise CharnnError(f"the model's loss on this text is {score.total}: its weights "
                              "are broken (diverged); use an earlier checkpoint")
        return score

    def hidden_states(self, text: str, zero_state: bool = False) -> np.ndarray:
        """The state after reading each character of `text`, from the carried state (or
        zeros): (len(text), layers, S, m), h first in each layer (S = 2 for the LSTM and the
        mLSTM: h, then the cell c)."""
        self.check_known(text, "the text")
        shape = self.network.state_shape
        h = np.zeros(shape, self.params.dtype) if zero_state or self.carried is None else \
            self.carried.astype(self.params.dtype)
        states = np.empty((len(text),) + shape, self.params.dtype)
        for t, x in enumerate(self.vocab.encode(text)):
            h = self.backend.advance(self.params, h, np.array([x], np.int32))
            states[t] = h
        return states

    def beam_search(self, length: int, width: int = 5, prime: str = "",
                    zero_state: bool = False, on_step: Callable[[int], None] | None = None):
        """The `width` most likely continuations of `length` characters after `prime`, best
        first, each with its total log-probability (beam.py). on_step(step) is called before
        each step; an exception it raises stops the search."""
        from .beam import beam_search
        self.check_known(prime, "the prime text")
        return beam_search(self, length, width, prime, zero_state, on_step)

    def analyse(self, text: str, zero_state: bool = False, k: int = 5) -> Analysis:
        """Run `text` through the model from the carried state (or zeros): the hidden states,
        each character's loss and the top-k guesses after each character."""
        if not text:
            raise CharnnError("the text is empty; give at least one character")
        states = self.hidden_states(text, zero_state)                  # (T, ...state)
        logp = self.log_probabilities(states)                          # (T, K)
        hidden = self.network.hidden_of(states)                        # (T, layers, m)
        layers = [hidden[:, l] for l in range(hidden.shape[1])]        # each layer's h (T, m)
        indices = self.vocab.encode(text)
        loss = np.full(len(text), np.nan)
        loss[1:] = -logp[np.arange(len(text) - 1), indices[1:]]
        k = min(k, len(self.vocab))
        top = np.argsort(-logp, axis=1, kind="stable")[:, :k]          # (T, k)
        chars = self.vocab.chars
        return Analysis(text=text, layers=layers, loss=loss,
                        top=[[chars[i] for i in row] for row in top],
                        top_p=np.exp(np.take_along_axis(logp, top, axis=1)))

    # -- the network, one step at a time (what beam search and analyse build on) -------------

    def start_state(self, prime: str = "", zero_state: bool = False):
        """(h, x): the state before the prime's last character, and that character (without a
        prime: the carried state, or zeros, and a newline), as sampling starts."""
        return start_state(self.params, self.vocab, prime, self.backend,
                           None if zero_state else self.carried)

    def advance(self, h: np.ndarray, x: int) -> np.ndarray:
        """The hidden state after reading character index x from h."""
        return self.backend.advance(self.params, np.asarray(h, self.params.dtype),
                                    np.array([x], np.int32))

    def logits(self, h: np.ndarray) -> np.ndarray:
        """The output o = V h + c of a state or of states (T, ...): (K,) or (T, K); h is the
        top layer's for a stacked network."""
        h = np.asarray(h)
        top = self.network.top_hidden(h)
        return top @ self.params.V.T + self.params.c

    def log_probabilities(self, h: np.ndarray) -> np.ndarray:
        """ln softmax(o) for states h (m,) or (T, m), in float64."""
        from .beam import log_softmax
        return log_softmax(self.logits(h))

    # -- the backend ----------------------------------------------------------------------------

    def use_backend(self, name: str, announce=None, jobs=("sample", "evaluate")) -> None:
        """Run the math on backend `name` from now on (compiling its kernels for `jobs`,
        announced, where they are not compiled yet)."""
        from .backends import get_backend
        self.backend = get_backend(name, announce, self.params.dtype.name, self.network,
                                   jobs=jobs)
        self.backend_name = name

    def prefer_compiled(self, chars: int, announce=None, jobs=("evaluate", "sample")) -> None:
        """For a job over `chars` characters: if load chose the numpy reference only because
        the compiled kernels were not built yet, and the reference would take longer than
        a compile costs (NUMPY_SECONDS, timed on this machine), compile them and use them."""
        from .backends import resolve_backend
        fastest = resolve_backend("auto", self.network.cell, self.params.dtype.name)
        if not self.auto or self.backend_name != "numpy" or fastest == "numpy":
            return
        probe = np.zeros(min(chars, 200) + 1, np.int32)
        started = time.perf_counter()
        self.backend.total_loss(self.params, probe, np.array([[0, len(probe)]]))
        per_char = (time.perf_counter() - started) / len(probe)
        if per_char * chars > NUMPY_SECONDS:
            if announce:
                announce(f"backend {fastest}: the numpy reference would take about "
                         f"{per_char * chars:,.0f} s for {chars:,} characters")
            self.use_backend(fastest, announce, jobs)

    # -- helpers --------------------------------------------------------------------------------

    def frame_records(self, text: str, separator: str | None = None):
        """(data, segments): the text's records, each framed by END_OF_RECORD as training
        frames them, and their spans."""
        separator = separator or self.config.get("record_separator", "\n")
        records = [r for r in text.split(separator) if r.strip()]
        if not records:
            raise CharnnError("the text has no records; check the record separator")
        self.check_known("".join(records), "the text")
        eor = self.vocab.index[END_OF_RECORD]
        pieces, edges, pos = [], [], 0
        for record in records:
            pieces.append(np.concatenate([[eor], self.vocab.encode(record), [eor]]))
            edges.append((pos, pos + len(record) + 2))
            pos += len(record) + 2
        return np.concatenate(pieces).astype(np.int32), np.array(edges, np.int64)

    def check_known(self, text: str, what: str) -> None:
        """Refuse a text with characters outside the model's vocabulary, naming them."""
        unknown = self.vocab.unknown(text)
        if unknown:
            raise CharnnError(f"{what} has characters {''.join(unknown[:10])!r} that the model "
                              "never saw; use only characters of its training text")


def load(source: str | Path, backend: str = "auto",
         announce: Callable[[str], None] | None = None,
         jobs: tuple[str, ...] = ("sample", "evaluate")) -> TrainedModel:
    """A trained model from a run folder (its best checkpoint) or a checkpoint file, on the
    backend named ('compiled', 'numpy'), or for 'auto' on the fastest one whose kernels for
    `jobs` are ready on this machine: a model loaded to sample or to score a short text never
    waits for a compile (announce says so when the numpy reference stands in; see
    TrainedModel.prefer_compiled for long jobs). `source` may also name a pretrained model
    that charnn ships: load("shakespeare"), or a folder `charnn export` wrote."""
    from .backends import ready_backend
    from .exported import open_checkpoint
    ckpt = open_checkpoint(source)                       # an exported folder too (exported.py)
    config = dict(ckpt.meta.get("config", {}))
    name, why = ready_backend(backend, ckpt.network, ckpt.params.dtype.name, jobs)
    if backend == "auto" and name == "numpy" and announce:
        announce(f"backend {why}")
    model = TrainedModel(params=ckpt.params, vocab=Vocabulary(ckpt.meta["vocab"]),
                         config=config, carried=carried_state(ckpt), backend=None,
                         checkpoint=ckpt)
    model.use_backend(name, announce, jobs)
    model.auto = backend == "auto"
    return model

