"""Nothing is lost: resuming never destroys history, one writer per run folder, every signal
that ends a run saves, and a stop request is honoured inside a long stretch of updates."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from charnn import TrainConfig, Trainer, load_checkpoint, load_corpus, resume_trainer
from charnn.cli import main
from charnn.errors import CharnnError
from charnn.run_folder import RunFolder

SMALL = dict(hidden=16, backend="numpy", sample_every=50, sample_length=30, log_every=10,
             checkpoint_every=100, seed=2)


def log_rows(run):
    with open(run / "log.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k != "elapsed"} for r in csv.DictReader(f)]


def test_a_run_killed_between_checkpoints_resumes_without_repeating_samples(tiny_text_file,
                                                                             tmp_path):
    corpus = load_corpus(tiny_text_file)
    Trainer(corpus, TrainConfig(updates=300, **SMALL), tmp_path / "whole").run()
    # killed (no chance to save) at update 160: the log and the samples have gone past the
    # checkpoint of update 100
    script = textwrap.dedent(f"""
        import os
        from charnn import TrainConfig, Trainer, load_corpus
        from charnn.train import Sampled
        def kill_at_150(event):
            if isinstance(event, Sampled) and event.iteration == 150:
                os._exit(9)
        Trainer(load_corpus({str(tiny_text_file)!r}), TrainConfig(updates=300, **{SMALL!r}),
                {str(tmp_path / "split")!r}, on_event=kill_at_150).run()
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    split = tmp_path / "split"
    assert load_checkpoint(split).meta["state"]["iteration"] == 100
    assert "iter 150 ," in (split / "samples.txt").read_text()

    resume_trainer(split).run()
    for name in ("samples.txt", "samples.jsonl"):
        assert (split / name).read_text() == (tmp_path / "whole" / name).read_text(), name
    assert log_rows(split) == log_rows(tmp_path / "whole")


def test_a_kill_while_the_log_is_cut_back_leaves_the_log_whole(tiny_text_file, tmp_path,
                                                               monkeypatch):
    corpus = load_corpus(tiny_text_file)
    run = tmp_path / "run"

    def stop_at_150(event):
        if getattr(event, "iteration", 0) == 150:
            trainer.request_stop()

    trainer = Trainer(corpus, TrainConfig(updates=300, **SMALL), run, on_event=stop_at_150)
    trainer.run()
    before = (run / "log.csv").read_text()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(csv.DictWriter, "writerows", killed)
    with pytest.raises(KeyboardInterrupt):
        resume_trainer(run).run()
    assert (run / "log.csv").read_text() == before
    assert not list(run.glob(".*.tmp"))


def test_leftovers_of_killed_saves_are_removed_at_the_next_start(tiny_text_file, tmp_path):
    corpus = load_corpus(tiny_text_file)
    run = tmp_path / "run"
    Trainer(corpus, TrainConfig(updates=100, **SMALL), run).run()
    leftover = run / ".latest.npz.12345.tmp"
    leftover.write_bytes(b"half a checkpoint")
    resume_trainer(run, updates=120).run()
    assert not leftover.exists()


def test_a_second_writer_is_refused_with_the_holders_pid(tiny_text_file, tmp_path, capsys):
    corpus = load_corpus(tiny_text_file)
    run = tmp_path / "run"
    Trainer(corpus, TrainConfig(updates=100, **SMALL), run).run()
    holder = RunFolder(run)
    holder.acquire()
    try:
        assert main(["train", "--resume", str(run), "--updates", "200"]) == 2
        err = capsys.readouterr().err
        assert f"pid {os.getpid()}" in err and err.count("\n") == 1
        with pytest.raises(CharnnError, match="another charnn process"):
            resume_trainer(run, updates=200).run()
    finally:
        holder.release()
    assert resume_trainer(run, updates=120).run().iteration == 120


def test_a_killed_writer_leaves_no_stale_lock(tiny_text_file, tmp_path):
    corpus = load_corpus(tiny_text_file)
    run = tmp_path / "run"
    Trainer(corpus, TrainConfig(updates=100, **SMALL), run).run()
    script = (f"import os; from charnn.run_folder import RunFolder; "
              f"RunFolder({str(run)!r}).acquire(); os._exit(9)")
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    assert resume_trainer(run, updates=120).run().iteration == 120


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_every_signal_that_ends_a_run_saves_within_a_long_stretch_of_updates(
        tiny_text_file, tmp_path, sig):
    # one stretch between log rows is 10^8 updates (hours): only the quarter-second slices
    # of the backend calls let the run notice the signal
    run = tmp_path / "run"
    every = "100000000"
    process = subprocess.Popen(
        [sys.executable, "-m", "charnn.cli", "train", str(tiny_text_file), "--out", str(run),
         "--updates", "1000000000", "--backend", "numpy", "--hidden", "8", "--log-every",
         every, "--sample-every", every, "--checkpoint-every", every, "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:                      # the loop is running once update 0 is
        if line.startswith("iter 0 ,"):             # sampled
            break
    time.sleep(1.0)
    process.send_signal(sig)
    try:
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "continue with: charnn train --resume" in err
    iteration = load_checkpoint(run).meta["state"]["iteration"]
    assert 0 < iteration < 1_000_000_000


def test_flags_that_would_change_the_network_are_refused_on_resume(tiny_text_file, tmp_path,
                                                                   capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_text_file), "--out", str(run), "--updates", "100",
                 "--no-progress", "--backend", "numpy", "--hidden", "16"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--hidden", "32", "--seq-length", "25"]) == 2
    err = capsys.readouterr().err
    assert "--hidden (the run has 16)" in err and "--seq-length (the run has 25)" in err
    assert err.count("\n") == 1
    assert main(["train", "--resume", str(run), "--out", str(tmp_path / "elsewhere")]) == 2
    assert "stays in its folder" in capsys.readouterr().err

    assert main(["train", "--resume", str(run), "--updates", "150", "--eta", "0.05",
                 "--log-every", "25", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "--eta 0.05 (was 0.1)" in out and "--log-every 25 (was 100)" in out
    meta = load_checkpoint(run).meta
    assert meta["state"]["iteration"] == 150 and meta["config"]["eta"] == 0.05
    assert json.loads((run / "config.json").read_text())["config"]["log_every"] == 25
