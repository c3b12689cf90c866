"""Data-parallel training with torch.distributed (gloo, on the CPU): two processes train the
model one process trains with the same global batch, a run moves between one and two
processes, and a stop signal on one process stops and saves them all."""

import csv
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("torch", reason='PyTorch is not installed (pip install -e ".[torch]")')
pytestmark = pytest.mark.slow                 # torchrun starts processes: seconds each

from charnn import TrainConfig, Trainer, load_checkpoint, load_corpus, resume_trainer  # noqa: E402
from charnn.errors import CharnnError, SettingError  # noqa: E402
from charnn.options import message_of  # noqa: E402

# a GRU of 2 layers with dropout, 5 lanes: 3 on rank 0 and 2 on rank 1
RUN = dict(model="gru", layers=2, dropout=0.2, hidden=8, batch_size=5, seq_length=10,
           optimizer="adam", eta=0.01, log_every=5, sample_every=10, sample_length=30,
           checkpoint_every=10, seed=3, backend="torch", device="cpu")


def flags(**settings) -> list[str]:
    return [part for name, value in settings.items()
            for part in (f"--{name.replace('_', '-')}", str(value))]


def environment() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    src = os.path.join(os.path.dirname(__file__), os.pardir, "src")
    env["PYTHONPATH"] = os.pathsep.join([os.path.abspath(src)] +
                                        [p for p in [env.get("PYTHONPATH")] if p])
    return env


def torchrun(*args, processes=2):
    """`torchrun --standalone --nproc-per-node N -m charnn ...`, as README shows it."""
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc-per-node={processes}", "-m", "charnn", *args],
                          env=environment(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def log_iterations(run):
    with open(run / "log.csv", newline="") as f:
        return [int(r["iteration"]) for r in csv.DictReader(f) if r["loss"]]


def test_two_processes_train_the_one_process_model_and_runs_move_between_them(tiny_text_file,
                                                                              tmp_path):
    corpus = load_corpus(tiny_text_file)
    Trainer(corpus, TrainConfig(**RUN, updates=30), tmp_path / "one").run()

    # two processes for 15 updates, then one process to 30
    two_then_one = tmp_path / "two-one"
    torchrun("train", str(tiny_text_file), *flags(**RUN, updates=15), "--out",
             str(two_then_one), "--no-progress")
    assert log_iterations(two_then_one) == [0, 5, 10, 15]         # rank 0 alone wrote the log
    assert load_checkpoint(two_then_one).h.shape == (5, 2, 1, 8)  # every lane's state
    resume_trainer(two_then_one, updates=30).run()

    # one process for 15 updates, then two processes to 30
    one_then_two = tmp_path / "one-two"
    Trainer(corpus, TrainConfig(**RUN, updates=15), one_then_two).run()
    done = torchrun("train", "--resume", str(one_then_two), "--updates", "30", "--no-progress")
    assert done.stdout.count("resuming") == 1 and done.stdout.count("done:") == 1
    assert log_iterations(one_then_two) == [0, 5, 10, 15, 20, 25, 30]

    one = load_checkpoint(tmp_path / "one")
    for run in (two_then_one, one_then_two):
        split = load_checkpoint(run)
        assert split.meta["state"]["iteration"] == 30
        for name, a in one.params.items():
            np.testing.assert_allclose(split.params[name], a, rtol=1e-9, atol=1e-12,
                                       err_msg=f"{run.name}: {name}")
        np.testing.assert_allclose(split.h, one.h, rtol=1e-9, atol=1e-12)
        assert split.meta["state"]["smooth_loss"] == pytest.approx(
            one.meta["state"]["smooth_loss"], rel=1e-9)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_stop_signal_on_one_process_saves_once_and_stops_every_process(tiny_text_file,
                                                                          tmp_path):
    run, port = tmp_path / "run", free_port()
    command = [sys.executable, "-m", "charnn", "train", str(tiny_text_file),
               *flags(**dict(RUN, checkpoint_every=10**6, sample_every=10**6)),
               "--updates", str(10**6), "--out", str(run), "--no-progress"]
    processes = [subprocess.Popen(command, env=dict(
        environment(), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
        RANK=str(rank), LOCAL_RANK=str(rank)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for rank in (0, 1)]
    try:
        deadline = time.monotonic() + 120
        while not ((run / "log.csv").exists() and len(log_iterations(run)) >= 2):
            assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
            time.sleep(0.2)
        processes[1].send_signal(signal.SIGINT)              # the process that writes nothing
        outputs = [p.communicate(timeout=60) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in processes] == [130, 130]
    assert "stopped at update" in outputs[0][1] and outputs[1] == ("", "")
    ckpt = load_checkpoint(run / "latest.npz")
    stopped = ckpt.meta["state"]["iteration"]
    assert 0 < stopped < 10**6 and ckpt.h.shape == (5, 2, 1, 8)
    assert f"stopped at update {stopped};" in outputs[0][1]
    assert not list(run.glob(".*.tmp"))                      # nothing half-written


def test_more_processes_than_lanes_or_a_cpu_backend_under_torchrun_are_refused(
        tiny_text_file, tmp_path, monkeypatch):
    corpus = load_corpus(tiny_text_file)
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(CharnnError, match="8 processes cannot share batch_size 5"):
        Trainer(corpus, TrainConfig(**RUN, updates=5), tmp_path / "a").run()
    with pytest.raises(CharnnError, match="only on backend torch"):
        Trainer(corpus, TrainConfig(**dict(RUN, backend="numpy", device="auto"), updates=5),
                tmp_path / "b")


def test_a_time_limit_alone_is_refused_under_torchrun(tiny_text_file, tmp_path, monkeypatch):
    # each process would time itself and fix a length of its own
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    trainer = Trainer(load_corpus(tiny_text_file), TrainConfig(**RUN, time_limit=60.0),
                      tmp_path / "run")
    with pytest.raises(SettingError, match="under torchrun give updates N or epochs E") as raised:
        trainer.run()
    # the command line says it with its flags
    assert "under torchrun give --updates N or --epochs E" in message_of(raised.value)
