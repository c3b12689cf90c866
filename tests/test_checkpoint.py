"""Checkpoints are checked whole on load: every damage to an array or to the metadata gets
one line naming the file, the problem and what to do, before any kernel sees the arrays."""

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from charnn import CharnnError, TrainConfig, Trainer, load_checkpoint, load_corpus
from charnn.checkpoint import (BEST, FORMAT_VERSION, LATEST, STATE_REAL, STATE_WHOLE,
                               Checkpoint, save_checkpoint)
from charnn.cli import main
from conftest import TINY_TEXT

NO_META = object()
M = 8                          # hidden units of the runs below
NAMES = ("W_ih0", "W_hh0", "b_ih0", "V", "c")   # the vanilla RNN's parameters, in its order
SMALL = dict(hidden=M, backend="numpy", seq_length=10, updates=20, sample_every=10,
             sample_length=20, log_every=10, checkpoint_every=10, seed=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short runs: AdaGrad with one lane, Adam with two lanes and a validation split."""
    root = tmp_path_factory.mktemp("runs")
    text = root / "tiny.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    corpus = load_corpus(text)
    Trainer(corpus, TrainConfig(**SMALL), root / "adagrad").run()
    Trainer(corpus, TrainConfig(**SMALL, optimizer="adam", batch_size=2, val_frac=0.1),
            root / "adam").run()
    return root


def read(path):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(arrays.pop("meta").tobytes())


def write(path, arrays, meta):
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    np.savez(path, **arrays, meta=np.frombuffer(raw, np.uint8))


def damaged(runs, tmp_path, damage, run="adagrad"):
    """A copy of the run folder whose latest.npz has had `damage(arrays, meta)` done to it
    (damage may return a replacement meta: any JSON value, or bytes)."""
    folder = tmp_path / run
    shutil.copytree(runs / run, folder)
    arrays, meta = read(folder / LATEST)
    meta = damage(arrays, meta) or meta
    if meta is NO_META:
        np.savez(folder / LATEST, **arrays)
    else:
        write(folder / LATEST, arrays, meta)
    return folder


def setitem(key, value):
    def damage(arrays, meta):
        arrays[key] = value(arrays) if callable(value) else value
    return damage


def meta_set(*keys, value):
    def damage(arrays, meta):
        d = meta
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return damage


def meta_del(*keys):
    def damage(arrays, meta):
        d = meta
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]
    return damage


def with_value(key, index, value):
    def change(arrays):
        a = arrays[key].copy()
        a[index] = value
        return a
    return change


def both(*damages):
    def damage(arrays, meta):
        for d in damages:
            d(arrays, meta)
    return damage


def drop(key):
    def damage(arrays, meta):
        del arrays[key]
    return damage


def rename(old, new):
    def damage(arrays, meta):
        arrays[new] = arrays.pop(old)
    return damage


DAMAGES = {
    # arrays
    "opt_m_W_hh0 (3, 3)": (setitem("opt_m_W_hh0", np.zeros((3, 3))),
                           "opt_m_W_hh0 has shape (3, 3)"),
    "h (4, 1, 1, m) in a batch-1 run": (setitem("h", np.zeros((4, 1, 1, M))),
                                        "h has shape (4, 1, 1, 8)"),
    "h flat": (setitem("h", np.zeros(M)), "h has shape (8,)"),
    "h (B, m) of format 2": (setitem("h", lambda a: a["h"].reshape(1, M)), "h has shape (1, 8)"),
    "param_W of format 2": (rename("param_W_hh0", "param_W"),
                            "arrays no charnn checkpoint has (param_W)"),
    "missing param_W_hh0": (drop("param_W_hh0"), "param_W_hh0) is missing"),
    "missing opt_m_b_ih0": (drop("opt_m_b_ih0"), "opt_m_b_ih0 is missing"),
    "missing h": (drop("h"), "h is missing"),
    "extra dimension": (setitem("param_b_ih0", lambda a: a["param_b_ih0"][:, None]),
                        "param_b_ih0 has shape (8, 1)"),
    "W_ih0 transposed": (setitem("param_W_ih0", lambda a: a["param_W_ih0"].T),
                         "param_W_ih0 has shape"),
    "float16 V": (setitem("param_V", lambda a: a["param_V"].astype(np.float16)), "float16"),
    "int c": (setitem("param_c", lambda a: a["param_c"].astype(np.int64)), "whole numbers"),
    "str b_ih0": (setitem("param_b_ih0", np.array(["x"] * M)), "holds text"),
    "object array": (setitem("param_b_ih0", np.array([None] * M, dtype=object)),
                     "holds Python objects"),
    "float32 opt state": (setitem("opt_m_W_ih0", lambda a: a["opt_m_W_ih0"].astype(np.float32)),
                          "opt_m_W_ih0 holds float32"),
    "NaN in W_hh0": (setitem("param_W_hh0", with_value("param_W_hh0", (1, 2), np.nan)),
                     "W_hh0 holds NaN: the model diverged"),
    "inf in c": (setitem("param_c", with_value("param_c", 0, np.inf)), "c holds infinity"),
    "inf in opt state": (setitem("opt_m_W_ih0", with_value("opt_m_W_ih0", (0, 0), np.inf)),
                         "opt_m_W_ih0 holds infinity"),
    "negative AdaGrad state": (setitem("opt_m_V", with_value("opt_m_V", (0, 0), -1.0)),
                               "opt_m_V holds negative values"),
    "NaN in h": (setitem("h", with_value("h", (0, 0, 0, 0), np.nan)), "h holds NaN"),
    "h outside [-1, 1]": (setitem("h", with_value("h", (0, 0, 0, 0), 3.0)), "outside [-1, 1]"),
    "unknown array": (setitem("extra", np.zeros(3)), "arrays no charnn checkpoint has (extra)"),
    "unknown opt slot": (rename("opt_m_W_hh0", "opt_q_W_hh0"), "opt_q_W_hh0"),
    # meta
    "meta missing": (lambda a, m: NO_META, "no metadata"),
    "meta not JSON": (lambda a, m: b"{not json", "corrupt metadata"),
    "meta not UTF-8": (lambda a, m: b"\xff\xfe{}", "corrupt metadata"),
    "meta not an object": (lambda a, m: [1, 2], "not an object"),
    "format wrong": (meta_set("format", value="other"), 'not a charnn checkpoint (format "other")'),
    "version 0": (meta_set("version", value=0), "format version 0, which no charnn writes"),
    "version -7": (meta_set("version", value=-7), "format version -7"),
    "version true": (meta_set("version", value=True), "format version true"),
    "version NaN": (meta_set("version", value=math.nan), "format version NaN"),
    "version '1'": (meta_set("version", value="1"), 'format version "1", which'),
    "version 1.0": (meta_set("version", value=1.0), "format version 1.0"),
    "version missing": (meta_del("version"), "format version null"),
    "version newer": (meta_set("version", value=FORMAT_VERSION + 1), "upgrade charnn"),
    "duplicated vocabulary": (lambda a, m: m.update(vocab=m["vocab"][:-1] + m["vocab"][0]),
                              "holds '\\n' twice"),
    "vocab as int": (meta_set("vocab", value=5), "vocabulary is 5"),
    "vocab of strings": (meta_set("vocab", value=["ab", "c"]), "vocabulary is"),
    "vocab empty": (meta_set("vocab", value=""), "vocabulary is empty"),
    "vocab missing": (meta_del("vocab"), "vocabulary is null"),
    "vocab one short": (lambda a, m: m.update(vocab=m["vocab"][:-1]),
                        "param_W_ih0 has shape"),
    "config as list": (meta_set("config", value=[1, 2]), "config is [1, 2]"),
    "config missing": (meta_del("config"), "config is null"),
    "config lacks hidden": (meta_del("config", "hidden"), "lacks the setting 'hidden'"),
    "config lacks seq_length": (meta_del("config", "seq_length"),
                                "lacks the setting 'seq_length'"),
    "hidden as string": (meta_set("config", "hidden", value="8"), 'hidden is "8", where a whole'),
    "hidden as float": (meta_set("config", "hidden", value=8.0), "hidden is 8.0"),
    "hidden true": (meta_set("config", "hidden", value=True), "hidden is true"),
    "hidden differs": (meta_set("config", "hidden", value=9), "hidden size 9"),
    "impossible eta": (meta_set("config", "eta", value=-1), "impossible setting (eta is -1"),
    "records as string": (meta_set("config", "records", value="no"), 'records is "no"'),
    "unknown optimizer": (meta_set("config", "optimizer", value="sgd"), "optimizer 'sgd'"),
    "switched optimizer": (meta_set("config", "optimizer", value="adam"),
                           "state is adagrad or rmsprop's (m): the optimiser was switched"),
    "dtype switched": (meta_set("config", "dtype", value="float32"), "dtype is float32"),
    "batch size switched": (meta_set("config", "batch_size", value=2),
                            "h has shape (1, 1, 1, 8)"),
    "state missing": (meta_del("state"), "training state is null"),
    "state as list": (meta_set("state", value=[]), "training state is []"),
    "counter missing": (meta_del("state", "position"), "lacks the counter 'position'"),
    "counter as string": (meta_set("state", "iteration", value="20"), 'iteration is "20", where'),
    "counter negative": (meta_set("state", "opt_step", value=-1), "opt_step is -1"),
    "counter float": (meta_set("state", "position", value=2.5), "position is 2.5"),
    "epoch 0": (meta_set("state", "epoch", value=0), "epoch is 0"),
    "best after iteration": (meta_set("state", "best_iteration", value=21),
                             "best_iteration (21) is after"),
    "smooth loss NaN": (meta_set("state", "smooth_loss", value=math.nan), "smooth_loss is NaN"),
    "smooth loss string": (meta_set("state", "smooth_loss", value="low"), 'smooth_loss is "low"'),
    "best value -inf": (meta_set("state", "best_value", value=-math.inf), "best_value is"),
    "elapsed negative": (meta_set("state", "elapsed", value=-1.0), "elapsed is -1.0"),
    "last_val as list": (meta_set("state", "last_val", value=[1]), "last_val is [1]"),
    "sample_rng garbage": (meta_set("sample_rng", value="garbage"), "sample_rng"),
    "sample_rng missing": (meta_del("sample_rng"), "sample_rng"),
    "sample_rng MT19937": (meta_set("sample_rng", "bit_generator", value="MT19937"), "PCG64"),
    "sample_rng float state": (meta_set("sample_rng", "state", "state", value=1.5), "sample_rng"),
    "sample_rng negative": (meta_set("sample_rng", "state", "inc", value=-1), "sample_rng"),
    "sample_rng has_uint32 7": (meta_set("sample_rng", "has_uint32", value=7), "has_uint32 7"),
    "corpus missing": (meta_del("corpus"), "corpus facts are null"),
    "corpus lacks sha256": (meta_del("corpus", "sha256"), "lack 'sha256'"),
    "corpus source int": (meta_set("corpus", "source", value=3), "corpus source is 3"),
    "corpus K differs": (meta_set("corpus", "K", value=3), "K = 3"),
}


@pytest.mark.parametrize("name", list(DAMAGES))
def test_a_damaged_checkpoint_is_refused_in_one_line(runs, tmp_path, name):
    damage, expected = DAMAGES[name]
    path = damaged(runs, tmp_path, damage) / LATEST
    with pytest.raises(CharnnError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert expected in message
    assert str(path) in message and "\n" not in message
    assert "; " in message                               # ... and what to do about it


@pytest.mark.parametrize("damage,expected", [
    (meta_set("config", "optimizer", value="adagrad"),
     "state is adam's (m, v): the optimiser was switched"),
    (setitem("h", lambda a: a["h"][:1]), "h has shape (1, 1, 1, 8), but batch size 2"),
    (setitem("opt_v_b_ih0", with_value("opt_v_b_ih0", 0, -0.5)), "opt_v_b_ih0 holds negative"),
    (meta_set("state", "last_val", value=math.inf), "last_val is Infinity"),
    (both(*(drop(f"opt_m_{n}") for n in NAMES)), "adam optimiser state opt_m_W_ih0 is missing"),
])
def test_a_damaged_adam_checkpoint_is_refused(runs, tmp_path, damage, expected):
    path = damaged(runs, tmp_path, damage, run="adam") / LATEST
    with pytest.raises(CharnnError) as caught:
        load_checkpoint(path)
    assert expected in str(caught.value)


def test_a_negative_adam_first_moment_is_fine(runs, tmp_path):
    path = damaged(runs, tmp_path, setitem("opt_m_b_ih0", with_value("opt_m_b_ih0", 0, -0.5)),
                   run="adam") / LATEST
    assert load_checkpoint(path).opt_state["m_b_ih0"][0] == -0.5


def test_the_fix_names_the_other_checkpoint(runs, tmp_path):
    folder = damaged(runs, tmp_path, setitem("opt_m_W_hh0", np.zeros((3, 3))))
    shutil.copy(folder / LATEST, folder / BEST)
    with pytest.raises(CharnnError, match="such as the run's best.npz"):
        load_checkpoint(folder / LATEST)
    with pytest.raises(CharnnError, match="such as the run's latest.npz"):
        load_checkpoint(folder / BEST)


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04broken"])
def test_a_file_that_is_no_archive_is_refused(tmp_path, content):
    (tmp_path / "x.npz").write_bytes(content)
    with pytest.raises(CharnnError, match="x.npz"):
        load_checkpoint(tmp_path / "x.npz")


def test_a_bare_array_file_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(3))
    with pytest.raises(CharnnError, match="one bare array"):
        load_checkpoint(tmp_path / "x.npy")


def test_metadata_stored_as_text_is_refused(runs, tmp_path):
    arrays, meta = read(runs / "adagrad" / LATEST)
    np.savez(tmp_path / "c.npz", **arrays, meta=np.array(json.dumps(meta)))
    with pytest.raises(CharnnError, match="corrupt metadata"):
        load_checkpoint(tmp_path / "c.npz")


# -- what loads ---------------------------------------------------------------------------

@pytest.mark.parametrize("version", [1, 2])
def test_a_checkpoint_of_the_old_names_loads_samples_and_resumes(tmp_path, capsys, version):
    """Files before version 3 name the vanilla RNN's arrays b, c, U, W, V and its h (B, m);
    they read as its cell's of one layer, the same numbers, and resume into the new names."""
    from pathlib import Path
    from charnn import resume_trainer
    from charnn.model import NETWORK_NAMES
    data = Path(__file__).parent / "data"
    old, meta = read(data / "checkpoint-format1.npz")
    assert meta["version"] == 1 and "param_W" in old and old["h"].shape == (2, 12)
    run = tmp_path / "old"
    run.mkdir()
    write(run / LATEST, old, dict(meta, version=version))
    ckpt = load_checkpoint(run)
    assert ckpt.meta["config"]["optimizer"] == "adam" and ckpt.h.shape == (2, 1, 1, 12)
    np.testing.assert_array_equal(ckpt.h[:, 0, 0], old["h"])
    assert ckpt.params.names == NAMES
    assert sorted(ckpt.opt_state) == sorted(f"{s}_{n}" for s in "mv" for n in NAMES)
    for theirs, ours in NETWORK_NAMES.items():
        np.testing.assert_array_equal(ckpt.params[ours], old[f"param_{theirs}"])
        for slot in "mv":
            np.testing.assert_array_equal(ckpt.opt_state[f"{slot}_{ours}"],
                                          old[f"opt_{slot}_{theirs}"])
    assert main(["sample", str(run / LATEST), "-n", "20", "--seed", "1",
                 "--backend", "numpy"]) == 0
    assert len(capsys.readouterr().out) == 21
    trainer = resume_trainer(run, load_corpus(data / "golden" / "text.txt"), updates=80)
    assert trainer.run().iteration == 80
    arrays, meta = read(run / LATEST)                    # saved in the new names
    assert meta["version"] == FORMAT_VERSION and arrays["h"].shape == (2, 1, 1, 12)
    assert sorted(arrays) == sorted(["h", *(f"param_{n}" for n in NAMES),
                                     *(f"opt_{s}_{n}" for s in "mv" for n in NAMES)])


@pytest.mark.parametrize("run", ["adagrad", "adam"])
def test_a_trained_checkpoint_loads_and_round_trips(runs, tmp_path, run):
    ckpt = load_checkpoint(runs / run)
    assert ckpt.meta["state"]["best_value"] < math.inf
    ckpt.meta["extra"] = [1, 2.5]                        # meta may grow
    save_checkpoint(tmp_path / "c.npz", ckpt)
    back = load_checkpoint(tmp_path / "c.npz")
    for name, a in ckpt.params.items():
        np.testing.assert_array_equal(getattr(back.params, name), a)
        assert getattr(back.params, name).dtype == a.dtype
    for key, a in ckpt.opt_state.items():
        np.testing.assert_array_equal(back.opt_state[key], a)
    np.testing.assert_array_equal(back.h, ckpt.h)
    assert back.meta == ckpt.meta


@pytest.mark.parametrize("damage", [
    meta_set("vocab", value=None),                       # replaced below by a list
    meta_set("config", "future_setting", value={"any": "thing"}),
    meta_set("future_key", value=[1, None]),
    meta_set("state", "best_value", value=math.inf),
    meta_set("state", "last_val", value=None),
    meta_set("state", "elapsed", value=3),
    meta_del("corpus", "encoding"),
])
def test_what_a_checkpoint_may_hold(runs, tmp_path, damage):
    def change(arrays, meta):
        vocab = meta["vocab"]
        damage(arrays, meta)
        if meta["vocab"] is None:
            meta["vocab"] = list(vocab)
    ckpt = load_checkpoint(damaged(runs, tmp_path, change))
    assert isinstance(ckpt.meta["vocab"], str)
    assert isinstance(ckpt.meta["state"]["elapsed"], float)


def test_arrays_come_back_c_contiguous_and_native(runs, tmp_path):
    def change(arrays, meta):
        arrays["param_W_hh0"] = np.asfortranarray(arrays["param_W_hh0"])
        arrays["param_W_ih0"] = arrays["param_W_ih0"].astype(">f8")
    folder = damaged(runs, tmp_path, change)
    ckpt = load_checkpoint(folder)
    assert ckpt.params.W_hh0.flags.c_contiguous and ckpt.params.W_hh0.flags.writeable
    assert ckpt.params.W_ih0.dtype == np.float64 and ckpt.params.W_ih0.dtype.isnative
    np.testing.assert_array_equal(ckpt.params.W_hh0,
                                  load_checkpoint(runs / "adagrad").params.W_hh0)


def test_the_counters_checked_are_the_trainers():
    from charnn.train import _COUNTERS
    assert set(STATE_WHOLE + STATE_REAL) == set(_COUNTERS)


def test_a_minimal_hand_made_checkpoint_is_refused(tmp_path, rng):
    from charnn.model import Params
    save_checkpoint(tmp_path / "c.npz", Checkpoint(Params.initial(4, 5, 0.01, rng),
                                                   {"config": {"hidden": 4}, "vocab": "abcde"}))
    with pytest.raises(CharnnError, match="lacks the setting"):
        load_checkpoint(tmp_path / "c.npz")


# -- the command line ---------------------------------------------------------------------

def one_error_line(capsys, *expected):
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("charnn: error:"), err
    assert "Traceback" not in err
    for word in expected:
        assert word in lines[0]


@pytest.mark.parametrize("name", ["opt_m_W_hh0 (3, 3)", "h (4, 1, 1, m) in a batch-1 run",
                                  "NaN in W_hh0", "version true", "duplicated vocabulary",
                                  "counter as string", "sample_rng garbage", "meta not JSON"])
def test_train_sample_and_eval_refuse_a_damaged_checkpoint(runs, tmp_path, capsys, name):
    damage, expected = DAMAGES[name]
    run = damaged(runs, tmp_path, damage)
    text = runs / "tiny.txt"
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--updates", "40", "--no-progress"]) == 2
    one_error_line(capsys, expected, "latest.npz")
    assert main(["train", str(text), "--resume", str(run), "--updates", "40",
                 "--no-progress"]) == 2
    one_error_line(capsys, expected)
    assert main(["sample", str(run / LATEST), "-n", "20", "--backend", "numpy"]) == 2
    one_error_line(capsys, expected)
    assert main(["eval", str(run / LATEST), str(text), "--backend", "numpy"]) == 2
    one_error_line(capsys, expected)


def test_resuming_with_a_wrong_shaped_optimiser_state_is_refused_not_crashed(runs, tmp_path):
    """The compiled kernel would index opt_m_W_hh0 out of bounds; run apart, in case it does."""
    run = damaged(runs, tmp_path, both(setitem("opt_m_W_hh0", np.zeros((3, 3))),
                                       meta_set("config", "backend", value="compiled")))
    before = (run / LATEST).read_bytes()
    result = subprocess.run([sys.executable, "-m", "charnn.cli", "train", "--resume", str(run),
                             "--updates", "40", "--no-progress"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("charnn: error:") and result.stderr.count("\n") == 1
    assert "opt_m_W_hh0 has shape (3, 3)" in result.stderr
    assert (run / LATEST).read_bytes() == before


def test_a_state_a_rounding_above_one_loads_but_not_more(runs, tmp_path):
    """The compiled float32 tanh may round a saturated unit a few ulp above 1; that is still
    tanh's output, a value clearly outside [-1, 1] is not."""
    eps = np.finfo(np.float64).eps
    near = damaged(runs, tmp_path / "near",
                   setitem("h", with_value("h", (0, 0, 0, 0), 1 + 2 * eps)))
    assert load_checkpoint(near).h[0, 0, 0, 0] > 1
    far = damaged(runs, tmp_path / "far", setitem("h", with_value("h", (0, 0, 0, 0), 1 + 1e-6)))
    with pytest.raises(CharnnError, match="outside"):
        load_checkpoint(far)
