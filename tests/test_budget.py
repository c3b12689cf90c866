"""`charnn train --time-limit T` without network flags: the network the budget buys
(charnn.budget), the rule's promises and the command line's use of it."""

import json

import numpy as np
import pytest

from charnn import budget
from charnn.cli import main
from charnn.config import TrainConfig
from charnn.corpus import load_corpus
from charnn.data import build_dataset, epoch_updates

from conftest import TINY_TEXT

RATE = budget.REFERENCE_RATE           # a machine as fast as the one the rule was fitted on


def test_a_bigger_budget_never_buys_a_smaller_network_and_a_smaller_text_more_dropout():
    widths, dropouts = [], []
    for minutes in (0.5, 1, 2, 3, 5, 10, 20, 60, 600):
        choice = budget.choose(60 * minutes, 4_000_000, RATE)
        widths.append((choice.settings["layers"], choice.settings["hidden"]))
        dropouts.append(choice.settings["dropout"])
    assert widths == sorted(widths) and len(set(widths)) == len(budget.LADDER)
    assert dropouts == sorted(dropouts)
    for minutes in (1, 3, 10):
        by_size = [budget.choose(60 * minutes, n, RATE).settings
                   for n in (100_000_000, 4_000_000, 1_000_000, 100_000)]
        for kind in ("dropout", "output_dropout"):
            dropped = [settings.get(kind, 0.0) for settings in by_size]
            assert dropped == sorted(dropped), kind
    # the 1 MB slice at 10 minutes (about 11 passes) drops out on the output too
    assert budget.choose(600, 900_000, RATE).settings["output_dropout"] == 0.3


def test_one_layer_only_where_the_text_needs_no_dropout():
    big = budget.choose(60, 4_300_000, RATE).settings
    small = budget.choose(60, 900_000, RATE).settings
    assert (big["layers"], big["dropout"]) == (1, 0.0)
    assert small["layers"] == 2 and small["hidden"] == big["hidden"]
    for minutes in (0.25, 0.5, 1, 2, 5, 20):
        for chars in (10_000, 300_000, 3_000_000, 30_000_000):
            chosen = budget.choose(60 * minutes, chars, RATE).settings
            TrainConfig(**chosen).validate()             # dropout only between layers
            # the output drops out only where the layers do, never more
            assert chosen.get("output_dropout", 0.0) <= chosen["dropout"]


def test_the_budget_is_counted_in_the_machines_own_speed():
    # twice the reference's speed buys in one minute what the fitting machine buys in two
    fast = budget.choose(60, 900_000, 2 * RATE)
    assert fast.settings == budget.choose(120, 900_000, RATE).settings
    assert fast.updates == pytest.approx(120 * RATE)
    slow = budget.choose(600, 900_000, RATE / 4)
    assert slow.settings == budget.choose(150, 900_000, RATE).settings


def test_the_choice_is_a_valid_config_and_states_its_reasons():
    choice = budget.choose(600, 900_000, RATE)
    config = TrainConfig(**choice.settings).validate()
    assert config.model == "gru" and config.min_eta == pytest.approx(config.eta / 10)
    rung = [r for r in budget.LADDER if choice.updates >= r.from_updates][-1]
    assert choice.passes == pytest.approx(600 * RATE * rung.speed * 32 * 50 / 900_000)
    line = choice.describe()
    assert "10m on 900,000 training characters" in line
    assert f"--hidden {config.hidden}" in line and "passes over the text" in line


def _tiny_ladder(monkeypatch, rate=RATE):
    """A ladder of networks small enough to train in a test, and a machine of speed `rate`."""
    monkeypatch.setattr(budget, "LADDER", (
        budget.Rung(layers=2, hidden=8, eta=0.01, speed=1.0, from_updates=0),
        budget.Rung(layers=2, hidden=12, eta=0.008, speed=0.5, from_updates=10**6)))
    monkeypatch.setattr(budget, "reference_rate", lambda corpus, config, announce: rate)


def _train(text, run, *flags, length=("--updates", "3")) -> dict:
    """Train a budget's run (of a length given, so that a slow or busy machine finishes it
    all the same); its saved config."""
    assert main(["train", str(text), "--time-limit", "3s", "--backend", "numpy", *length,
                 "--out", str(run), "--no-progress", "--sample-every", "10000", *flags]) == 0
    return json.loads((run / "config.json").read_text())["config"]


def test_a_time_limit_alone_trains_the_network_its_budget_buys(tmp_path, monkeypatch, capsys):
    _tiny_ladder(monkeypatch)
    text = tmp_path / "t.txt"
    text.write_text(TINY_TEXT * 4, encoding="utf-8")
    run = tmp_path / "run"
    saved = _train(text, run, "--batch-size", "4", "--seq-length", "10")
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("settings: chosen for 3s on ")
    assert ": --model gru --layers 2 --hidden 8 --dropout " in first
    # flags that do not state the network override the choice, and the line says so
    assert first.endswith(f"; with --seq-length 10 --batch-size 4 --updates 3 --backend numpy "
                          f"(every setting: {run / 'config.json'})")
    chars = budget.train_chars(build_dataset(load_corpus(text), TrainConfig()))
    choice = budget.choose(3.0, chars, RATE, most_chars=3 * 4 * 10)    # --updates caps it
    assert (saved["model"], saved["layers"], saved["hidden"], saved["dropout"]) == \
        ("gru", 2, 8, choice.settings["dropout"])
    assert (saved["batch_size"], saved["seq_length"], saved["eta"]) == (4, 10, 0.01)


@pytest.mark.parametrize("flags, network", [
    (["--preset", "assignment"], ("rnn", 1, 100)),
    (["--model", "lstm", "--hidden", "8"], ("lstm", 1, 8)),
    (["--hidden", "8"], ("rnn", 1, 8)),
])
def test_a_network_stated_on_the_command_line_is_trained_as_stated(flags, network, tmp_path,
                                                                   tiny_text_file, monkeypatch,
                                                                   capsys):
    def unexpected(*args):
        raise AssertionError("the budget's rule ran for a network the command line stated")
    monkeypatch.setattr(budget, "reference_rate", unexpected)
    run = tmp_path / "run"
    assert main(["train", str(tiny_text_file), "--time-limit", "1s", "--backend", "numpy",
                 "--updates", "2", "--out", str(run), "--no-progress", *flags]) == 0
    assert capsys.readouterr().out.startswith("settings: preset ")
    saved = json.loads((run / "config.json").read_text())["config"]
    assert (saved["model"], saved["layers"], saved["hidden"]) == network


def test_a_resumed_run_keeps_the_network_its_budget_chose(tmp_path, monkeypatch, capsys):
    _tiny_ladder(monkeypatch)
    text = tmp_path / "t.txt"
    text.write_text(TINY_TEXT * 4, encoding="utf-8")
    run = tmp_path / "run"
    _train(text, run, "--batch-size", "4", "--seq-length", "10")
    n = 3
    monkeypatch.setattr(budget, "reference_rate", lambda *a: pytest.fail("measured again"))
    assert main(["train", "--resume", str(run), "--updates", str(n + 3), "--time-limit",
                 "1m", "--no-progress"]) == 0
    saved = json.loads((run / "config.json").read_text())["config"]
    assert (saved["model"], saved["hidden"], saved["updates"]) == ("gru", 8, n + 3)


@pytest.mark.parametrize("flags", [
    [],
    ["--order", "shuffled", "--chunk-length", "100"],
    ["--records", "--record-separator", "\\n\\n"],
])
def test_a_short_text_gets_fewer_lanes_or_shorter_windows(flags, tmp_path, monkeypatch):
    _tiny_ladder(monkeypatch)
    text = tmp_path / "t.txt"
    text.write_text(TINY_TEXT + TINY_TEXT[:600], encoding="utf-8")
    saved = TrainConfig.from_dict(_train(text, tmp_path / "run", *flags))
    corpus = load_corpus(text, records=saved.records, record_separator=saved.record_separator)

    def epoch(lanes: int) -> int:
        config = TrainConfig.from_dict({**saved.to_dict(), "batch_size": lanes})
        return epoch_updates(build_dataset(corpus, config), config, 1)
    assert saved.batch_size < 32 and saved.seq_length == 50
    # the most lanes that give each epoch a few updates
    assert epoch(saved.batch_size) >= budget.MIN_EPOCH_UPDATES
    assert epoch(2 * saved.batch_size) < budget.MIN_EPOCH_UPDATES


def test_a_text_shorter_than_a_window_gets_shorter_windows(tmp_path, monkeypatch):
    _tiny_ladder(monkeypatch)
    text = tmp_path / "t.txt"
    text.write_text(TINY_TEXT[:120], encoding="utf-8")
    saved = _train(text, tmp_path / "run")
    assert (saved["batch_size"], saved["seq_length"]) == (1, 25)


def test_flags_beside_the_budget_override_its_choice(tmp_path, monkeypatch, capsys):
    _tiny_ladder(monkeypatch)
    text = tmp_path / "t.txt"
    text.write_text(TINY_TEXT * 4, encoding="utf-8")
    # an optimiser given without a learning rate brings its own (and the cosine's tenth)
    saved = _train(text, tmp_path / "a", "--optimizer", "adagrad", "--batch-size", "2")
    default = TrainConfig(optimizer="adagrad").eta
    assert (saved["optimizer"], saved["eta"], saved["min_eta"]) == \
        ("adagrad", default, pytest.approx(default / 10))
    # dropout does not state the network: the budget still chooses it, with that dropout
    saved = _train(text, tmp_path / "b", "--dropout", "0.15", "--batch-size", "2")
    assert (saved["model"], saved["hidden"], saved["dropout"]) == ("gru", 8, 0.15)
    # a length given caps the passes the dropout is chosen from
    capsys.readouterr()
    saved = _train(text, tmp_path / "c", "--batch-size", "2", length=("--epochs", "1"))
    assert "about 1.0 passes over the text" in capsys.readouterr().out
    assert saved["dropout"] == 0.0
    # where the rule drops out on the output too (10 passes), --dropout P sets P there as well
    # (so --dropout 0 drops nothing), unless --output-dropout is given
    ten = ("--epochs", "10")
    saved = _train(text, tmp_path / "d", "--batch-size", "4", length=ten)
    assert (saved["dropout"], saved["output_dropout"]) == (0.3, 0.3)
    saved = _train(text, tmp_path / "e", "--batch-size", "4", "--dropout", "0", length=ten)
    assert (saved["dropout"], saved["output_dropout"]) == (0.0, 0.0)
    saved = _train(text, tmp_path / "f", "--batch-size", "4", "--dropout", "0.15",
                   "--output-dropout", "0.05", length=ten)
    assert (saved["dropout"], saved["output_dropout"]) == (0.15, 0.05)


def test_the_reference_is_timed_on_the_backend_the_run_uses(tiny_text_file, monkeypatch):
    from charnn import backends
    timed = []
    real = backends.get_backend
    monkeypatch.setattr(backends, "get_backend",
                        lambda name, *a, **k: timed.append(name) or real(name, *a, **k))
    corpus = load_corpus(tiny_text_file)
    rate = budget.reference_rate(corpus, TrainConfig(backend="numpy"), seconds=0.2)
    assert timed == ["numpy"] and np.isfinite(rate) and rate > 0
