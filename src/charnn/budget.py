"""The network a time budget buys: `charnn train --time-limit T` given no network flags.

A budget buys characters, and what a network learns from them depends on its size and on
how many times it reads the same text. The rule, fitted to benchmarks/bench_budget.py's
runs (the runs and the fit: benchmarks/results/bench_budget.jsonl and fit_budget.py):

  1. The machine's speed is measured, not assumed: the reference network (a 2-layer GRU of
     256, 32 lanes of 50 characters, float32, Adam) is timed for about a second on the
     backend the run will use, and the budget is counted in its updates,
         U = T * (the reference's updates per second here).
  2. The size: the biggest rung of LADDER whose `from_updates` U reaches (a bigger network
     learns more from each character but sees fewer of them; below a rung's threshold the
     smaller network's extra characters win); a rung of one layer only where the text needs
     no dropout.
  3. The passes over the text, P = U * speed(rung) / speed(reference) * 32 * 50 / N for N
     training characters, set the dropout between the layers, and from more passes on the
     top's output too: none while the network reads the text only a few times, more as it
     reads it again and again (a small text overfits).
  4. The learning rate is the rung's (wider networks need smaller steps), with 100 warm-up
     updates and a cosine down to a tenth of it over the run, as the best-cpu preset; 32
     lanes of 50 characters, or the first of shapes() that lays a few updates out of the text.

Every figure the rule uses is in LADDER, DROPOUT and REFERENCE_RATE below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .presets import as_flags

# Every rung is a GRU and trains as the best-cpu preset does: float32, Adam, 32 lanes of 50
# characters, 100 warm-up updates, a cosine down to a tenth of eta.
SCHEDULE = dict(dtype="float32", optimizer="adam", lr_schedule="cosine",
                warmup_updates=100, seq_length=50, batch_size=32)
REFERENCE = dict(SCHEDULE, model="gru", layers=2, hidden=256, eta=0.004, min_eta=0.0004)
# The reference's updates per second on the machine the rule was fitted on (reference_rate()
# there: 27.6, 27.1 and 27.0 in three timings of 5 s on the 2-core Intel Xeon with AVX-512 of
# bench_budget's runs); the figures below are in its updates, and only ratios to it enter
# the rule: there a minute is about 1,640 updates.
REFERENCE_RATE = 27.3


@dataclass(frozen=True)
class Rung:
    layers: int
    hidden: int
    eta: float
    speed: float           # its updates per second over the reference's (measured, same run)
    from_updates: int      # the budget, in reference updates, from which this rung is chosen


# At 1 minute (1,640 reference updates) one layer of 256 learned more than two on the bundled
# corpus (less on the 1 MB slice, where the rung above is taken for its dropout), and at
# 90 s (docs/learning.md) two more than one; at 3 minutes (4,910) 2 x 256 more than 2 x 384
# on both texts; at 10 minutes (16,380) 2 x 384 more than 2 x 256 and than 2 x 512 on the
# bundled corpus, and on the 1 MB slice as much as 2 x 512 (dropout between the layers only)
# with half its characters, so 2 x 512 is the next step, from about twice that budget (not
# measured). A rung of one layer cannot drop out between layers (and was measured without
# dropout): where the passes call for dropout, the next rung is taken.
LADDER = (
    Rung(layers=1, hidden=256, eta=0.004, speed=2.55, from_updates=0),
    Rung(layers=2, hidden=256, eta=0.004, speed=1.0, from_updates=2_200),
    Rung(layers=2, hidden=384, eta=0.003, speed=0.40, from_updates=6_000),
    Rung(layers=2, hidden=512, eta=0.002, speed=0.20, from_updates=36_000),
)
# (passes over the training text from which, dropout between the layers, dropout on the top's
# output): none below 4 passes (the bundled corpus at every budget measured, and the 1 MB
# slice at 1 minute, where 0.2 lost), 0.2 between from 4 (the slice at 3 minutes), 0.3 between
# and 0.3 on the output from 10 (the slice at 10 minutes: 2 x 384 read the text 11 times and
# learned more with the output dropped too, 2 x 512 read it 5 times and learned less); the
# passes are the rule's estimate, which the runs' evaluations and checkpoints cut by 5-20%
DROPOUT = ((0.0, 0.0, 0.0), (4.0, 0.2, 0.0), (10.0, 0.3, 0.3))


@dataclass(frozen=True)
class Choice:
    settings: dict          # TrainConfig fields, as a preset's
    seconds: float          # the budget
    train_chars: int        # the training text's characters
    updates: float          # the budget in reference updates
    passes: float           # the expected passes over the training text
    rate: float             # the reference's updates per second on this machine

    def describe(self) -> str:
        from .schedule import format_duration
        return (f"chosen for {format_duration(self.seconds)} on {self.train_chars:,} training "
                f"characters: {as_flags(self.settings)} (this machine trains the reference "
                f"2-layer GRU of 256 at {self.rate:,.1f} updates/s, "
                f"{self.rate / REFERENCE_RATE:.2f}x the machine the rule was fitted on; about "
                f"{self.passes:,.1f} passes over the text; the rule: charnn.budget)")


def choose(seconds: float, train_chars: int, rate: float,
           most_chars: float | None = None) -> Choice:
    """The settings for a budget of `seconds` on `train_chars` training characters, on a
    machine that trains the reference network at `rate` updates per second; `most_chars`:
    the characters --updates or --epochs allow, where one of them gives the run's length."""
    updates = seconds * rate
    at = [i for i, r in enumerate(LADDER) if updates >= r.from_updates][-1]
    while True:
        rung = LADDER[at]
        # characters per second hardly depend on the lanes, so the reference's count is used
        chars = updates * rung.speed * REFERENCE["batch_size"] * REFERENCE["seq_length"]
        if most_chars is not None:
            chars = min(chars, most_chars)
        passes = chars / max(train_chars, 1)
        _, dropout, output = [level for level in DROPOUT if passes >= level[0]][-1]
        if dropout == 0 or rung.layers > 1 or at + 1 == len(LADDER):
            break
        at += 1                               # the one-layer rung drops nothing: the next rung
    settings = dict(model="gru", layers=rung.layers, hidden=rung.hidden, dropout=dropout,
                    **({"output_dropout": output} if output else {}), eta=rung.eta,
                    min_eta=tenth(rung.eta), **SCHEDULE)
    return Choice(settings=settings, seconds=seconds, train_chars=train_chars, updates=updates,
                  passes=passes, rate=rate)


MIN_EPOCH_UPDATES = 4     # a shape of shapes() is taken when an epoch of it is this many updates


def shapes():
    """The lanes and window lengths to try, best first, for a text too short (or of too few
    records) for 32 lanes of 50: halve the lanes, then shorten the window."""
    B, T = SCHEDULE["batch_size"], SCHEDULE["seq_length"]
    while B > 1:
        yield B, T
        B //= 2
    for T in (T, 25, 10):
        yield 1, T


def shaped(settings: dict, corpus, config_of) -> dict:
    """`settings` with the lanes and window length of the first of shapes() that lays an
    epoch of at least MIN_EPOCH_UPDATES updates out of `corpus`'s training text (else the
    first that lays out any; else the last, whose error the trainer gives);
    config_of(settings) is the run's TrainConfig of them (the flags given override them)."""
    from .data import build_dataset, epoch_updates
    from .errors import CharnnError
    laid_out = []
    for lanes, length in shapes():
        candidate = dict(settings, batch_size=lanes, seq_length=length)
        config = config_of(candidate)
        try:
            updates = epoch_updates(build_dataset(corpus, config), config, 1)
        except CharnnError:                   # too few records, chunks or characters
            continue
        if updates >= MIN_EPOCH_UPDATES:
            return candidate
        laid_out.append(candidate)
    return laid_out[0] if laid_out else candidate


def tenth(eta: float) -> float:
    return float(f"{eta / 10:.6g}")          # 0.0003, not 0.00030000000000000003


def train_chars(dataset) -> int:
    """The characters a run trains on (its training segments')."""
    return int((dataset.train[:, 1] - dataset.train[:, 0]).sum())


def reference_rate(corpus, base, announce=None, seconds: float = 1.0) -> float:
    """Updates per second of the reference network on this machine, with `base`'s backend and
    device (a TrainConfig), on windows of random characters of `corpus`'s alphabet (the speed
    does not depend on the text, and a short text may not fill 32 lanes of 50), timed over
    about `seconds` after a first, untimed call (which compiles and allocates)."""
    from .backends import get_backend, open_session, training_jobs
    from .backends.calls import Windows
    from .config import TrainConfig
    from .train import choose_backend, initial_state, updates_per_second
    config = TrainConfig(**{**base.to_dict(), **REFERENCE, "dropout": 0.0,
                            "output_dropout": 0.0, "time_limit": None,
                            "sigma": None}).validate()
    backend = get_backend(choose_backend(config), announce, config.dtype, config.network(),
                          jobs=training_jobs(config.batch_size))
    K, B, T, rows = len(corpus.vocab), config.batch_size, config.seq_length, 64
    rng = np.random.default_rng(0)
    data = rng.integers(0, K, rows * B * T + 1).astype(np.uint8 if K <= 256 else np.int32)
    starts = (np.arange(rows * B, dtype=np.int64) * T).reshape(rows, B)
    lengths, resets = np.full((rows, B), T, np.int32), np.zeros((rows, B), np.uint8)
    state = initial_state(config, K)
    session = open_session(backend, state.params, config.optimizer, state.opt_state, state.h,
                           device=config.device)
    return updates_per_second(session, state.params, state.opt_state, state.h, config,
                              lambda first, last: Windows(data, starts, lengths, resets, first,
                                                          last), rows, seconds, longest=rows)
