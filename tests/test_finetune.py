"""charnn train --init-from: a new run that starts from a trained model's weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

import charnn
from charnn.checkpoint import load_checkpoint
from charnn.cli import main
from charnn.corpus import Vocabulary
from charnn.finetune import union_vocabulary, widen_params
from charnn.model import Params

from _tiny_runs import NETWORKS, TEXT_B, train_tiny


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """A small trained run of each network, on TEXT_A."""
    root = tmp_path_factory.mktemp("bases")
    return {model: train_tiny(root / model, model, layers) for model, layers in NETWORKS}


@pytest.fixture
def text_b(tmp_path):
    path = tmp_path / "b.txt"
    path.write_text(TEXT_B, encoding="utf-8")
    return path


def finetune(base, text, out, *flags) -> int:
    return main(["train", str(text), "--init-from", str(base), "--out", str(out),
                 "--updates", "60", "--backend", "numpy", "--val-frac", "0.1",
                 "--eval-every", "30", "--batch-size", "4", "--seq-length", "20",
                 "--no-progress", *flags])


def test_the_vocabulary_is_the_union_with_the_base_characters_first():
    union = union_vocabulary(Vocabulary("\n abc"), Vocabulary(" bzéa!"))
    assert union.chars == "\n abc!zé"                     # new ones in code point order


@pytest.mark.parametrize("model,layers", NETWORKS)
def test_new_characters_get_new_rows_and_the_old_ones_stay(model, layers):
    from charnn import networks as net
    K, m, sigma = 5, 6, 0.5
    old = Params(net.NETWORKS[model].initial_params(K, m, layers, sigma,
                                                    np.random.default_rng(0)))
    vocab = Vocabulary("abcdeXYZ")
    new = widen_params(old, model, vocab, sigma, seed=3, dtype="float64")
    inputs = "W_ih0"                     # every cell's input weights
    assert new[inputs].shape[1] == new["V"].shape[0] == new["c"].shape[0] == 8
    for name, a in old.items():                            # every learnt weight kept as it was
        assert np.array_equal(new[name][tuple(slice(0, n) for n in a.shape)], a)
    assert np.all(new["c"][K:] == 0)                       # a new model's output bias
    drawn = np.concatenate([new[inputs][:, K:].ravel(), new["V"][K:].ravel()])
    assert 0.3 < drawn.std() < 0.7 and np.all(drawn != 0)  # N(0, sigma^2), sigma 0.5
    again = widen_params(old, model, vocab, sigma, seed=3, dtype="float64")
    assert all(np.array_equal(again[n], a) for n, a in new.items())   # the seed fixes them


@pytest.mark.parametrize("model,layers", NETWORKS)
def test_fine_tuning_starts_from_the_base_and_learns_the_new_text(bases, text_b, tmp_path,
                                                                   capsys, model, layers):
    run = tmp_path / "ft"
    assert finetune(bases[model], text_b, run) == 0
    out = capsys.readouterr().out
    assert "starting from" in out and "new characters" in out
    saved = json.loads((run / "config.json").read_text())
    base_vocab = load_checkpoint(bases[model] / "best.npz").meta["vocab"]
    assert saved["vocab"].startswith(base_vocab)           # the base's order, then the new
    assert set(saved["vocab"]) == set(base_vocab) | set(TEXT_B)
    assert saved["init_from"]["source"] == str(bases[model])
    assert saved["init_from"]["added"] == "".join(sorted(set(TEXT_B) - set(base_vocab)))
    assert saved["config"]["model"] == model and saved["config"]["layers"] == layers
    assert saved["config"]["hidden"] == 12
    assert saved["config"]["optimizer"] == "adam"          # --preset fine-tune
    ckpt = load_checkpoint(run / "best.npz")
    assert ckpt.meta["init_from"] == saved["init_from"]
    # training on the new text lowers the held-out loss the base's weights start from
    log = [row.split(",") for row in (run / "log.csv").read_text().splitlines()[1:]]
    val = [float(r[4]) for r in log if r[4]]
    assert min(val[1:]) < val[0] - 0.3
    # the base's weights are the start: one update (Adam moves each weight by at most about
    # eta, 0.002 here, after a warm-up step of eta / 20) leaves them where they were
    one = tmp_path / "one"
    assert finetune(bases[model], text_b, one, "--updates", "1") == 0
    after = load_checkpoint(one / "latest.npz").params
    base = load_checkpoint(bases[model] / "best.npz").params
    for name, a in base.items():
        assert np.abs(after[name][tuple(slice(0, n) for n in a.shape)] - a).max() < 1e-3
    # characters only the base knew can still be written
    fine = charnn.load(run, backend="numpy")
    assert "(" in fine.vocab and "(" not in TEXT_B
    h, x = fine.start_state("The ")
    p = np.exp(fine.log_probabilities(fine.advance(h, x)))
    assert p[fine.vocab.index["("]] > 0


def test_the_network_flags_are_refused_by_name(bases, text_b, tmp_path, capsys):
    assert finetune(bases["gru"], text_b, tmp_path / "a", "--hidden", "64") == 2
    err = capsys.readouterr().err
    assert "--hidden (the base model has 12)" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert finetune(bases["gru"], text_b, tmp_path / "b", "--model", "lstm",
                    "--layers", "3") == 2
    err = capsys.readouterr().err
    assert "--model" in err and "--layers" in err
    assert main(["train", str(text_b), "--init-from", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_a_fine_tuned_run_resumes_and_resume_refuses_init_from(bases, text_b, tmp_path,
                                                               capsys):
    run = tmp_path / "ft"
    assert finetune(bases["rnn"], text_b, run) == 0
    assert main(["train", "--resume", str(run), "--updates", "90", "--no-progress"]) == 0
    ckpt = load_checkpoint(run / "latest.npz")
    assert ckpt.meta["state"]["iteration"] == 90 and ckpt.meta["init_from"]["source"]
    assert main(["train", "--resume", str(run), "--init-from", str(bases["rnn"]),
                 "--updates", "120"]) == 2
    assert "--init-from" in capsys.readouterr().err


def test_fine_tuning_under_a_time_limit_and_on_the_torch_backend(bases, text_b, tmp_path):
    run = tmp_path / "timed"
    assert main(["train", str(text_b), "--init-from", str(bases["lstm"]), "--out", str(run),
                 "--time-limit", "3s", "--backend", "numpy", "--val-frac", "0.1",
                 "--batch-size", "4", "--seq-length", "20", "--no-progress"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["init_from"]["source"] == str(bases["lstm"]) and saved["total_updates"] > 0
    pytest.importorskip("torch", reason="PyTorch is an optional extra")
    run = tmp_path / "torch"
    assert finetune(bases["gru"], text_b, run, "--backend", "torch") == 0
    assert load_checkpoint(run / "best.npz").meta["init_from"]["model"] == "gru"


def test_fine_tuning_the_shipped_model(text_b, tmp_path):
    run = tmp_path / "ft"
    assert main(["train", str(text_b), "--init-from", "shakespeare", "--out", str(run),
                 "--updates", "2", "--batch-size", "2", "--seq-length", "20",
                 "--backend", "numpy", "--no-progress"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["config"]["model"] == "gru" and saved["config"]["hidden"] == 256
    assert saved["config"]["dtype"] == "float32"
    assert saved["init_from"]["source"] == "shakespeare"
    assert saved["init_from"]["updates"] > 1000 and saved["init_from"]["K_base"] == 77
    assert "é" in saved["vocab"] and saved["vocab"][:77] == charnn.load(
        "shakespeare", backend="numpy").vocab.chars


def test_a_record_model_fine_tunes_on_records_only(tmp_path, text_b, capsys):
    base = train_tiny(tmp_path / "records", "gru", 1, updates=30, records=True)
    assert finetune(base, text_b, tmp_path / "a") == 2
    assert "give --records" in capsys.readouterr().err
    assert finetune(base, text_b, tmp_path / "b", "--records", "--batch-size", "2") == 0
    assert charnn.load(tmp_path / "b", backend="numpy").is_record_model
