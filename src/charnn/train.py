"""The training loop: the assignment's procedure, its bookkeeping, and exact resumption.

The loop does not know which backend runs the math (backends.py) nor how progress is shown:
it hands events to a callback, and the command line renders them. Python wakes up only at
the boundaries where something is logged, evaluated, sampled or saved; in between, one
backend call runs all the updates.

What a run folder holds, and how it is written safely, is run_folder.py's job.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__, distributed, optim
from .backends import get_backend, open_session, resolve_backend, training_jobs
from .backends.calls import NO_DROPOUT, Dropout, Optimiser, Windows
from .checkpoint import BEST, LATEST, Checkpoint, load_checkpoint, save_checkpoint
from .config import DEFAULT_UPDATES, RESUMABLE, TrainConfig
from .corpus import Corpus, Vocabulary, load_corpus
from .data import Dataset, Schedule, build_dataset, epoch_schedule, epoch_updates
from .errors import CharnnError, SettingError, setting
from .memory import describe, memory_available
from .evaluation import WARMUP, carries_state, score_held_out
from .model import Params
from .networks import Network
from .run_folder import RunFolder, sample_block
from .sampling import generate
from .schedule import MIN_STEP_UPDATES, format_duration, learning_rate

SMOOTHING = 0.999
# One backend call runs at most about this long, so that a stop request (Ctrl-C, SIGTERM,
# SIGHUP) is honoured within a second even when Python would wait for thousands of updates.
SLICE_SECONDS = 0.25
# A run given only a time limit first trains a copy of the model for about this share of it
# (between CALIBRATION_SECONDS' bounds) to measure its speed, then fixes its length.
CALIBRATION_SHARE = 0.04
CALIBRATION_SECONDS = (0.5, 8.0)
# The share of the remaining time the fixed length aims to fill: the rest absorbs the noise
# of the measured speed (a run that is slower still stops at the time limit).
BUDGET_FILL = 0.98
# Under a time limit, all held-out evaluations together take at most this share of it: each
# scores at most the characters that fit (--eval-chars is lowered, and says so), at least
# MIN_EVAL_CHARS of them.
EVAL_SHARE = 0.10
MIN_EVAL_CHARS = 1_000
# A time limit that leaves fewer updates than this is refused before the run starts.
MIN_UPDATES = 10
# What the processes agree on before each backend call (TrainingSession.agree): go on, the
# time limit has passed, or a stop was asked for.
TIME_UP, STOP_REQUESTED = 1, 2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM) + \
    ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())


# -- events -------------------------------------------------------------------------------

@dataclass
class Started:
    total_updates: int
    updates_per_epoch: int
    iteration: int             # where training starts (0, or the resumed iteration)
    corpus: dict
    run_dir: Path
    network: str = ""          # what is trained, in words
    backend: str = ""          # the backend that runs it, and why


@dataclass
class Progress:
    iteration: int
    epoch: int
    loss: float
    smooth_loss: float
    updates_per_s: float
    chars_per_s: float
    val_bpc: float | None


@dataclass
class Sampled:
    iteration: int
    epoch: int
    smooth_loss: float
    text: str

    def block(self) -> str:
        """As the report prints it: `iter 10000 , epoch 1 , smooth loss 52.53`, then the text."""
        return sample_block(self.iteration, self.epoch, self.smooth_loss, self.text)


@dataclass
class Evaluated:
    iteration: int
    epoch: int
    val_loss: float            # nats per character
    val_bpc: float             # bits per character
    chars: int                 # characters scored (see evaluation.py)
    seconds: float             # what the evaluation took


@dataclass
class Planned:
    total_updates: int         # a time-limited run's length, fixed from its own speed


@dataclass
class Finished:
    iteration: int
    interrupted: bool
    best_iteration: int
    best_value: float
    best_kind: str             # "smooth_loss" or "val_loss"
    elapsed: float


# -- state ----------------------------------------------------------------------------------

@dataclass
class TrainState:
    params: Params
    opt_state: dict[str, np.ndarray]
    h: np.ndarray                        # (B, m): every lane's carried hidden state
    sample_rng: np.random.Generator
    opt_step: int = 0
    iteration: int = 0                   # updates done
    epoch: int = 1
    position: int = 0                    # next update's row in the epoch's schedule
    smooth_loss: float = math.nan
    best_value: float = math.inf
    best_iteration: int = 0
    elapsed: float = 0.0                 # seconds of training so far, over all sessions
    last_val: float | None = None

    def snapshot(self) -> "TrainState":
        return TrainState(params=self.params.copy(),
                          opt_state={k: a.copy() for k, a in self.opt_state.items()},
                          h=self.h.copy(), sample_rng=self.sample_rng,   # shared: see _save
                          **{k: getattr(self, k) for k in _COUNTERS})


_COUNTERS = ("opt_step", "iteration", "epoch", "position", "smooth_loss", "best_value",
             "best_iteration", "elapsed", "last_val")


def initial_state(config: TrainConfig, K: int, params: Params | None = None) -> TrainState:
    """A new run's state: new weights (or `params`, a fine-tuned run's start; finetune.py),
    a fresh optimiser, h = 0."""
    network = Network.from_config(config, K)
    if params is None:
        params = network.initial_params(config.sigma, np.random.default_rng(config.seed),
                                        np.dtype(config.dtype))
    else:
        params = params.carrying(network)
    return TrainState(params=params, opt_state=optim.initial_state(config.optimizer, params),
                      h=network.zero_state(params.dtype, lanes=config.batch_size),
                      sample_rng=np.random.default_rng([config.seed, 1]))


def updates_per_second(session, params, opt_state, h, config: TrainConfig, windows, rows: int,
                       seconds: float, longest: int, clock=time.perf_counter,
                       dropout: Dropout = NO_DROPOUT) -> float:
    """Updates per second of `session`'s calls (training params, opt_state and h as config
    says) over about `seconds`, on windows(first, last) of rows 0..rows-1 in turn, in calls
    of at most `longest` updates; the first call, which warms caches, is not counted unless
    it alone takes `seconds`. Closes the session."""
    done, timed, spent, n = 0, 0, 0.0, 1
    try:
        while spent < seconds:
            first = done % rows
            last = min(first + n, rows)
            before = clock()
            session.train_updates(params, Optimiser(config.optimizer, opt_state, done,
                                                    config.eta, config.clip), h,
                                  windows(first, last), dropout)
            took = clock() - before
            if done or took >= seconds:          # a first call that slow is the measure
                timed, spent = timed + last - first, spent + took
            done += last - first
            # calls grow until each takes about a quarter of the measuring time
            n = max(1, min(2 * n, longest, int((timed or 1) / max(spent, 1e-9) * seconds / 4)))
    finally:
        session.close()
    return timed / spent


def state_to_checkpoint(state: TrainState, config: TrainConfig, corpus: Corpus,
                        sample_rng_state: dict, init_from: dict | None = None) -> Checkpoint:
    meta = {
        "charnn_version": __version__,
        "config": config.to_dict(),
        "network": Network.from_config(config, len(corpus.vocab)).to_dict(),
        "vocab": corpus.vocab.chars,
        "corpus": corpus_facts(corpus),
        "state": {k: getattr(state, k) for k in _COUNTERS},
        "sample_rng": sample_rng_state,
    }
    if init_from is not None:
        meta["init_from"] = init_from                    # where a fine-tuned run started
    return Checkpoint(params=state.params, meta=meta, opt_state=state.opt_state, h=state.h)


def state_from_checkpoint(ckpt: Checkpoint) -> TrainState:
    rng = np.random.default_rng()
    rng.bit_generator.state = ckpt.meta["sample_rng"]
    config = TrainConfig.from_dict(ckpt.meta["config"])
    h = ckpt.h if ckpt.h is not None else ckpt.network.zero_state(lanes=config.batch_size)
    return TrainState(params=ckpt.params, opt_state=dict(ckpt.opt_state),
                      h=h.astype(ckpt.params.dtype), sample_rng=rng,
                      **{k: ckpt.meta["state"][k] for k in _COUNTERS})


def corpus_facts(corpus: Corpus) -> dict:
    return {"name": corpus.name, "source": corpus.source, "encoding": corpus.encoding,
            "chars": corpus.chars, "K": len(corpus.vocab), "sha256": corpus.sha256,
            "records": None if corpus.records is None else len(corpus.records)}


# -- the trainer ----------------------------------------------------------------------------

class Trainer:
    """Trains a model on a corpus into a run folder, from scratch or from a checkpoint.

    on_event receives Started, Progress, Sampled, Evaluated and Finished events.
    """

    def __init__(self, corpus: Corpus, config: TrainConfig, run_dir: str | Path,
                 state: TrainState | None = None,
                 on_event: Callable[[object], None] | None = None,
                 announce: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter,
                 params: Params | None = None, init_from: dict | None = None):
        # params: a new run's first weights (a fine-tuned run's, finetune.py) instead of new
        # ones; init_from: the facts of where those came from, kept in config.json and in
        # every checkpoint
        self.corpus, self.config = corpus, config.validate()
        self.init_from = init_from
        self.clock = clock                               # seconds; the time limit's clock
        self.run_dir = Path(run_dir)
        # several processes (torchrun) train one model; rank 0 alone writes the run folder
        self.writer = distributed.is_writer()
        self.folder = RunFolder(self.run_dir) if self.writer else distributed.NoFolder(run_dir)
        self.on_event = on_event or (lambda event: None)
        self.announce = announce or (lambda message: None)
        check_memory(config, len(corpus.vocab))
        self.backend_name = choose_backend(config)
        self.backend = get_backend(self.backend_name, announce, config.dtype, config.network(),
                                   jobs=training_jobs(config.batch_size))
        self.dataset: Dataset = build_dataset(corpus, config)
        self.resumed = state is not None
        self.state = state or initial_state(config, len(corpus.vocab), params)
        self.schedule: Schedule = epoch_schedule(self.dataset, config, self.state.epoch)
        self.updates_per_epoch = epoch_updates(self.dataset, config, 1)
        self.best: TrainState | None = None
        self.stop_requested = False
        self.time_up = False                             # stopped by config.time_limit
        self._deadline = math.inf
        # what the run must leave before its deadline to end on time: the last measured
        # evaluation, checkpoint save and plot (see _time_left)
        self._eval_seconds = self._save_seconds = self._plot_seconds = 0.0
        # a run given only a time limit fixes its length twice: from copies of the model
        # before it starts, then from its own speed over its first updates (_refix_length)
        self._plan: dict | None = None
        self._recent_rate = math.inf                     # updates/s of the last call
        self._rate_planned = 0.0                         # and the one the length assumed
        self._slice = 1                                  # updates per backend call, see _loop
        self.session = None                              # the backend's, while run() trains
        self._synced_at = -1                             # the update of the last session sync
        self._evaluated_at = -1                          # and of the last evaluation
        # dropout masks are drawn from the seed and the update's number (calls.Dropout)
        self._dropout = Dropout(config.dropout, config.seed, config.output_dropout)

    # -- public ------------------------------------------------------------------------------

    @property
    def total_updates(self) -> int:
        c = self.config
        if c.updates is not None:
            return c.updates
        if c.epochs is not None:
            return max(1, round(c.epochs * self.updates_per_epoch))
        return DEFAULT_UPDATES

    def run(self) -> TrainState:
        """Train to the run's length, or until config.time_limit has passed in this session
        (time_up), or until a stop is requested."""
        self.folder.acquire()
        handlers = self._install_signal_handlers()
        try:
            if self.config.time_limit is not None:
                self._deadline = self.clock() + self.config.time_limit
                c = self.config
                self._plot_seconds = self._time_plot()
                if c.updates is None and c.epochs is None and not self.resumed:
                    if distributed.world_size() > 1:
                        # each process would measure its own speed and fix its own length
                        raise SettingError(
                            f"{setting('time_limit')} alone fixes the run's length from a speed "
                            "measured by one process; under torchrun give "
                            f"{setting('updates')} N or {setting('epochs')} E with it")
                    self._fix_length()
            self._prepare_run_dir()
            s, c = self.state, self.config
            self.session = open_session(self.backend, s.params, c.optimizer, s.opt_state, s.h,
                                        device=c.device, dropout=self._dropout)
            return self._loop()
        finally:
            if self.session is not None:
                self.session.close()
                self.session = None
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            self.folder.release()

    def request_stop(self) -> None:
        """Finish the current backend call (a fraction of a second), save, and return."""
        self.stop_requested = True

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self) -> TrainState:
        s, c = self.state, self.config
        total = self.total_updates
        self.on_event(Started(total, self.updates_per_epoch, s.iteration,
                              corpus_facts(self.corpus), self.run_dir,
                              describe_network(c), self._backend_reason()))
        if not self.resumed:
            s.smooth_loss = self._first_update_loss()    # the report's "iter 0" smooth loss
            s.best_value = math.inf
            self._log_row(s.iteration, s.smooth_loss)
            if self.dataset.val_chars:
                self._evaluate()
            self._sample()
        started = self.clock()
        elapsed_before, first_iteration = s.elapsed, s.iteration
        window_start, window_updates, window_chars = started, 0, 0
        while s.iteration < total:
            # every process stops together and runs the same number of updates per call; a
            # stop request anywhere outranks the time limit (read on each process's clock)
            time_up = self._time_left() <= 0
            verdict, self._slice = self.session.agree(
                STOP_REQUESTED if self.stop_requested else TIME_UP if time_up else 0,
                self._slice)
            # (a signal that lands during agree() is kept for the next round, never dropped)
            self.stop_requested = self.stop_requested or verdict == STOP_REQUESTED
            self.time_up = verdict == TIME_UP
            if verdict:
                break
            if s.position >= len(self.schedule):
                s.epoch += 1
                s.position = 0
                self.schedule = epoch_schedule(self.dataset, c, s.epoch)
            # one eta per call: the call ends where the schedule changes it
            eta, eta_until = learning_rate(c.lr_schedule, c.eta, c.min_eta, c.warmup_updates,
                                           s.iteration, total)
            if self._plan is not None and self._plan["until"] is not None:
                # end a call where the length must be fixed at the latest (see _fix_length)
                eta_until = min(eta_until, max(self._plan["until"], s.iteration + 1))
            n = min(total - s.iteration, eta_until - s.iteration,
                    len(self.schedule) - s.position, self._slice,
                    *(every - s.iteration % every for every in
                      (c.log_every, c.sample_every, c.eval_every, c.checkpoint_every)))
            first, last = s.position, s.position + n
            call_started = self.clock()
            losses = self.session.train_updates(
                s.params, Optimiser(c.optimizer, s.opt_state, s.opt_step, eta, c.clip), s.h,
                self._windows(first, last), self._dropout)
            took = self.clock() - call_started
            self._fit_slice(n, took)
            self._recent_rate = n / max(took, 1e-9)
            smooth = s.smooth_loss
            for loss in losses:                          # smooth <- 0.999 smooth + 0.001 loss
                smooth = SMOOTHING * smooth + (1 - SMOOTHING) * loss
            if not math.isfinite(smooth):
                bad = np.flatnonzero(~np.isfinite(losses))
                self._diverged(s.iteration + (int(bad[0]) + 1 if bad.size else n), smooth)
            s.smooth_loss = smooth
            s.opt_step += n
            s.position = last
            s.iteration += n
            s.elapsed = elapsed_before + self.clock() - started
            window_updates += n
            window_chars += int(self.schedule.lengths[first:last].sum())
            if self._plan is not None and self._refix_length():
                total = self.total_updates
            it = s.iteration
            if it % c.log_every == 0 or it == total:
                now = self.clock()
                span = max(now - window_start, 1e-9)
                self._log_row(it, float(losses[-1]))
                self.on_event(Progress(it, s.epoch, float(losses[-1]), s.smooth_loss,
                                       window_updates / span, window_chars / span, s.last_val))
                window_start, window_updates, window_chars = now, 0, 0
                if not self.dataset.val_chars:
                    self._track_best(s.smooth_loss)
            if self.dataset.val_chars and (it % c.eval_every == 0 or it == total):
                self._evaluate()
            if it % c.sample_every == 0:
                self._sample()
            if it % c.checkpoint_every == 0 and it < total:
                self._save()
        if self._plan is not None:          # a run that ended before its speed was measured
            self._announce_length(self._plan, self._rate_planned)
            self._plan = None
        if self.time_up and self.dataset.val_chars and self._evaluated_at != s.iteration:
            self._evaluate()          # the best checkpoint must not predate the last stretch
        if s.iteration == total and total % c.sample_every and s.iteration > first_iteration:
            # the final model's text, off the --sample-every grid: drawn from a generator of
            # its own, so that the grid's samples of a run extended past here are those of a
            # straight run
            self._sample(np.random.default_rng([c.seed, 2, s.iteration]))
        self._save()
        self._plot()
        self.on_event(Finished(s.iteration, self.stop_requested, s.best_iteration,
                               s.best_value, self._best_kind, s.elapsed))
        return s

    # -- pieces ------------------------------------------------------------------------------

    def _time_left(self) -> float:
        """Seconds of training left before the time limit, less what the run needs after its
        last call to end on time: that call (at most a slice), a last evaluation, the
        checkpoints and the plot, each as long as it last took, and longer by as much as
        the machine has slowed down since the length was fixed."""
        if self._deadline == math.inf:
            return math.inf
        after = SLICE_SECONDS + 2 * self._save_seconds + self._plot_seconds
        if self.dataset.val_chars:
            after += self._eval_seconds
        planned = self.config.updates and self._rate_planned
        slower = max(1.0, planned / self._recent_rate) if planned else 1.0
        return self._deadline - self.clock() - after * slower

    def _fix_length(self) -> None:
        """A run given only a time limit: measure, on copies of the model, the speed of
        training, of the held-out evaluation, of a sample and of a checkpoint save; bound the
        evaluations to EVAL_SHARE of the budget (their size is fixed here, before update 0's);
        fix config.updates to what fits in the time left; and have the loop fix it again from
        the run's own speed (_refix_length), which copies timed for a few seconds can
        misjudge. That happens where the learning rate does not depend on the run's length
        yet (the constant schedule; the warm-up and first cosine step), so that the run is
        exactly the run of --updates N. The compile happened before (Trainer's backend)."""
        c, started = self.config, self.clock()
        seconds = min(max(CALIBRATION_SHARE * c.time_limit, CALIBRATION_SECONDS[0]),
                      CALIBRATION_SECONDS[1])
        rate = self._measure_speed(seconds / 2)
        plan = self._plan = {
            "sample_seconds": self._time_copy(lambda params, h: generate(
                params, self.corpus.vocab, c.sample_length, np.random.default_rng(0),
                self.backend, h=h[0], x=0)),
            "eval_rate": self._measure_evaluation() if self.dataset.val_chars else 0.0,
            "warm": WARMUP if not c.records else 0,
            "seconds": min(seconds, 0.1 * c.time_limit), "started": None, "from": 0,
            # the last update whose learning rate is the same for every length
            "until": c.warmup_updates + MIN_STEP_UPDATES if c.lr_schedule == "cosine" else None}
        self._save_seconds = self._time_save()
        updates, count, chars, eval_total, every = self._plan_length(plan, rate, 0)
        spent = self.clock() - started
        limit = format_duration(c.time_limit)
        if updates < MIN_UPDATES:
            need = spent + eval_total + 2 * plan["sample_seconds"] + MIN_UPDATES / rate / \
                BUDGET_FILL + 2 * self._save_seconds + self._plot_seconds + SLICE_SECONDS
            raise SettingError(
                f"{setting('time_limit')} {limit} is too short to train this network: "
                f"measuring it took "
                f"{spent:.1f} s, it runs {rate:,.1f} updates/s, and its held-out evaluations "
                f"and checkpoints take {eval_total + 2 * self._save_seconds:.1f} s, which "
                f"leaves fewer than {MIN_UPDATES} updates; give a {setting('time_limit')} of at least "
                f"{format_duration(max(math.ceil(1.2 * need), math.ceil(c.time_limit) + 1))}"
                ", or a smaller network")
        c.updates, self._rate_planned = updates, rate
        plan["repeat"], evaluation = "", ""
        if count:
            if chars < c.eval_chars and chars < self.dataset.val_chars:
                c.eval_chars = chars
                plan["repeat"] += f" --eval-chars {chars}"
            if every != c.eval_every:
                c.eval_every = every
                plan["repeat"] += f" --eval-every {every}"
            evaluation = (f"; {count} held-out evaluation{'s' * (count > 1)} of "
                          f"{min(c.eval_chars, self.dataset.val_chars):,} characters (about "
                          f"{eval_total:.1f} s, {eval_total / c.time_limit:.0%} of the budget)")
        when = (f"its first {plan['until']:,} updates" if plan["until"] is not None else
                f"its first {seconds:.0f} s")
        self.announce(f"time limit {limit}: {rate:,.1f} updates/s on a copy of the model "
                      f"(measured in {spent:.1f} s){evaluation}; about {updates:,} updates, "
                      f"fixed once the run's own speed is measured over {when}")

    def _plan_length(self, plan: dict, rate: float, evaluated: int):
        """(updates, evaluations, characters each, their seconds, updates between them): the
        most updates of the whole run that fit in the time left at `rate` updates/s once
        their evaluations (`evaluated` of them done), samples, saves and the plot are paid;
        plan holds what _fix_length measured."""
        c, s = self.config, self.state
        eval_rate, warm = plan["eval_rate"], plan["warm"]

        def evaluations(updates: int) -> tuple[int, int, float, int]:
            """At update 0, every eval_every and at the end, each of as many characters as
            EVAL_SHARE of the budget allows, at least MIN_EVAL_CHARS; where even that is too
            much, fewer of them (a longer eval_every). Fixed once update 0 is scored."""
            if not self.dataset.val_chars:
                return 0, 0, 0.0, c.eval_every
            budget, every = EVAL_SHARE * c.time_limit, c.eval_every
            least = (min(MIN_EVAL_CHARS, self.dataset.val_chars) + warm) / eval_rate
            count = 1 + math.ceil(updates / every)
            if evaluated == 0 and count > 2 and count * least > budget:
                allowed = max(2, int(budget / least))
                every = max(every, math.ceil(updates / (allowed - 1)))
                count = 1 + math.ceil(updates / every)
            chars = c.eval_chars if evaluated else min(
                c.eval_chars, self.dataset.val_chars,
                max(MIN_EVAL_CHARS, int(budget * eval_rate / count) - warm))
            return count, chars, count * (min(chars, self.dataset.val_chars) + warm) / \
                eval_rate, every

        def fits(updates: int) -> int:
            """The updates that fit once those of a run of `updates` are paid for."""
            count, _, eval_total, _ = evaluations(updates)
            if count:
                eval_total *= (count - evaluated) / count
            samples = updates // c.sample_every + 2 - (s.iteration // c.sample_every + 1
                                                       if evaluated else 0)
            saves = updates // c.checkpoint_every + 2 - s.iteration // c.checkpoint_every
            fixed = (eval_total + samples * plan["sample_seconds"] + saves * self._save_seconds
                     + self._plot_seconds + SLICE_SECONDS)
            left = self._deadline - self.clock() - fixed
            return s.iteration + int(BUDGET_FILL * left * rate)

        # the most updates that still fit once their own evaluations are paid (fits falls as
        # the run grows: each eval_every updates more add an evaluation)
        low, high = s.iteration, s.iteration + max(1, int(rate * c.time_limit))
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if fits(middle) >= middle else (low, middle - 1)
        return (low,) + evaluations(max(low, 1))

    def _refix_length(self) -> bool:
        """After a call of a run given only a time limit: once the run's own speed has been
        measured (from the end of its first call past the warm-up to the last update whose
        learning rate is the same for every length, or for the measuring time), fix its
        length from it, say so, and stop measuring. True when the length was fixed."""
        c, s, plan = self.config, self.state, self._plan
        now = self.clock()
        if plan["started"] is None:
            # from the end of a call, and past the warm-up, whose rate changes every update
            # and so runs one update a call, slower than the rest of the run
            if s.iteration >= min(c.warmup_updates, plan["until"] or c.warmup_updates):
                plan["started"], plan["from"] = now, s.iteration
            return False
        spent, done = now - plan["started"], s.iteration - plan["from"]
        due = s.iteration >= plan["until"] if plan["until"] is not None else \
            spent >= plan["seconds"]
        if not due:
            return False
        self._plan = None
        rate = done / spent if done and spent > 0 else self._rate_planned
        evaluated = 1 + s.iteration // c.eval_every if self.dataset.val_chars else 0
        updates = max(s.iteration + 1, self._plan_length(plan, rate, evaluated)[0])
        c.updates, self._rate_planned = updates, rate
        self._prepare_run_dir(rewrite=True)
        self._announce_length(plan, rate)
        self.on_event(Planned(updates))
        return True

    def _announce_length(self, plan: dict, rate: float) -> None:
        c = self.config
        limit = format_duration(c.time_limit)
        self.announce(f"time limit {limit}: the run trains at {rate:,.1f} updates/s, so it is "
                      f"{c.updates:,} updates (--updates {c.updates}{plan['repeat']} in place "
                      f"of --time-limit repeats it exactly), stopped early if {limit} pass first")

    def _copies(self):
        """Copies of the model, its optimiser state and the lanes' states."""
        s = self.state
        return s.params.copy(), {k: a.copy() for k, a in s.opt_state.items()}, s.h.copy()

    def _time_copy(self, job) -> float:
        """Seconds that job(params, h) takes on copies of the model."""
        params, _, h = self._copies()
        before = self.clock()
        job(params, h)
        return self.clock() - before

    def _measure_evaluation(self) -> float:
        """Held-out characters scored per second (with the warm-up read before them), timed
        on up to 2% of the budget's worth of the held-out part: a probe that doubles until
        it takes that long or covers the part."""
        c = self.config
        params, _, h = self._copies()
        probe, rate = 256, 0.0
        while True:
            chars = min(probe, self.dataset.val_chars)
            before = self.clock()
            score = self.validation_score(params, h, max_chars=chars)
            took = max(self.clock() - before, 1e-9)
            rate = (score.count + score.warmup) / took
            if chars >= self.dataset.val_chars or took >= 0.02 * c.time_limit or took >= 1.0:
                return rate
            probe *= 4

    def _time_save(self) -> float:
        """Seconds a checkpoint save of this model takes (written to a temporary folder)."""
        import tempfile
        s = self.state
        with tempfile.TemporaryDirectory() as folder:
            before = self.clock()
            save_checkpoint(Path(folder) / LATEST, state_to_checkpoint(
                s, self.config, self.corpus, s.sample_rng.bit_generator.state))
            return self.clock() - before

    def _time_plot(self) -> float:
        """Seconds that drawing loss.png costs, about: an empty figure, drawn once the
        plotting library is imported (the first import is paid here, inside the budget,
        rather than at the end)."""
        try:
            import io

            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            def draw() -> None:
                figure = plt.figure(figsize=(8, 4.5))
                figure.savefig(io.BytesIO(), format="png")
                plt.close(figure)
            draw()
            before = self.clock()
            draw()
            return self.clock() - before
        except Exception:                                 # the plot itself will say why
            return 0.0

    def _measure_speed(self, seconds: float) -> float:
        """Updates per second of backend calls on copies of the model, its optimiser state
        and hidden state, over about `seconds` (the first call, which warms caches, not
        counted)."""
        c = self.config
        params, opt_state, h = self._copies()
        rows = len(self.schedule)
        # the loop's calls end at every log row and at every step of a cosine schedule, and a
        # call has a fixed cost (a compiled LSTM's about 19 ms): time calls no longer than those
        longest = min(c.log_every, MIN_STEP_UPDATES) if c.lr_schedule == "cosine" else c.log_every
        # on the run's device, as the run will train (a session keeps the model there)
        session = open_session(self.backend, params, c.optimizer, opt_state, h,
                               device=c.device, dropout=self._dropout)
        return updates_per_second(session, params, opt_state, h, c, self._windows, rows,
                                  seconds, longest, self.clock, self._dropout)

    def _backend_reason(self) -> str:
        if self.backend_name == "torch":
            where = f"torch on {getattr(self.session, 'device', self.config.device)}"
            if distributed.world_size() > 1:
                where += f", {distributed.world_size()} processes"
            return where + (" (auto)" if self.config.backend == "auto" else "")
        if self.config.backend == "auto":
            return (f"{self.backend_name} (auto: the fastest backend that runs "
                    f"{self.config.model} in {self.config.dtype})")
        return self.backend_name

    def _windows(self, first: int, last: int) -> Windows:
        """Rows first..last-1 of this epoch's schedule over the training text."""
        sched = self.schedule
        return Windows(self.dataset.data, sched.starts, sched.lengths, sched.resets, first,
                       last)

    def _fit_slice(self, n: int, seconds: float) -> None:
        """Updates for the next backend call: as many as fit in SLICE_SECONDS at the rate
        just measured, growing at most fourfold a call. Splitting the updates into calls
        changes nothing in the results (a resumed run is split the same way)."""
        if n >= self._slice:
            fit = int(n * SLICE_SECONDS / max(seconds, 1e-9))
            self._slice = max(1, min(fit, 4 * self._slice))
        elif seconds > SLICE_SECONDS:
            self._slice = max(1, int(n * SLICE_SECONDS / seconds))

    def _diverged(self, iteration: int, smooth: float) -> None:
        latest = self.run_dir / LATEST
        if latest.exists():
            kept = (f"the last good checkpoint, {latest} (update "
                    f"{load_checkpoint(latest).meta['state']['iteration']:,}), is kept")
        else:
            kept = "no checkpoint had been saved yet"
        raise SettingError(f"the loss became {smooth} at update {iteration:,} (the model "
                           f"diverged); {kept}; train again with a lower {setting('eta')} or "
                           f"{setting('clip')}")

    @property
    def _best_kind(self) -> str:
        return "val_loss" if self.dataset.val_chars else "smooth_loss"

    def _first_update_loss(self) -> float:
        """The loss the first update will have, computed without updating: the loss a
        random model has, about seq_length * ln K."""
        rows = self.schedule.lengths[0] > 0
        starts = self.schedule.starts[0][rows]
        spans = np.stack([starts, starts + self.schedule.lengths[0][rows] + 1], axis=1)
        total, _ = self.backend.total_loss(self.state.params, self.dataset.data, spans)
        return total / len(starts)

    def _sync(self) -> None:
        """Bring the trainer's arrays up to date with the session's, once per update: under
        torchrun a sync is a collective that every process must make at the same update, so
        it never waits on a decision one process takes alone (such as a better held-out
        score, which each process computes on its own and may round differently)."""
        if self._synced_at != self.state.iteration:
            self.session.sync()
            self._synced_at = self.state.iteration

    def _track_best(self, value: float) -> None:
        s = self.state
        if value < s.best_value:
            s.best_value, s.best_iteration = value, s.iteration
            self._sync()
            self.best = s.snapshot()

    def validation_score(self, params: Params | None = None, h: np.ndarray | None = None,
                         max_chars: int | None = None):
        """The held-out part scored as `charnn eval` scores it (evaluation.py): from the
        state lane 0 carries (pointer walk) or zeros, after a warm-up; at most max_chars
        characters (default --eval-chars)."""
        s, c = self.state, self.config
        params = s.params if params is None else params
        h = s.h if h is None else h
        start = np.asarray(h)[0] if carries_state(c.to_dict()) else None
        return score_held_out(params, self.dataset.data, self.dataset.val, self.backend,
                              records=c.records, h_start=start,
                              max_chars=c.eval_chars if max_chars is None else max_chars)

    def _evaluate(self) -> None:
        s = self.state
        started = self.clock()
        self._sync()
        score = self.validation_score()
        self._eval_seconds = self.clock() - started
        self._evaluated_at = s.iteration
        if not math.isfinite(score.nats):
            self._diverged(s.iteration, score.nats)
        s.last_val = score.bits
        self._log_row(s.iteration, None, score.nats)
        self.on_event(Evaluated(s.iteration, s.epoch, score.nats, score.bits, score.count,
                                self._eval_seconds))
        self._track_best(score.nats)

    def _sample(self, rng: np.random.Generator | None = None) -> None:
        """A sample block from the model as it is: drawn from the run's sampling stream (the
        samples on the --sample-every grid), or from `rng`."""
        s, c = self.state, self.config
        self._sync()
        row = min(s.position, len(self.schedule) - 1)
        x = int(self.dataset.data[self.schedule.starts[row, 0]])
        h = s.h[0] if s.iteration else np.zeros_like(s.h[0])
        text = generate(s.params, self.corpus.vocab, c.sample_length,
                        s.sample_rng if rng is None else rng, self.backend, h=h, x=x)
        event = Sampled(s.iteration, s.epoch, s.smooth_loss, text)
        self.folder.append_sample(s.iteration, s.epoch, s.smooth_loss, text)
        self.on_event(event)

    def _save(self) -> None:
        s = self.state
        self._sync()                                     # (every process: it gathers h)
        if not self.writer:
            return
        started = self.clock()
        save_checkpoint(self.run_dir / LATEST, state_to_checkpoint(
            s, self.config, self.corpus, s.sample_rng.bit_generator.state, self.init_from))
        self._save_seconds = self.clock() - started
        if self.best is not None:
            # the best snapshot resumes with the RNG as it is now: its own was not kept
            save_checkpoint(self.run_dir / BEST, state_to_checkpoint(
                self.best, self.config, self.corpus, s.sample_rng.bit_generator.state,
                self.init_from))
            self.best = None
        elif not (self.run_dir / BEST).exists():
            save_checkpoint(self.run_dir / BEST, state_to_checkpoint(
                s, self.config, self.corpus, s.sample_rng.bit_generator.state,
                self.init_from))

    def _plot(self) -> None:
        from .plot import plot_run
        if not self.writer:
            return
        try:
            plot_run(self.run_dir)
        except Exception as exc:                          # a plot is never worth a lost run
            print(f"charnn: warning: could not draw loss.png ({exc})")

    def _log_row(self, iteration: int, loss: float | None, val_loss: float | None = None) -> None:
        s = self.state
        self.folder.append_log({
            "iteration": iteration, "epoch": s.epoch,
            "loss": "" if loss is None else f"{loss:.6f}",
            "smooth_loss": f"{s.smooth_loss:.6f}",
            "val_loss": "" if val_loss is None else f"{val_loss:.6f}",
            "val_bpc": "" if val_loss is None else f"{val_loss / math.log(2):.6f}",
            "elapsed": f"{s.elapsed:.3f}"})

    def _prepare_run_dir(self, rewrite: bool = False) -> None:
        """config.json and a new log, or (resumed) the log cut back to the checkpoint;
        rewrite: config.json again, where a time-limited run has fixed its length."""
        config = {"config": self.config.to_dict(), "corpus": corpus_facts(self.corpus),
                  "vocab": self.corpus.vocab.chars, "K": len(self.corpus.vocab),
                  "updates_per_epoch": self.updates_per_epoch,
                  "total_updates": self.total_updates, "charnn_version": __version__}
        if self.init_from is not None:
            config["init_from"] = self.init_from
        if rewrite:
            self.folder.write_config(config)
            return
        if self.resumed:
            self.folder.resume(self.state.iteration, config)
            return
        if (self.run_dir / LATEST).exists():
            raise CharnnError(f"{self.run_dir} already holds a run; continue it with --resume "
                              f"{self.run_dir}, or give another --name or --out")
        self.folder.start(config)

    def _install_signal_handlers(self) -> dict:
        """Ctrl-C, SIGTERM and SIGHUP (a closed terminal) ask the loop to stop at the end of
        the current backend call and save."""
        previous = {}

        def handler(signum, frame):
            self.request_stop()

        for sig in STOP_SIGNALS:
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:                           # not the main thread
                pass
        return previous


def choose_backend(config: TrainConfig) -> str:
    """The backend that trains: --backend's, where 'auto' is the fastest CPU backend that runs
    the network, except on a GPU (--device cuda or mps) and under torchrun, where only the
    torch backend runs."""
    several = distributed.world_size() > 1
    if config.backend == "auto" and (config.device in ("cuda", "mps") or several):
        return "torch"
    if several and config.backend != "torch":
        raise SettingError(f"{distributed.world_size()} processes (torchrun) train together "
                           f"only on {setting('backend')} torch, not {config.backend}; give "
                           f"{setting('backend')} torch")
    return resolve_backend(config.backend, config.model, config.dtype)


def describe_network(config: TrainConfig) -> str:
    """The network in words: 'the vanilla RNN of 100 units', 'an LSTM of 2 layers of 128
    units, dropout 0.2 between them' (Network.describe)."""
    return Network.from_config(config).describe()


def memory_needed(config: TrainConfig, K: int) -> tuple[int, int]:
    """(parameters, bytes): the network's parameter count, and the memory its weights,
    optimiser state, gradients and working copies take while it trains."""
    weights = Network.from_config(config, K).param_count
    slots = {"adagrad": 1, "rmsprop": 1, "adam": 2}.get(config.optimizer, 2)
    # weights, optimiser state, the summed gradient, and the kernels' working copies and
    # per-group gradients (the weights once more per group of lanes, up to 8 groups)
    copies = 1 + slots + 1 + 2 + (min(config.batch_size, 8) if config.batch_size > 1 else 1)
    # the first draw of the weights is made in float64 whatever the dtype
    return weights, weights * (np.dtype(config.dtype).itemsize * copies + 8)


def check_memory(config: TrainConfig, K: int) -> None:
    """Refuse, before allocating anything, a model whose weights, optimiser state, gradients
    and working copies do not fit in this machine's memory."""
    weights, needed = memory_needed(config, K)
    available = memory_available()
    if available and needed > available:
        raise SettingError(f"{describe_network(config)} ({weights:,} parameters) needs about "
                           f"{describe(needed)} of memory for the weights, optimiser state and "
                           f"gradients, and this machine has {describe(available)} available; "
                           f"give a smaller {setting('hidden')}"
                           + (f" or fewer {setting('layers')}" if config.layers > 1 else ""))




# -- convenience ----------------------------------------------------------------------------

def resume_trainer(run: str | Path, corpus: Corpus | None = None, updates: int | None = None,
                   epochs: float | None = None, backend: str | None = None,
                   changes: dict | None = None, **kwargs) -> Trainer:
    """A Trainer that continues the run in folder `run` from its latest checkpoint, to its
    original length or to `updates` / `epochs`; `backend` may differ from the run's.
    `changes` sets other settings of config.RESUMABLE; any other setting is refused."""
    run = Path(run)
    ckpt = load_checkpoint(run / LATEST if run.is_dir() else run)
    config = TrainConfig.from_dict(ckpt.meta["config"])
    changes = dict(changes or {})
    if updates is not None or epochs is not None:
        changes.update(updates=updates, epochs=epochs)
    if backend is not None:
        changes["backend"] = backend
    if changes.get("backend") not in (None, "auto", "torch") and "device" not in changes:
        changes["device"] = "auto"                       # a GPU run resumed on a CPU backend
    fixed = [name for name in changes if name not in RESUMABLE]
    if fixed:
        flags = ", ".join(setting(name) for name in fixed)
        raise SettingError(f"{flags} cannot change when a run resumes (the checkpoint's network "
                           f"and data order are fixed); leave {flags} out, or start a new run")
    for name, value in changes.items():
        setattr(config, name, value)
    facts = ckpt.meta["corpus"]
    if corpus is None:
        source = facts.get("source")
        if source is None or (source != "shakespeare" and not Path(source).exists()):
            raise CharnnError(f"the text this run trained on ({facts['name']}) is not at "
                              f"{source}; give it: charnn train TEXT --resume {run}")
        corpus = load_corpus(source, encoding=facts.get("encoding", "utf-8"),
                             records=config.records, record_separator=config.record_separator)
    if corpus.sha256 != facts["sha256"]:
        raise CharnnError(f"{corpus.name} is not the text this run trained on (its hash "
                          "differs); give the original text to resume")
    init_from = ckpt.meta.get("init_from")
    if init_from is not None:                            # a fine-tuned run: the union vocabulary
        from .finetune import widen_corpus
        corpus = widen_corpus(corpus, Vocabulary(ckpt.meta["vocab"]))
    if Vocabulary(ckpt.meta["vocab"]) != corpus.vocab:
        raise CharnnError("the text's vocabulary differs from the checkpoint's; give the "
                          "original text to resume")
    run_dir = run if run.is_dir() else run.parent
    return Trainer(corpus, config, run_dir, state=state_from_checkpoint(ckpt),
                   init_from=init_from, **kwargs)
