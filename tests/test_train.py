import csv
import math

import numpy as np
import pytest

from charnn import TrainConfig, Trainer, load_checkpoint, load_corpus, resume_trainer
from charnn.checkpoint import Checkpoint, save_checkpoint
from charnn.errors import CharnnError
from charnn.train import Progress, Sampled
from charnn.backends.calls import NO_DROPOUT

SMALL = dict(hidden=16, backend="numpy", sample_every=100, sample_length=40, log_every=20,
             checkpoint_every=100, seed=5)


def smooth_losses(run_dir):
    with open(run_dir / "log.csv", newline="") as f:
        return [float(r["smooth_loss"]) for r in csv.DictReader(f) if r["loss"]]


def test_a_few_hundred_updates_lower_the_smooth_loss(tiny_text_file, tmp_path):
    corpus = load_corpus(tiny_text_file)
    state = Trainer(corpus, TrainConfig(updates=400, **SMALL), tmp_path / "run").run()
    losses = smooth_losses(tmp_path / "run")
    assert losses[0] == pytest.approx(25 * math.log(len(corpus.vocab)), rel=0.02)
    assert state.smooth_loss < losses[0] - 5
    assert state.iteration == 400


def test_run_folder_holds_config_log_samples_plot_and_checkpoints(tiny_text_file, tmp_path):
    corpus = load_corpus(tiny_text_file)
    run = tmp_path / "run"
    Trainer(corpus, TrainConfig(updates=250, **SMALL), run).run()
    for name in ("config.json", "log.csv", "samples.txt", "loss.png", "latest.npz", "best.npz"):
        assert (run / name).stat().st_size > 0, name
    samples = (run / "samples.txt").read_text()
    assert samples.startswith("iter 0 , epoch 1 , smooth loss ")
    assert "iter 100 , epoch" in samples and "iter 200 , epoch" in samples
    assert "iter 250 , epoch" in samples          # the final model's text
    ckpt = load_checkpoint(run)
    assert ckpt.meta["state"]["iteration"] == 250
    assert ckpt.meta["corpus"]["sha256"] == corpus.sha256


def test_epoch_resets_and_counts_follow_the_pointer_walk(tiny_text_file, tmp_path):
    corpus = load_corpus(tiny_text_file)
    events = []
    trainer = Trainer(corpus, TrainConfig(epochs=2, **SMALL), tmp_path / "run",
                      on_event=events.append)
    N, tau = len(corpus.text), 25
    assert trainer.updates_per_epoch == (N - tau - 1) // tau + 1

    # h is zeroed before the first window of each epoch, and only there
    seen = []
    backend = trainer.backend

    class Spy:
        def __getattr__(self, name):
            return getattr(backend, name)

        def train_updates(self, params, optimiser, h, windows, dropout=NO_DROPOUT):
            w = windows
            seen.append((w.first, w.resets[w.first:w.last, 0].tolist(), w.starts[w.first, 0]))
            return backend.train_updates(params, optimiser, h, windows, dropout)

    trainer.backend = Spy()
    state = trainer.run()
    assert state.iteration == 2 * trainer.updates_per_epoch
    assert state.epoch == 2
    epoch_starts = [(resets, start) for first, resets, start in seen if first == 0]
    assert len(epoch_starts) == 2 and all(r[0] == 1 and start == 0 for r, start in epoch_starts)
    assert sum(sum(resets) for _, resets, _ in seen) == 2


@pytest.mark.parametrize("options", [
    {},
    {"optimizer": "adam", "batch_size": 3, "val_frac": 0.1, "eval_every": 60},
    {"optimizer": "rmsprop", "order": "shuffled", "chunk_length": 60},
    {"optimizer": "adagrad", "order": "shuffled", "chunk_length": 80, "batch_size": 4,
     "val_frac": 0.15, "eval_every": 100},
    {"model": "lstm", "layers": 2, "dropout": 0.2, "optimizer": "adam", "eta": 0.01,
     "batch_size": 3, "val_frac": 0.1, "eval_every": 60, "hidden": 8},
    {"model": "gru", "layers": 2, "dropout": 0.3, "optimizer": "rmsprop", "order": "shuffled",
     "chunk_length": 60, "batch_size": 2, "hidden": 8},
    {"model": "gru", "layers": 2, "dropout": 0.2, "output_dropout": 0.3, "optimizer": "adam",
     "eta": 0.01, "batch_size": 3, "hidden": 8},
    {"output_dropout": 0.2, "batch_size": 2},       # the vanilla RNN of one layer, dropped out
])
def test_resumed_run_matches_uninterrupted_run(tiny_text_file, tmp_path, options):
    corpus = load_corpus(tiny_text_file)
    config = dict(SMALL, updates=500, **options)
    Trainer(corpus, TrainConfig(**config), tmp_path / "whole").run()

    def stop_at_300(event):
        if isinstance(event, Progress) and event.iteration == 300:
            interrupted.request_stop()

    interrupted = Trainer(corpus, TrainConfig(**config), tmp_path / "split", on_event=stop_at_300)
    assert interrupted.run().iteration == 300
    assert load_checkpoint(tmp_path / "split").meta["state"]["iteration"] == 300
    resumed = resume_trainer(tmp_path / "split").run()
    assert resumed.iteration == 500

    whole, split = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "split")
    for name, a in whole.params.items():
        np.testing.assert_array_equal(a, getattr(split.params, name), err_msg=name)
    for key, a in whole.opt_state.items():
        np.testing.assert_array_equal(a, split.opt_state[key], err_msg=key)
    np.testing.assert_array_equal(whole.h, split.h)
    assert whole.meta["state"] == {**split.meta["state"], "elapsed": whole.meta["state"]["elapsed"]}
    assert (tmp_path / "whole" / "samples.txt").read_text() == \
        (tmp_path / "split" / "samples.txt").read_text()
    assert smooth_losses(tmp_path / "whole") == smooth_losses(tmp_path / "split")



def _sample_blocks(run_dir):
    """{iteration: text} of a run folder's samples."""
    import json
    lines = (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    return {block["iteration"]: block["text"] for block in map(json.loads, lines)}


@pytest.mark.parametrize("options", [
    {},
    {"batch_size": 3},
    {"model": "lstm", "layers": 2, "dropout": 0.2, "hidden": 8, "batch_size": 2},
    {"model": "gru", "hidden": 8, "optimizer": "adam", "eta": 0.01},
])
def test_an_extended_run_prints_the_samples_of_a_straight_one(tiny_text_file, tmp_path, options):
    # a run that ends off the --sample-every grid (at 250) draws its final sample; extended
    # to 500, its grid samples must be those of a straight run to 500
    corpus = load_corpus(tiny_text_file)
    config = dict(SMALL, updates=500, **options)
    Trainer(corpus, TrainConfig(**config), tmp_path / "straight").run()
    Trainer(corpus, TrainConfig(**dict(config, updates=250)), tmp_path / "extended").run()
    resume_trainer(tmp_path / "extended", updates=500).run()
    straight, extended = _sample_blocks(tmp_path / "straight"), _sample_blocks(tmp_path / "extended")
    assert sorted(straight) == [0, 100, 200, 300, 400, 500]
    assert sorted(extended) == [0, 100, 200, 250, 300, 400, 500]   # and the first end's
    assert {i: extended[i] for i in straight} == straight
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "extended")
    for name, w in a.params.items():
        np.testing.assert_array_equal(w, b.params[name], err_msg=name)


def test_training_is_reproducible_with_a_seed(tiny_text_file, tmp_path):
    corpus = load_corpus(tiny_text_file)
    for name in ("a", "b"):
        Trainer(corpus, TrainConfig(updates=120, **SMALL), tmp_path / name).run()
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    np.testing.assert_array_equal(a.params.W_hh0, b.params.W_hh0)
    assert (tmp_path / "a" / "samples.txt").read_text() == (tmp_path / "b" / "samples.txt").read_text()


def _disk_full(*args, **kwargs):
    raise OSError(28, "No space left on device")


def _interrupted(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("failure,raised,message", [
    (_disk_full, CharnnError, "cannot save checkpoint"),
    (_interrupted, KeyboardInterrupt, None),
])
def test_a_failed_or_interrupted_save_leaves_the_last_good_checkpoint(tmp_path, rng, monkeypatch,
                                                                      failure, raised, message):
    from charnn.model import Params
    good = Checkpoint(params=Params.initial(4, 5, 0.01, rng), meta={"config": {}, "vocab": "abcde"})
    path = tmp_path / "latest.npz"
    save_checkpoint(path, good)
    before = path.read_bytes()
    monkeypatch.setattr(np, "savez", failure)
    with pytest.raises(raised, match=message):
        save_checkpoint(path, Checkpoint(params=Params.initial(4, 5, 1.0, rng), meta=good.meta))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["latest.npz"]     # no temporary left


def test_sample_events_are_headed_as_in_the_report(tiny_text_file, tmp_path):
    events = []
    Trainer(load_corpus(tiny_text_file), TrainConfig(updates=100, **SMALL), tmp_path / "r",
            on_event=events.append).run()
    samples = [e for e in events if isinstance(e, Sampled)]
    assert [s.iteration for s in samples] == [0, 100]
    assert samples[0].block().splitlines()[0].startswith("iter 0 , epoch 1 , smooth loss ")
    assert all(len(s.text) == 40 for s in samples)


def test_compiled_run_resumes_exactly_and_checkpoints_serve_both_backends(tiny_text_file, tmp_path):
    corpus = load_corpus(tiny_text_file)
    config = dict(SMALL, backend="compiled", updates=300)
    Trainer(corpus, TrainConfig(**config), tmp_path / "whole").run()

    def stop_at_140(event):
        if isinstance(event, Progress) and event.iteration == 140:
            interrupted.request_stop()

    interrupted = Trainer(corpus, TrainConfig(**config), tmp_path / "split", on_event=stop_at_140)
    interrupted.run()
    resume_trainer(tmp_path / "split").run()
    whole, split = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "split")
    for name, a in whole.params.items():
        np.testing.assert_array_equal(a, getattr(split.params, name), err_msg=name)

    # the same checkpoint, sampled by either backend, gives the same text for the same seed
    from charnn import SamplingOptions, generate
    from charnn.backends import compiled, reference
    texts = [generate(whole.params, corpus.vocab, 300, np.random.default_rng(5), backend,
                      SamplingOptions(temperature=0.9), prime="All:")
             for backend in (compiled, reference)]
    assert texts[0] == texts[1]
    # and training continued by the numpy backend picks up where the compiled one stopped
    assert resume_trainer(tmp_path / "split", updates=320, backend="numpy").run().iteration == 320


@pytest.mark.parametrize("optimizer,eta", [("adagrad", 0.1), ("adam", 0.002)])
def test_a_big_float32_model_trains_stably_with_clipping(tiny_text_file, tmp_path, optimizer, eta):
    corpus = load_corpus(tiny_text_file)
    config = TrainConfig(hidden=512, dtype="float32", batch_size=4, updates=150, backend="compiled",
                         optimizer=optimizer, eta=eta, sample_every=150, log_every=10,
                         checkpoint_every=150, seed=1)
    state = Trainer(corpus, config, tmp_path / "big").run()
    losses = smooth_losses(tmp_path / "big")
    assert all(math.isfinite(x) for x in losses)
    for name, a in state.params.items():
        assert a.dtype == np.float32 and np.isfinite(a).all(), name
    if optimizer == "adam":          # AdaGrad's first steps of eta everywhere overshoot at m = 512
        with open(tmp_path / "big" / "log.csv", newline="") as f:
            raw = [float(r["loss"]) for r in csv.DictReader(f) if r["loss"]]
        assert np.mean(raw[-3:]) < raw[0] - 10
