"""--time-limit on a slow or busy machine, with a clock the test controls: the backend below
runs the numpy reference (so the run is real) but advances a fake clock by a set cost per
update and per character, so that a machine of any speed, a held-out part of any size and a
machine that slows down mid-run can be tried in a second."""

from __future__ import annotations

import json

import numpy as np
import pytest

from charnn import TrainConfig, Trainer, load_checkpoint, load_corpus
from charnn import train as train_module
from charnn.backends import reference
from charnn.backends.calls import NO_DROPOUT
from charnn.errors import CharnnError
from charnn.train import EVAL_SHARE, Evaluated


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TimedBackend:
    """The numpy reference, each call costing fake seconds: per_update for an update (times
    slowdown once the clock passes slow_after), per_char for a character read or scored."""
    NETWORKS, DTYPES = reference.NETWORKS, reference.DTYPES

    def __init__(self, clock, per_update, per_char, slow_after=float("inf"), slowdown=1.0):
        self.clock, self.per_update, self.per_char = clock, per_update, per_char
        self.slow_after, self.slowdown = slow_after, slowdown

    def train_updates(self, params, optimiser, h, windows, dropout=NO_DROPOUT):
        factor = self.slowdown if self.clock.now >= self.slow_after else 1.0
        self.clock.now += windows.count * self.per_update * factor
        return reference.train_updates(params, optimiser, h, windows, dropout)

    def total_loss(self, params, data, segments, h0=None):
        segments = np.asarray(segments).reshape(-1, 2)
        self.clock.now += float((segments[:, 1] - segments[:, 0]).sum()) * self.per_char
        return reference.total_loss(params, data, segments, h0)

    def advance(self, params, h, inputs):
        self.clock.now += len(inputs) * self.per_char
        return reference.advance(params, h, inputs)

    def sample_indices(self, params, h, x, uniforms, *args, **kwargs):
        self.clock.now += len(uniforms) * self.per_char
        return reference.sample_indices(params, h, x, uniforms, *args, **kwargs)

    def loss_and_gradients(self, *args, **kwargs):
        return reference.loss_and_gradients(*args, **kwargs)


@pytest.fixture
def text_file(tmp_path):
    rng = np.random.default_rng(7)
    words = ["the", "king", "shall", "not", "go", "to", "war", "and", "peace", "of", "mind"]
    text = "\n".join(" ".join(rng.choice(words, 8)) for _ in range(3000))   # ~120,000 chars
    path = tmp_path / "text.txt"
    path.write_text(text)
    return path


def timed_run(text_file, tmp_path, monkeypatch, limit, per_update, per_char, **options):
    """(trainer, state, seconds the run took on the fake clock, evaluation events)."""
    clock = FakeClock()
    backend = TimedBackend(clock, per_update, per_char, **options.pop("timing", {}))
    monkeypatch.setattr(train_module, "get_backend", lambda *a, **k: backend)
    config = TrainConfig(hidden=8, seq_length=10, backend="numpy", time_limit=limit,
                         log_every=50, sample_every=1_000, eval_every=500,
                         checkpoint_every=1_000, sample_length=50, **options)
    events = []
    trainer = Trainer(load_corpus(text_file), config, tmp_path / "run", on_event=events.append,
                      clock=clock)
    state = trainer.run()
    return trainer, state, clock.now, [e for e in events if isinstance(e, Evaluated)]


@pytest.mark.parametrize("val_frac", [0.0, 0.1, 0.5])
def test_a_run_ends_within_five_percent_of_its_time_limit(text_file, tmp_path, monkeypatch,
                                                           val_frac):
    # a held-out part whose full scoring (up to 60,000 characters at 0.5 ms each: 30 s) would
    # take most of the budget at every evaluation
    trainer, state, took, evaluations = timed_run(
        text_file, tmp_path, monkeypatch, 45.0, per_update=0.01, per_char=0.0005,
        val_frac=val_frac)
    assert 0.95 * 45 <= took <= 1.05 * 45, took
    assert state.iteration == trainer.config.updates >= 1_000 and not trainer.time_up
    if val_frac:
        assert len(evaluations) >= 2
        spent = sum(e.seconds for e in evaluations)
        assert spent <= 1.05 * EVAL_SHARE * 45, spent       # bounded, and the rest trains
        assert trainer.config.eval_chars < trainer.dataset.val_chars


def test_evaluations_too_slow_for_their_share_are_made_fewer(text_file, tmp_path, monkeypatch):
    # 2 ms a character: even MIN_EVAL_CHARS at every --eval-every would take a third of the
    # budget, so the run evaluates at its start and its end only
    trainer, state, took, evaluations = timed_run(
        text_file, tmp_path, monkeypatch, 45.0, per_update=0.01, per_char=0.002, val_frac=0.1)
    assert [e.iteration for e in evaluations] == [0, state.iteration]
    assert trainer.config.eval_every >= state.iteration
    assert 0.95 * 45 <= took <= 1.05 * 45, took


def test_a_machine_that_slows_down_mid_run_still_ends_on_time(text_file, tmp_path,
                                                              monkeypatch):
    # measured at 100 updates/s, then a second process takes half the machine
    trainer, state, took, _ = timed_run(
        text_file, tmp_path, monkeypatch, 60.0, per_update=0.01, per_char=0.001,
        val_frac=0.1, timing=dict(slow_after=10.0, slowdown=2.0))
    assert trainer.time_up and state.iteration < trainer.config.updates
    assert 0.95 * 60 <= took <= 1.05 * 60, took
    assert trainer._evaluated_at == state.iteration       # the best checkpoint is not older


def test_a_machine_faster_than_measured_ends_early_but_never_late(text_file, tmp_path,
                                                                 monkeypatch):
    trainer, state, took, _ = timed_run(
        text_file, tmp_path, monkeypatch, 30.0, per_update=0.01, per_char=0.001,
        timing=dict(slow_after=2.0, slowdown=0.99))
    assert state.iteration == trainer.config.updates
    assert 0.9 * 30 <= took <= 30


def test_a_budget_too_small_to_train_is_refused_before_the_run_starts(text_file, tmp_path,
                                                                     monkeypatch):
    with pytest.raises(CharnnError, match=r"time_limit 3s is too short .* at least \d+"):
        timed_run(text_file, tmp_path, monkeypatch, 3.0, per_update=0.5, per_char=0.001,
                  val_frac=0.1)
    assert not (tmp_path / "run" / "config.json").exists()
    assert not (tmp_path / "run" / "latest.npz").exists()


def test_the_command_line_names_the_flag_of_a_budget_too_short(tiny_text_file, tmp_path, capsys):
    from charnn.cli import main
    assert main(["train", str(tiny_text_file), "--time-limit", "0.01s", "--out",
                 str(tmp_path / "r"), "--backend", "numpy", "--hidden", "8",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--time-limit 0.01s is too short" in err
    assert "give a --time-limit of at least" in err


def test_the_printed_length_and_eval_chars_repeat_the_run(text_file, tmp_path, monkeypatch):
    messages = []
    clock = FakeClock()
    backend = TimedBackend(clock, 0.01, 0.0002)
    monkeypatch.setattr(train_module, "get_backend", lambda *a, **k: backend)
    config = TrainConfig(hidden=8, seq_length=10, backend="numpy", time_limit=20.0,
                         val_frac=0.3, eval_every=500, log_every=50)
    trainer = Trainer(load_corpus(text_file), config, tmp_path / "run",
                      announce=messages.append, clock=clock)
    trainer.run()
    c = trainer.config
    first, fixed = [m for m in messages if m.startswith("time limit 20s")]
    assert "held-out evaluations of" in first and "of the budget" in first
    assert f"--updates {c.updates} --eval-chars {c.eval_chars} in place of" in fixed
    assert c.eval_chars < trainer.dataset.val_chars and c.eval_every == 500


@pytest.mark.parametrize("schedule", [{}, {"lr_schedule": "cosine", "warmup_updates": 30,
                                           "min_eta": 0.01}])
def test_a_time_limited_run_is_the_run_of_the_updates_it_printed(text_file, tmp_path,
                                                                  monkeypatch, schedule):
    # its length is fixed after it has started, where no learning rate depends on it yet
    trainer, state, _, _ = timed_run(text_file, tmp_path / "limited", monkeypatch, 20.0,
                                     per_update=0.01, per_char=0.0002, val_frac=0.2,
                                     **schedule)
    c = trainer.config
    repeat = TrainConfig(hidden=8, seq_length=10, backend="numpy", log_every=50,
                         sample_every=1_000, eval_every=c.eval_every, checkpoint_every=1_000,
                         sample_length=50, val_frac=0.2, updates=c.updates,
                         eval_chars=c.eval_chars, **schedule)
    Trainer(load_corpus(text_file), repeat, tmp_path / "repeat").run()
    a = load_checkpoint(tmp_path / "limited" / "run")
    b = load_checkpoint(tmp_path / "repeat")
    for name, w in a.params.items():
        np.testing.assert_array_equal(w, b.params[name], err_msg=name)
    assert a.meta["config"]["updates"] == c.updates == state.iteration
    assert json.loads((tmp_path / "limited" / "run" / "config.json").read_text())[
        "config"]["updates"] == c.updates
    assert (tmp_path / "limited" / "run" / "samples.txt").read_text() == \
        (tmp_path / "repeat" / "samples.txt").read_text()


def test_a_run_its_copies_misjudged_still_fills_its_budget(text_file, tmp_path, monkeypatch):
    # the copies, timed first, run at 100 updates/s; the run itself, a third faster
    trainer, state, took, _ = timed_run(
        text_file, tmp_path, monkeypatch, 40.0, per_update=0.01, per_char=0.0002,
        val_frac=0.1, timing=dict(slow_after=2.0, slowdown=0.67))
    assert state.iteration == trainer.config.updates and not trainer.time_up
    assert 0.95 * 40 <= took <= 40, took
