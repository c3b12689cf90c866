"""The command line end to end, as a user runs it, in a temporary folder."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from charnn.cli import main

FAST = ["--backend", "numpy", "--hidden", "16", "--sample-every", "100", "--log-every", "50"]


def charnn(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "charnn.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def test_train_sample_eval_gradcheck_end_to_end(tiny_text_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_text_file), "--updates", "200", "--out", str(run),
                 "--no-progress", *FAST]) == 0
    out = capsys.readouterr().out
    assert "iter 0 , epoch 1 , smooth loss" in out and "iter 200 , epoch" in out
    assert (run / "loss.png").exists() and (run / "best.npz").exists()

    assert main(["sample", str(run), "-n", "80", "--prime", "All:", "--seed", "3",
                 "--backend", "numpy"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("All:") and len(first) == len("All:") + 80 + 1
    assert main(["sample", str(run / "best.npz"), "-n", "80", "--prime", "All:", "--seed", "3",
                 "--backend", "numpy"]) == 0
    assert capsys.readouterr().out == first            # a run folder samples its best.npz
    assert main(["sample", str(run), "-n", "80", "--prime", "All:", "--seed", "3",
                 "--backend", "compiled"]) == 0
    assert capsys.readouterr().out == first            # either backend, the same text

    assert main(["eval", str(run), str(tiny_text_file), "--backend", "numpy"]) == 0
    assert "bits/char" in capsys.readouterr().out

    assert main(["gradcheck", str(tiny_text_file)]) == 0
    table = capsys.readouterr().out
    for name in ("W_ih0", "W_hh0", "b_ih0", "V", "c"):    # the assignment's U, W, b, V, c
        assert f"\n{name} " in table
    assert "all gradients pass" in table


def test_sampling_with_a_seed_is_reproducible(tiny_text_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_text_file), "--updates", "100", "--out", str(run),
                 "--no-progress", *FAST]) == 0
    capsys.readouterr()
    texts = []
    for seed in (7, 7, 8):
        assert main(["sample", str(run), "-n", "200", "--seed", str(seed),
                     "--backend", "numpy"]) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] != texts[2]


def test_resume_from_the_command_line_continues_the_run(tiny_text_file, tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", str(tiny_text_file), "--updates", "100", "--out", str(run), "--no-progress", *FAST])
    assert main(["train", "--resume", str(run), "--updates", "150", "--no-progress"]) == 0
    from charnn import load_checkpoint
    assert load_checkpoint(run).meta["state"]["iteration"] == 150


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_a_checkpoint_before_exiting(tiny_text_file, tmp_path, signum):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "charnn.cli", "train", str(tiny_text_file),
                             "--updates", "10000000", "--out", str(run), "--no-progress", *FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (run / "log.csv").exists():
        time.sleep(0.1)
    while time.time() < deadline and (run / "log.csv").read_text().count("\n") < 5:
        time.sleep(0.1)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    from charnn import load_checkpoint
    assert load_checkpoint(run).meta["state"]["iteration"] > 0


# -- bad input: one line, exit status 2, no traceback ----------------------------------------

def assert_clean_error(result, *words):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def trained_run(tiny_text_file, tmp_path):
    run = tmp_path / "trained"
    assert main(["train", str(tiny_text_file), "--updates", "60", "--out", str(run),
                 "--no-progress", *FAST]) == 0
    return run


def test_missing_file(tmp_path):
    assert_clean_error(charnn("train", tmp_path / "nope.txt", *FAST), "no such file")


def test_empty_file(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    assert_clean_error(charnn("train", tmp_path / "empty.txt", *FAST), "empty")


def test_text_shorter_than_seq_length(tmp_path):
    (tmp_path / "short.txt").write_text("too short")
    assert_clean_error(charnn("train", tmp_path / "short.txt", *FAST), "--seq-length")


def test_undecodable_bytes(tmp_path):
    (tmp_path / "latin.txt").write_bytes("caf\xe9 ".encode("latin-1") * 20)
    assert_clean_error(charnn("train", tmp_path / "latin.txt", *FAST), "--encoding")


def test_other_encodings_are_read_with_encoding(tmp_path):
    (tmp_path / "latin.txt").write_bytes("caf\xe9 au lait, ".encode("latin-1") * 20)
    result = charnn("train", tmp_path / "latin.txt", "--encoding", "latin-1", "--updates", "20",
                    "--out", tmp_path / "r", "--no-progress", *FAST)
    assert result.returncode == 0, result.stderr


def test_prime_outside_the_vocabulary(trained_run):
    assert_clean_error(charnn("sample", trained_run, "--prime", "Zebra", "--backend", "numpy"),
                       "prime", "'Z")


def test_corrupt_checkpoint(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"this is not a checkpoint at all")
    assert_clean_error(charnn("sample", tmp_path / "bad.npz", "--backend", "numpy"), "bad.npz")


def test_truncated_checkpoint(trained_run, tmp_path):
    data = (trained_run / "latest.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    assert_clean_error(charnn("sample", tmp_path / "cut.npz", "--backend", "numpy"), "cut.npz")


def test_foreign_checkpoint(tmp_path):
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(3))
    assert_clean_error(charnn("sample", tmp_path / "foreign.npz", "--backend", "numpy"),
                       "not a charnn checkpoint")


def test_checkpoint_of_a_newer_format(trained_run, tmp_path):
    with np.load(trained_run / "latest.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes())
    meta["version"] = 99
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(tmp_path / "future.npz", **arrays)
    assert_clean_error(charnn("sample", tmp_path / "future.npz", "--backend", "numpy"),
                       "newer", "upgrade")


@pytest.mark.parametrize("flags,word", [
    (["--hidden", "0"], "--hidden"),
    (["--seq-length", "-3"], "--seq-length"),
    (["--eta", "0"], "--eta"),
    (["--eta", "-0.1"], "--eta"),
    (["--batch-size", "0"], "--batch-size"),
    (["--epochs", "0"], "--epochs"),
    (["--val-frac", "1.5"], "--val-frac"),
    (["--hidden", "many"], "--hidden"),
])
def test_impossible_settings(tiny_text_file, flags, word):
    assert_clean_error(charnn("train", tiny_text_file, "--backend", "numpy", *flags), word)


def test_an_existing_run_is_never_overwritten(trained_run, tiny_text_file):
    before = (trained_run / "latest.npz").read_bytes()
    assert_clean_error(charnn("train", tiny_text_file, "--out", trained_run, *FAST), "--resume")
    assert (trained_run / "latest.npz").read_bytes() == before


@pytest.mark.parametrize("batch", ["1", "3"])
def test_record_corpus_trains_and_samples_whole_records(tmp_path, capsys, batch):
    names = ["anna", "bertil", "cecilia", "david", "erik", "frida", "gustav", "hanna"] * 8
    path = tmp_path / "names.txt"
    path.write_text("\n".join(names) + "\n")
    run = tmp_path / "run"
    assert main(["train", str(path), "--records", "--updates", "300", "--out", str(run),
                 "--no-progress", "--order", "shuffled", "--val-frac", "0.1", "--batch-size",
                 batch, *FAST]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--count", "5", "--seed", "2", "--max-length", "30",
                 "--backend", "numpy"]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert len(lines) == 6 and lines[-1] == ""            # five records, one per line
    assert all(0 < len(line) <= 30 and "\x1e" not in line for line in lines[:5])


def test_resuming_a_finished_run_asks_for_a_longer_one(trained_run):
    before = (trained_run / "samples.txt").read_text()
    assert_clean_error(charnn("train", "--resume", trained_run), "--updates")
    assert (trained_run / "samples.txt").read_text() == before


# -- faults a user meets: one clear line each, never a traceback ----------------------------

def clean_error(capsys, *words):
    err = capsys.readouterr().err
    assert err.startswith("charnn: error:") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err
    return err


def test_an_output_folder_that_cannot_be_written(tiny_text_file, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["train", str(tiny_text_file), "--out", str(blocker / "run"), *FAST]) == 2
    clean_error(capsys, "cannot create the run folder", "another --out")


def test_a_read_only_run_folder(tiny_text_file, tmp_path, capsys, monkeypatch):
    # the tests may run as root, whom file modes do not stop: the refusal is simulated
    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr("charnn.run_folder.write_atomically", read_only)
    assert main(["train", str(tiny_text_file), "--out", str(tmp_path / "run"), *FAST]) == 2
    clean_error(capsys, "Permission denied", "permissions")


def test_a_disk_that_is_full_at_the_start(tiny_text_file, tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("charnn.run_folder.write_atomically", full)
    assert main(["train", str(tiny_text_file), "--out", str(tmp_path / "run"), *FAST]) == 2
    clean_error(capsys, "No space left on device", "free some disk space")


def test_a_network_too_big_for_the_memory_says_how_much_it_needs(tiny_text_file, tmp_path,
                                                                 capsys):
    assert main(["train", str(tiny_text_file), "--hidden", "100000", "--out",
                 str(tmp_path / "run"), "--backend", "numpy"]) == 2
    clean_error(capsys, "the vanilla RNN of 100000 units", "needs about", "GiB of memory",
                "smaller --hidden")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [["sample", "RUN"], ["gradcheck"]])
def test_a_negative_seed_is_refused(trained_run, capsys, command):
    argv = [str(trained_run) if a == "RUN" else a for a in command] + ["--seed", "-1"]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--seed" in err and "negative" in err and err.count("\n") == 1


def test_a_damaged_log_is_named_on_resume(trained_run, capsys):
    with open(trained_run / "log.csv", "a") as f:
        f.write("12,x,garbage\n")
    assert main(["train", "--resume", str(trained_run), "--updates", "80"]) == 2
    clean_error(capsys, "log.csv is damaged", "move it aside")


def test_a_log_row_cut_short_by_a_kill_is_dropped_on_resume(trained_run, capsys):
    with open(trained_run / "log.csv", "a") as f:
        f.write("70,1,3.1")                          # no newline: the kill came mid-row
    assert main(["train", "--resume", str(trained_run), "--updates", "80", "--no-progress"]) == 0
    assert "3.1\n" not in (trained_run / "log.csv").read_text()


@pytest.mark.parametrize("damage", ["config", "log"])
def test_report_from_a_run_with_a_damaged_file(trained_run, tmp_path, capsys, damage):
    if damage == "config":
        (trained_run / "config.json").write_text("{ half a json")
        # the checkpoints hold every setting: the report does not need config.json
        assert main(["report", "--from", str(trained_run), "--out", str(tmp_path / "rep"),
                     "--backend", "numpy", "--no-progress"]) in (0, 1)
        assert (tmp_path / "rep" / "report.html").exists()
    else:
        (trained_run / "log.csv").write_text("iteration,epoch\n1,2,3,4\n")
        assert main(["report", "--from", str(trained_run), "--out", str(tmp_path / "rep"),
                     "--backend", "numpy", "--no-progress"]) == 2
        clean_error(capsys, "log.csv is damaged")


def test_a_diverging_run_stops_with_a_message_and_keeps_the_last_good_checkpoint(
        tiny_text_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_text_file), "--out", str(run), "--updates", "100",
                 "--no-progress", *FAST]) == 0
    good = (run / "latest.npz").read_bytes()
    capsys.readouterr()
    for backend in ("numpy", "compiled"):
        assert main(["train", "--resume", str(run), "--updates", "400", "--eta", "1e6",
                     "--clip", "1e9", "--backend", backend, "--no-progress"]) == 2
        clean_error(capsys, "diverged", "update 100", "lower --eta")
        assert (run / "latest.npz").read_bytes() == good


def test_progress_in_a_log_file_is_plain_lines(tiny_text_file, tmp_path, capsys):
    # stderr captured by pytest is not a terminal, as when it is piped to a file
    assert main(["train", str(tiny_text_file), "--out", str(tmp_path / "run"),
                 "--updates", "300", *FAST]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "update 300/300 (100%) | epoch" in err
    assert len(err.splitlines()) <= 3


@pytest.mark.parametrize("model", ["rnn", "lstm", "gru"])
def test_a_stacked_network_trains_resumes_samples_and_evaluates(tiny_text_file, tmp_path, capsys,
                                                                 model):
    run = tmp_path / model
    flags = ["--model", model, "--layers", "2", "--hidden", "12", "--dropout", "0.1",
             "--batch-size", "2", "--optimizer", "adam", "--eta", "0.01", "--sample-every",
             "60", "--log-every", "20", "--no-progress", "--val-frac", "0.2",
             "--eval-every", "60"]
    assert main(["train", str(tiny_text_file), "--updates", "60", "--out", str(run),
                 *flags]) == 0
    assert main(["train", "--resume", str(run), "--updates", "120", "--no-progress"]) == 0
    capsys.readouterr()
    for options in ([], ["--top-k", "3"], ["--top-p", "0.8", "--temperature", "0.7"],
                    ["--greedy"], ["--stop-at", "\\n"], ["--count", "2"], ["--zero-state"]):
        assert main(["sample", str(run), "-n", "40", "--prime", "All:", "--seed", "2",
                     *options]) == 0, options
        assert capsys.readouterr().out.startswith("All:")
    assert main(["eval", str(run), str(tiny_text_file)]) == 0
    assert "bits/char" in capsys.readouterr().out
    assert main(["train", str(tiny_text_file), "--model", model, "--layers", "2",
                 "--dropout", "0.2", "--updates", "30", "--backend", "compiled",
                 "--out", str(tmp_path / "c")]) == 0
    assert "backend compiled" in capsys.readouterr().out
