"""The pretrained model charnn ships, by name: charnn sample with no run folder, sample,
eval and serve by name, charnn.load; and the script that trains it."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import charnn
from charnn.bundled import DEFAULT_MODEL, PRETRAINED_DIR, pretrained_names, resolve_model
from charnn.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_ships_a_small_float32_shakespeare_model():
    assert DEFAULT_MODEL in pretrained_names()
    folder = PRETRAINED_DIR / DEFAULT_MODEL
    assert (folder / "best.npz").stat().st_size < 4 * 2**20
    ckpt = charnn.load_checkpoint(folder / "best.npz")
    assert ckpt.params.dtype == np.float32
    config = json.loads((folder / "config.json").read_text())
    assert config["corpus"]["name"] == "shakespeare" and config["config"]["val_frac"] == 0.1


def test_the_package_data_names_the_model_files():
    text = (ROOT / "pyproject.toml").read_text()
    for name in ("best.npz", "config.json", "log.csv"):
        assert f'"pretrained/*/{name}"' in text
        assert (PRETRAINED_DIR / DEFAULT_MODEL / name).is_file()


def test_sample_without_a_run_folder_uses_the_pretrained_model(capsys):
    assert main(["sample", "-n", "120", "--seed", "5", "--prime", "ROMEO:"]) == 0
    out, err = capsys.readouterr()
    assert f"pretrained model {DEFAULT_MODEL!r}" in err
    assert out.startswith("ROMEO:") and len(out) == len("ROMEO:") + 120 + 1
    assert main(["sample", DEFAULT_MODEL, "-n", "120", "--seed", "5", "--prime", "ROMEO:"]) == 0
    assert capsys.readouterr().out == out                   # by name: the same model
    model = charnn.load(DEFAULT_MODEL)
    assert model.generate(120, prime="ROMEO:", seed=5) == out[len("ROMEO:"):-1]


def test_eval_by_name_says_what_load_says(tmp_path, capsys):
    text = tmp_path / "verse.txt"
    text.write_text("To be, or not to be, that is the question:\nWhether 'tis nobler in "
                    "the mind to suffer\nThe slings and arrows of outrageous fortune,\n")
    assert main(["eval", DEFAULT_MODEL, str(text)]) == 0
    out = capsys.readouterr().out
    score = charnn.load(DEFAULT_MODEL).evaluate(text.read_text())
    assert f"loss {score.nats:.4f} nats/char" in out
    assert score.nats < 3.0                                 # it has learnt English verse


@pytest.mark.parametrize("command", [["sample", "hamlet"], ["eval", "hamlet", "x.txt"],
                                     ["inspect", "hamlet"]])
def test_an_unknown_name_is_one_line_listing_the_names(capsys, command):
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'hamlet'" in err and DEFAULT_MODEL in err


def test_a_folder_of_that_name_wins_over_the_pretrained_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / DEFAULT_MODEL).mkdir()
    assert resolve_model(DEFAULT_MODEL) == Path(DEFAULT_MODEL)
    assert resolve_model("runs/missing") == Path("runs/missing")   # a path: its own error


def test_serve_shows_the_pretrained_model_by_name():
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient
    from charnn.serve.app import create_app
    from charnn.serve.runs import RunTable
    table = RunTable([DEFAULT_MODEL], runs_dir=None)
    client = TestClient(create_app(table, "auto"), base_url="http://127.0.0.1:8000")
    runs = client.get("/api/runs").json()
    assert [r["name"] for r in runs["runs"]] == [DEFAULT_MODEL]
    with pytest.raises(charnn.CharnnError, match="pretrained models are"):
        RunTable(["hamlet"], runs_dir=None)


def test_the_script_trains_and_shrinks_a_model(tiny_text_file, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_pretrained.py"),
                           "--into", str(tmp_path), "--name", "tiny", "--time-limit", "5s",
                           "--preset", "assignment", str(tiny_text_file), "--hidden", "16",
                           "--dtype", "float32", "--backend", "numpy"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    shipped = charnn.load(tmp_path / "tiny")
    assert shipped.params.dtype == np.float32
    assert all(not a.any() for a in shipped.checkpoint.opt_state.values())
    assert (tmp_path / "tiny" / "log.csv").is_file()
    assert shipped.generate(50, seed=1)


@pytest.mark.slow
def test_the_shipped_models_figure_is_what_eval_says_of_it():
    # the held-out loss the shipped checkpoint records (its training's last 10%, scored as
    # validation scores it) is what charnn's evaluation of the same weights on the same text
    # gives: the README quotes it
    from charnn import TrainConfig, load_corpus
    from charnn.backends import get_backend
    from charnn.data import build_dataset
    from charnn.evaluation import carries_state, score_held_out
    ckpt = charnn.load_checkpoint(PRETRAINED_DIR / DEFAULT_MODEL / "best.npz")
    config = TrainConfig.from_dict(ckpt.meta["config"])
    dataset = build_dataset(load_corpus(None), config)
    start = ckpt.h[0] if carries_state(config.to_dict()) else None
    backend = get_backend("auto", dtype="float32", network=config.model,
                          jobs=("evaluate", "sample"))
    score = score_held_out(ckpt.params, dataset.data, dataset.val, backend,
                           records=config.records, h_start=start, max_chars=config.eval_chars)
    assert score.count > 0.99 * dataset.val_chars            # every character after a warm-up
    # float32 arithmetic: each character's loss carries a rounding error of a few units in
    # float32's last place (6e-8 relative), and another CPU rounds differently (3.6e-9 and
    # 5e-9 measured between machines); 1e-6 is 16 such units for the whole mean, and still
    # a thousand times finer than the figure's shown four decimals
    assert score.nats == pytest.approx(ckpt.meta["state"]["best_value"], rel=1e-6)
