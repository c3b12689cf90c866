"""Learning-rate schedules, --time-limit and --preset: what each promises, end to end."""

import json
import math

import numpy as np
import pytest

from charnn import TrainConfig, Trainer, load_checkpoint, load_corpus, resume_trainer
from charnn.backends import get_backend
from charnn.cli import main
from charnn.presets import PRESETS
from charnn.schedule import COSINE_STEPS, MIN_STEP_UPDATES, format_duration, learning_rate, parse_duration
from charnn.train import initial_state
from charnn.data import build_dataset, epoch_schedule
from charnn.backends.calls import Optimiser, Windows

FAST = dict(hidden=16, sample_every=10**6, log_every=10, eval_every=10**6,
            checkpoint_every=10**6)


def etas(schedule, eta, min_eta, warmup, total):
    """The eta of every update, and how many different calls the trainer would make."""
    out, calls, t = [], 0, 0
    while t < total:
        rate, until = learning_rate(schedule, eta, min_eta, warmup, t, total)
        assert until > t
        out += [rate] * (min(until, total) - t)
        t, calls = min(until, total), calls + 1
    return np.array(out), calls


def test_the_constant_schedule_is_one_eta_in_one_piece():
    rates, calls = etas("constant", 0.1, 0.0, 0, 1000)
    assert calls == 1 and (rates == 0.1).all()


def test_warmup_rises_linearly_then_holds():
    rates, _ = etas("constant", 0.1, 0.0, 10, 50)
    assert np.allclose(rates[:10], 0.1 * np.arange(1, 11) / 10) and (rates[10:] == 0.1).all()


@pytest.mark.parametrize("total", [7, 1000, 12_345])
def test_cosine_falls_from_eta_to_min_eta_in_at_most_its_steps(total):
    rates, calls = etas("cosine", 0.01, 0.001, 5, total)
    assert len(rates) == total
    after = rates[5:]
    assert after[0] == 0.01 and np.all(np.diff(after) <= 0)
    assert after[-1] >= 0.001 and calls <= 5 + COSINE_STEPS
    if total > COSINE_STEPS:                           # fine steps: the ends and the middle
        assert after[-1] < 0.001 + 0.01 * 1e-4
        steps = min(COSINE_STEPS, len(after) / MIN_STEP_UPDATES)
        assert abs(after[len(after) // 2] - 0.0055) < 0.01 * 5 / steps
    assert calls <= 5 + max(1, -(-len(after) // MIN_STEP_UPDATES))  # never a call of a few


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("1h30m", 5400),
                                           ("1.5h", 5400), ("600", 600), ("2m30s", 150)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10x", "m", "0", "-5m", "10m10m", "inf", "1h 3q"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_durations_are_shown_as_written():
    assert [format_duration(s) for s in (90, 600, 5400, 2.5)] == ["1m 30s", "10m", "1h 30m",
                                                                   "2.5s"]


# -- the trainer applies the schedule, the same however the run is split ------------------

def corpus(tiny_text_file):
    return load_corpus(tiny_text_file)


def test_the_trainer_gives_each_update_the_schedules_eta(tiny_text_file, tmp_path):
    """A cosine run equals the same updates made one at a time with learning_rate's eta."""
    text = corpus(tiny_text_file)
    config = TrainConfig(updates=40, optimizer="adam", eta=0.01, lr_schedule="cosine",
                         warmup_updates=7, min_eta=0.001, backend="numpy", **FAST)
    trained = Trainer(text, config, tmp_path / "run").run()

    state = initial_state(config, len(text.vocab))
    dataset = build_dataset(text, config)
    schedule = epoch_schedule(dataset, config, 1)
    backend = get_backend("numpy")
    assert len(schedule) >= 40                         # one epoch: no wrapping by hand
    for t in range(40):
        eta, _ = learning_rate("cosine", 0.01, 0.001, 7, t, 40)
        backend.train_updates(state.params, Optimiser("adam", state.opt_state, t,
                                                      eta, config.clip), state.h,
                              Windows(dataset.data, schedule.starts,
                                      schedule.lengths, schedule.resets, t, t + 1))
    for name, a in trained.params.items():
        assert np.array_equal(a, state.params[name]), name


def test_a_resumed_cosine_run_equals_the_whole_run(tiny_text_file, tmp_path):
    text = corpus(tiny_text_file)
    config = dict(updates=80, optimizer="adam", eta=0.01, lr_schedule="cosine",
                  warmup_updates=5, min_eta=0.0005, backend="numpy", **FAST)
    whole = Trainer(text, TrainConfig(**config), tmp_path / "whole").run()
    half = Trainer(text, TrainConfig(**config), tmp_path / "half")
    half.on_event = lambda e: half.request_stop() if getattr(e, "iteration", 0) >= 30 else None
    assert half.run().iteration < 80
    resumed = resume_trainer(tmp_path / "half").run()
    assert resumed.iteration == 80
    for name, a in whole.params.items():
        assert np.array_equal(a, resumed.params[name]), name


def test_the_compiled_backend_follows_the_same_schedule(tiny_text_file, tmp_path):
    text = corpus(tiny_text_file)
    config = dict(updates=50, optimizer="adam", eta=0.01, lr_schedule="cosine",
                  warmup_updates=5, batch_size=3, **FAST)
    runs = [Trainer(text, TrainConfig(**config, backend=b), tmp_path / b).run()
            for b in ("numpy", "compiled")]
    for name, a in runs[0].params.items():
        assert np.allclose(a, runs[1].params[name], rtol=1e-9, atol=1e-12), name


# -- a time limit ------------------------------------------------------------------------------

def test_a_time_limit_fixes_a_length_that_updates_repeats_exactly(tiny_text_file, tmp_path):
    text = corpus(tiny_text_file)
    said = []
    config = TrainConfig(time_limit=2.0, lr_schedule="cosine", optimizer="adam", eta=0.01,
                         backend="numpy", val_frac=0.1, **FAST)
    trainer = Trainer(text, config, tmp_path / "limited", announce=said.append)
    state = trainer.run()
    n = trainer.config.updates
    assert n >= 1 and f"--updates {n} " in said[-1]
    saved = json.loads((tmp_path / "limited" / "config.json").read_text())["config"]
    assert saved["updates"] == n and saved["time_limit"] == 2.0
    assert load_checkpoint(tmp_path / "limited").meta["config"]["updates"] == n
    if trainer.time_up:                      # a busy machine: the hard limit came first
        state = resume_trainer(tmp_path / "limited").run()
    assert state.iteration == n
    again = Trainer(text, TrainConfig(updates=n, lr_schedule="cosine", optimizer="adam",
                                      eta=0.01, backend="numpy", val_frac=0.1, **FAST),
                    tmp_path / "again").run()
    for name, a in state.params.items():
        assert np.array_equal(a, again.params[name]), name


def test_with_updates_a_time_limit_is_a_cap(tiny_text_file, tmp_path):
    text = corpus(tiny_text_file)
    config = TrainConfig(updates=10**9, time_limit=0.5, backend="numpy", **FAST)
    trainer = Trainer(text, config, tmp_path / "capped")
    state = trainer.run()
    assert trainer.time_up and 0 < state.iteration < 10**9
    assert trainer.config.updates == 10**9                 # the length is the one given


def test_a_run_stopped_by_its_time_limit_is_scored_where_it_stopped(tiny_text_file, tmp_path):
    # eval_every is far away: without a last evaluation the best checkpoint would be the
    # untrained model of update 0
    config = TrainConfig(updates=10**9, time_limit=1.0, backend="numpy", val_frac=0.1, **FAST)
    trainer = Trainer(corpus(tiny_text_file), config, tmp_path / "capped")
    state = trainer.run()
    assert trainer.time_up and state.iteration > 0
    rows = (tmp_path / "capped" / "log.csv").read_text().splitlines()
    header, last_scored = rows[0].split(","), None
    for row in rows[1:]:
        values = dict(zip(header, row.split(",")))
        if values.get("val_loss"):
            last_scored = int(values["iteration"])
    assert last_scored == state.iteration
    assert state.best_iteration > 0


# -- the command line --------------------------------------------------------------------------

CLI_FAST = ["--backend", "numpy", "--sample-every", "1000", "--log-every", "10",
            "--no-progress"]


def test_time_limit_on_the_command_line(tiny_text_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_text_file), "--time-limit", "2s", "--hidden", "16",
                 "--out", str(run), *CLI_FAST]) == 0
    out = capsys.readouterr().out
    n = json.loads((run / "config.json").read_text())["config"]["updates"]
    assert f"so it is {n:,} updates (--updates {n} in place of --time-limit" in out
    assert "--time-limit 2s" in out.splitlines()[0]        # the settings line
    # the run's length is fixed; a preset may not change it, but a resumed session can go
    # further and be capped by a time limit of its own
    assert main(["train", "--resume", str(run), "--preset", "best-cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--preset" in err
    assert main(["train", "--resume", str(run), "--updates", str(n + 5), "--time-limit", "1m",
                 "--no-progress"]) == 0
    meta = load_checkpoint(run).meta
    assert meta["state"]["iteration"] == n + 5 and meta["config"]["updates"] == n + 5


@pytest.mark.parametrize("flags, word", [
    (["--time-limit", "10x"], "--time-limit"),
    (["--time-limit", "0s"], "--time-limit"),
    (["--lr-schedule", "linear"], "--lr-schedule"),
    (["--warmup-updates", "-1"], "--warmup-updates"),
    (["--min-eta", "1", "--eta", "0.1"], "--min-eta"),
    (["--preset", "fastest"], "--preset"),
])
def test_bad_schedule_flags_are_one_line(tiny_text_file, tmp_path, capsys, flags, word):
    try:                                  # argparse exits; a CharnnError is main's status
        status = main(["train", str(tiny_text_file), "--out", str(tmp_path / "r"), *CLI_FAST,
                       *flags])
    except SystemExit as exit_:
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and word in err, err


def test_a_preset_gives_its_settings_and_flags_override_them(tiny_text_file, tmp_path, capsys):
    run, longer = tmp_path / "run", tmp_path / "longer.txt"
    longer.write_text(tiny_text_file.read_text() * 20)     # streams for the preset's batch
    assert main(["train", str(longer), "--preset", "best-cpu", "--hidden", "16",
                 "--updates", "20", "--out", str(run), *CLI_FAST]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    saved = json.loads((run / "config.json").read_text())["config"]
    for name, value in PRESETS["best-cpu"].items():
        if name != "hidden":
            assert saved[name] == value, name
            assert f"--{name.replace('_', '-')} " not in first      # the preset's own: quiet
    assert saved["hidden"] == 16
    # only what differs from the preset, and where every setting is
    assert first == (f"settings: preset best-cpu with --hidden 16 --updates 20 --sample-every "
                     f"1000 --log-every 10 --backend numpy (every setting: {run / 'config.json'})")


def test_the_default_run_says_its_preset_in_a_short_line(tiny_text_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_text_file), "--updates", "3", "--out", str(run),
                 "--no-progress", "--backend", "numpy"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (f"settings: preset assignment with --updates 3 --backend numpy "
                     f"(every setting: {run / 'config.json'})")


def test_a_new_eta_keeps_the_presets_schedule_in_proportion(tiny_text_file, tmp_path):
    run, longer = tmp_path / "run", tmp_path / "longer.txt"
    longer.write_text(tiny_text_file.read_text() * 20)
    preset = PRESETS["best-cpu"]
    assert main(["train", str(longer), "--preset", "best-cpu", "--hidden", "8", "--eta",
                 "0.0001", "--updates", "2", "--out", str(run), *CLI_FAST]) == 0
    saved = json.loads((run / "config.json").read_text())["config"]
    assert saved["min_eta"] == pytest.approx(0.0001 * preset["min_eta"] / preset["eta"])


def test_the_assignment_preset_is_the_defaults(tiny_text_file, tmp_path, capsys):
    assert PRESETS["assignment"] == {}
    run = tmp_path / "run"
    assert main(["train", str(tiny_text_file), "--preset", "assignment", "--updates", "10",
                 "--out", str(run), *CLI_FAST]) == 0
    saved = json.loads((run / "config.json").read_text())["config"]
    expected = TrainConfig(updates=10, backend="numpy", sample_every=1000, log_every=10)
    assert saved == expected.to_dict()


def test_the_presets_are_listed_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--preset {assignment,best-cpu,fine-tune}" in out and "--time-limit DURATION" in out
    assert "--lr-schedule" in out and "best-cpu (" in out and "fine-tune (" in out
