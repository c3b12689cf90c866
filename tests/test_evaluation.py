"""Held-out figures: scored as the model is used, stable under moving the start, and equal
wherever charnn shows them (validation, best checkpoint, report, `charnn eval`)."""

import math

import numpy as np
import pytest

import charnn
from charnn import TrainConfig, Trainer, load_checkpoint, load_corpus
from charnn.checkpoint import save_checkpoint
from charnn.cli import main
from charnn.evaluation import WARMUP, warmup_length

LINES = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
         "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved.\n\n"
         "MENENIUS:\nWhat work's, my countrymen, in hand? where go you\nWith bats and clubs?\n\n")


def latch_model(tmp_path, text: str):
    """A checkpoint whose network has two stable states, set by the first character it reads
    from h = 0: the character 'q' latches unit 0 to +1, where the output predicts 'q' with
    near certainty (every other character then costs nats more); any other first character
    latches it to -1, where the output is the text's unigram distribution. Training carried
    the state -1. This is how a model trained by the pointer walk can fall, from h = 0, into a
    state it never leaves, depending on where the text starts."""
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    corpus = load_corpus(path)
    run = tmp_path / "run"
    Trainer(corpus, TrainConfig(hidden=4, updates=2, backend="numpy", sample_every=2,
                                log_every=1, checkpoint_every=2, seed=1), run).run()
    ckpt = load_checkpoint(run / "latest.npz")
    p, vocab = ckpt.params, corpus.vocab
    q = vocab.index["q"]
    counts = np.bincount(vocab.encode(text), minlength=len(vocab)) + 1.0
    p.b_ih0[:], p.W_hh0[:], p.W_ih0[:], p.V[:] = 0, 0, -0.5, 0
    p.W_hh0[0, 0] = 3.0                  # unit 0 feeds itself: two stable states, near +-1
    p.W_ih0[0, q] = 0.5                  # ... of which the first input character chooses
    p.V[q, 0] = 16.0                     # latched at +1: predicts 'q'; at -1: predicts no 'q'
    p.c[:] = np.log(counts / counts.sum())
    ckpt.h[:] = 0
    ckpt.h[0, 0, 0, 0] = -0.995          # the state training carried
    save_checkpoint(run / "best.npz", ckpt)
    return run / "best.npz", corpus


def test_moving_the_start_changes_the_figure_only_in_the_third_decimal(tmp_path):
    text = "q" + LINES * 40 + "quiet queens quarrel.\n"
    ckpt, _ = latch_model(tmp_path, text)
    model = charnn.load(ckpt, backend="numpy")
    figures = [model.evaluate(text[offset:]).nats for offset in (0, 1, 2, 3, 7)]
    assert max(figures) - min(figures) < 0.005, figures
    # from h = 0 (the old way) the start chooses the state, and the figure jumps by nats
    model.carried = None
    from_zero = [model.evaluate(text[offset:], warmup=1).nats for offset in (0, 2)]
    assert from_zero[0] - from_zero[1] > 3, from_zero


def test_eval_prints_the_same_figure_from_any_start(tmp_path, capsys):
    text = "q" + LINES * 40
    ckpt, _ = latch_model(tmp_path, text)
    figures = []
    for offset in (0, 2):
        path = tmp_path / f"from{offset}.txt"
        path.write_text(text[offset:], encoding="utf-8")
        assert main(["eval", str(ckpt), str(path), "--backend", "numpy"]) == 0
        out = capsys.readouterr().out
        assert "warm-up from the state training carried" in out
        figures.append(float(out.split("loss ")[1].split()[0]))
    assert abs(figures[0] - figures[1]) < 0.005


def test_the_warm_up_is_at_most_half_the_text():
    assert warmup_length(10_000) == WARMUP
    assert warmup_length(101) == 50
    assert warmup_length(2) == 1


def held_out_text(trainer) -> str:
    """The held-out part of a run as a text file would hold it."""
    d, vocab = trainer.dataset, trainer.corpus.vocab
    if trainer.config.records:
        eor = vocab.index[charnn.corpus.END_OF_RECORD]
        return "\n".join(vocab.decode(d.data[s:e][d.data[s:e] != eor]) for s, e in d.val)
    (start, end), = d.val
    return vocab.decode(d.data[start:end])


@pytest.mark.parametrize("backend,options", [
    (backend, options) for backend in ("numpy", "compiled") for options in (
        {},
        {"batch_size": 3, "optimizer": "adam", "eta": 0.01},
        {"order": "shuffled", "chunk_length": 200, "batch_size": 2},
        {"records": True, "batch_size": 2})] + [
    ("numpy", {"model": "lstm", "layers": 2, "dropout": 0.2, "batch_size": 3,
               "optimizer": "adam", "eta": 0.01}),
    ("numpy", {"model": "gru", "records": True, "batch_size": 2}),
])
def test_validation_best_checkpoint_report_and_eval_agree(tmp_path, capsys, backend, options):
    path = tmp_path / "text.txt"
    path.write_text(LINES * 30, encoding="utf-8")
    corpus = load_corpus(path, records=options.get("records", False))
    config = TrainConfig(hidden=16, updates=300, val_frac=0.2, eval_every=100, log_every=50,
                         sample_every=300, checkpoint_every=300, seq_length=20, seed=4,
                         backend=backend, **options)
    trainer = Trainer(corpus, config, tmp_path / "run")
    trainer.run()
    held = tmp_path / "held.txt"
    held.write_text(held_out_text(trainer), encoding="utf-8")

    best = load_checkpoint(tmp_path / "run" / "best.npz")
    best_value = best.meta["state"]["best_value"]
    assert charnn.load(tmp_path / "run" / "best.npz", backend).evaluate(held.read_text()).nats \
        == best_value
    final = charnn.load(tmp_path / "run" / "latest.npz", backend).evaluate(held.read_text())
    last_row = charnn.plot.read_log(tmp_path / "run")[-1]
    assert last_row["val_loss"] == f"{final.nats:.6f}"

    assert main(["eval", str(tmp_path / "run"), str(held), "--backend", backend]) == 0
    assert f"loss {best_value:.4f} nats/char" in capsys.readouterr().out

    from charnn.report import held_out_loss
    report = held_out_loss(corpus, config, trainer.backend, load_checkpoint(
        tmp_path / "run" / "latest.npz"), best)
    assert (report.final_nats, report.best_nats) == (final.nats, best_value)
    assert math.isfinite(best_value)
