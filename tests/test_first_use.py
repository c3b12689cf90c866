"""A fresh install: sampling, eval of a short text and inspect never wait for kernels that
are not compiled yet (the numpy reference does the job, and says so); a long job compiles
what it needs, announced; nothing is printed before a bad prime is refused."""

import numpy as np
import pytest

import charnn
from charnn import trained
from charnn.backends.compiled import cache
from charnn.cli import main


@pytest.fixture
def nothing_compiled(tmp_path, monkeypatch):
    """A machine on which no kernel group is compiled yet (the markers live in tmp_path)."""
    folder = tmp_path / "markers"
    folder.mkdir()
    monkeypatch.setattr(cache, "_marker", lambda family, job, dtype:
                        folder / f"{family}-{job}-{np.dtype(dtype).name}.ok")
    return folder


def test_sample_on_a_fresh_machine_runs_on_numpy_and_says_why(nothing_compiled, capsys):
    assert main(["sample", "-n", "300", "--seed", "4", "--prime", "ROMEO:"]) == 0
    out, err = capsys.readouterr()
    assert "backend numpy (auto: the compiled kernels for this network in float32 are not " \
           "compiled on this machine yet" in err
    assert "compiling" not in err and not list(nothing_compiled.iterdir())
    # the same draw as the reference named explicitly
    assert main(["sample", "-n", "300", "--seed", "4", "--prime", "ROMEO:",
                 "--backend", "numpy"]) == 0
    assert capsys.readouterr().out == out


def test_a_compiled_machine_samples_on_the_compiled_kernels(nothing_compiled, capsys):
    for job in ("sample", "evaluate"):
        (nothing_compiled / f"gru-{job}-float32.ok").touch()       # the shipped GRU
    model = charnn.load("shakespeare", announce=print)
    assert model.backend_name == "compiled" and capsys.readouterr().out == ""


def test_eval_of_a_long_text_compiles_what_it_needs_announced(nothing_compiled, tmp_path,
                                                               monkeypatch, capsys):
    text = tmp_path / "verse.txt"
    text.write_text("To be, or not to be, that is the question:\n" * 20)
    assert main(["eval", "shakespeare", str(text)]) == 0        # short: the reference
    err = capsys.readouterr().err
    assert "backend numpy" in err and "compiling" not in err
    monkeypatch.setattr(trained, "NUMPY_SECONDS", 0.0)           # as if the text were long
    assert main(["eval", "shakespeare", str(text)]) == 0
    err = capsys.readouterr().err
    assert "backend compiled: the numpy reference would take about" in err
    assert "compiling the kernels this needs, once for this machine: GRU" in err
    assert (nothing_compiled / "gru-evaluate-float32.ok").exists()


def test_inspect_on_a_fresh_machine_does_not_wait(nothing_compiled, capsys):
    assert main(["inspect", "shakespeare", "--max-chars", "300"]) == 0
    err = capsys.readouterr().err
    assert "backend numpy" in err and "compiling" not in err


def test_a_prime_the_model_never_saw_is_refused_before_any_output(capsys):
    assert main(["sample", "-n", "50", "--prime", "ROMEO: ☃"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "never saw" in err.splitlines()[-1]   # after the note of which model


def test_a_vanilla_rnn_dropped_out_on_its_output_compiles_the_stacks_training_kernels():
    # one layer's own kernels drop nothing, so such a run trains on the stack's: those are the
    # kernels its first use compiles (announced) and asks for, while sampling stays on its own
    from charnn.networks import Network
    plain, dropped = Network("rnn", 1, 8, 5), Network("rnn", 1, 8, 5, output_dropout=0.2)
    assert cache._family_for(plain, "train-batch") == "rnn"
    assert cache._family_for(dropped, "train-batch") == "rnn-stack"
    assert cache._family_for(dropped, "train-one") == "rnn-stack"
    assert cache._family_for(dropped, "sample") == cache._family_for(dropped, "evaluate") == "rnn"
    assert cache._family_for(Network("gru", 1, 8, 5, output_dropout=0.2), "train-batch") == "gru"
