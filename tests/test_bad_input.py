"""Nothing a user types loses a run: every bad value, file or name gets one line naming the
problem and the fix, exit status 2, and never a traceback, a hang or a run that cannot be
resumed."""

import json
import os
import shutil
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest

from charnn import checkpoint as checkpoint_module
from charnn.checkpoint import load_checkpoint
from charnn.cli import main
from charnn.config import LARGEST_WHOLE, WHOLE_LIMITS, TrainConfig
from charnn.errors import CharnnError
from charnn.options import message_of

FAST = ["--backend", "numpy", "--hidden", "8", "--sample-every", "1000", "--log-every", "20",
        "--no-progress"]


def refused_by_parser(capsys, argv, *words):
    """The command line refuses argv in one line that holds `words`, with exit status 2."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def refused(capsys, argv, *words):
    """The command refuses argv with one `charnn: error:` line holding `words`, status 2."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("charnn: error:") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err
    return err


@pytest.fixture
def run(tiny_text_file, tmp_path, capsys):
    folder = tmp_path / "run"
    assert main(["train", str(tiny_text_file), "--updates", "40", "--out", str(folder),
                 *FAST]) == 0
    capsys.readouterr()
    return folder


def arrays_of(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def save_with_meta(path, arrays, change):
    meta = json.loads(arrays["meta"].tobytes())
    change(meta)
    arrays = dict(arrays, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    np.savez(path, **arrays)
    return path


# -- 7: whole numbers bounded where they are read ------------------------------------------

TRAIN_FLAGS = ["updates", "sample_every", "log_every", "eval_every", "eval_chars",
               "checkpoint_every", "chunk_length", "warmup_updates", "seed", "hidden",
               "batch_size", "layers", "seq_length", "sample_length"]


@pytest.mark.parametrize("name", TRAIN_FLAGS)
def test_every_whole_number_flag_of_train_refuses_past_its_bound(tiny_text_file, capsys, name):
    flag = "--" + name.replace("_", "-")
    most = WHOLE_LIMITS[name][1]
    refused_by_parser(capsys, ["train", str(tiny_text_file), *FAST, flag, str(most + 1)],
                      flag, "too large", f"{most:,}")
    refused_by_parser(capsys, ["train", str(tiny_text_file), *FAST, flag, "9" * 5000], flag)


@pytest.mark.parametrize("name", TRAIN_FLAGS)
def test_train_config_refuses_what_the_command_line_refuses(name):
    least, most = WHOLE_LIMITS[name]
    for value in (least - 1, most + 1, 10 ** 5000):
        with pytest.raises(CharnnError) as caught:
            TrainConfig(**{name: value}).validate()
        # the library names the setting as its callers name it; the command line, its flag
        assert str(caught.value).startswith(f"{name} is ")
        assert message_of(caught.value).startswith("--" + name.replace("_", "-") + " is ")
    extra = {"model": "lstm"} if name == "layers" else {}
    TrainConfig(**{name: most}, **extra).validate()


def test_every_bound_is_one_a_checkpoint_can_hold():
    assert checkpoint_module.LARGEST_WHOLE is LARGEST_WHOLE
    assert all(most < LARGEST_WHOLE for _, most in WHOLE_LIMITS.values())


def test_a_run_of_the_most_updates_accepted_resumes_and_samples(tiny_text_file, tmp_path,
                                                               capsys):
    folder = tmp_path / "long"
    most = WHOLE_LIMITS["updates"][1]
    assert main(["train", str(tiny_text_file), "--updates", str(most), "--time-limit", "1s",
                 "--out", str(folder), *FAST]) == 0
    capsys.readouterr()
    assert load_checkpoint(folder).meta["config"]["updates"] == most
    assert main(["sample", str(folder), "-n", "20", "--backend", "numpy"]) == 0


@pytest.mark.parametrize("argv, flag", [
    (["sample", "RUN", "-n", str(10 ** 23)], "-n"),
    (["sample", "RUN", "--max-length", str(10 ** 23)], "--max-length"),
    (["sample", "RUN", "--count", str(10 ** 23)], "--count"),
    (["sample", "RUN", "--top-k", str(10 ** 23)], "--top-k"),
    (["sample", "RUN", "--seed", str(2 ** 62)], "--seed"),
    (["gradcheck", "--batch-size", "99999999999999999999999"], "--batch-size"),
    (["gradcheck", "--hidden", str(10 ** 23)], "--hidden"),
    (["gradcheck", "--layers", str(10 ** 23)], "--layers"),
    (["gradcheck", "--seq-length", str(10 ** 23)], "--seq-length"),
    (["gradcheck", "--elements", str(2 ** 62)], "--elements"),
    (["eval", "RUN", "TEXT", "--warmup", str(2 ** 62)], "--warmup"),
    (["eval", "RUN", "TEXT", "--max-chars", str(2 ** 62)], "--max-chars"),
    (["report", "--sample-every", str(2 ** 62)], "--sample-every"),
    (["report", "--eval-every", str(2 ** 62)], "--eval-every"),
    (["train", "--time-limit", "1e20s"], "--time-limit"),
])
def test_other_commands_bound_their_whole_numbers(run, tiny_text_file, capsys, argv, flag):
    argv = [str(run) if a == "RUN" else str(tiny_text_file) if a == "TEXT" else a
            for a in argv]
    refused_by_parser(capsys, argv, flag)


def test_a_beam_search_too_long_to_finish_is_refused(run, capsys):
    refused(capsys, ["sample", str(run), "--beam", "2", "-n", "1000000", "--backend", "numpy"],
            "-n", "100,000")


# -- 8: zip bombs ---------------------------------------------------------------------------

def write_bomb(path, arrays, name, shape):
    """A checkpoint whose array `name` declares `shape` (zeros, which deflate ~1000:1)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in arrays.items():
            with zf.open(key + ".npy", "w", force_zip64=True) as f:
                if key != name:
                    np.lib.format.write_array(f, value)
                    continue
                np.lib.format.write_array_header_1_0(
                    f, {"descr": "<f8", "fortran_order": False, "shape": shape})
                block = bytes(1 << 20)
                for _ in range(int(np.prod(shape)) * 8 >> 20):
                    f.write(block)
    return path


def test_a_zip_bomb_is_refused_before_its_data_is_inflated(run, tmp_path, capsys,
                                                          monkeypatch):
    arrays = arrays_of(run / "latest.npz")
    bomb = write_bomb(tmp_path / "bomb.npz", arrays, "param_W_hh0", (1 << 22,))   # 32 MiB
    assert bomb.stat().st_size < 1 << 20
    read = []
    original = checkpoint_module._Member.read
    monkeypatch.setattr(checkpoint_module._Member, "read",
                        lambda self: read.append(self.info.filename) or original(self))
    refused(capsys, ["sample", str(bomb), "--backend", "numpy"],
            "param_W_hh0 has shape (4194304,)")
    assert "param_W_hh0.npy" not in read


def test_an_array_whose_header_and_size_disagree_is_refused_unread(run, tmp_path, capsys):
    arrays = arrays_of(run / "latest.npz")
    path = tmp_path / "lying.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in arrays.items():
            with zf.open(key + ".npy", "w") as f:
                if key == "param_W_hh0":      # declares 4 GiB, holds 8 bytes
                    np.lib.format.write_array_header_1_0(
                        f, {"descr": "<f8", "fortran_order": False, "shape": (1 << 29,)})
                    f.write(bytes(8))
                else:
                    np.lib.format.write_array(f, value)
    refused(capsys, ["sample", str(path), "--backend", "numpy"], "param_W_hh0",
            "declares 4,294,967,296 bytes")


def test_arrays_that_cannot_fit_in_memory_are_refused_unread(run, capsys, monkeypatch):
    monkeypatch.setattr(checkpoint_module, "memory_available", lambda: 1000)
    refused(capsys, ["sample", str(run), "--backend", "numpy"], "memory available")


def test_huge_metadata_is_refused_unread(run, tmp_path, capsys):
    arrays = arrays_of(run / "latest.npz")
    arrays["meta"] = np.zeros(checkpoint_module.MAX_META_BYTES + 1, np.uint8)
    np.savez_compressed(tmp_path / "meta.npz", **arrays)
    refused(capsys, ["sample", str(tmp_path / "meta.npz"), "--backend", "numpy"],
            "corrupt metadata")


# -- 9: tracebacks left ----------------------------------------------------------------------

def test_a_vocabulary_holding_a_lone_surrogate_is_refused(run, tmp_path, capsys):
    def surrogate(meta):
        meta["vocab"] = "\ud800" + meta["vocab"][1:]
    path = save_with_meta(tmp_path / "surrogate.npz", arrays_of(run / "latest.npz"), surrogate)
    refused(capsys, ["sample", str(path), "--backend", "numpy"], "surrogate")
    refused(capsys, ["inspect", str(path), "--backend", "numpy"], "surrogate")


def test_a_text_cannot_give_a_lone_surrogate(tmp_path, capsys):
    path = tmp_path / "utf7.txt"
    path.write_bytes(b"abc +2AA- def\n" * 40)            # UTF-7 for a lone U+D800
    refused(capsys, ["train", str(path), "--encoding", "utf-7", *FAST], "lone surrogate", "4")
    with pytest.raises(CharnnError, match="lone surrogate"):
        from charnn.corpus import Corpus
        Corpus.from_text("ab\ud800c" * 20)


@pytest.mark.parametrize("encoding", ["undefined", "punycode", "idna"])
def test_codecs_that_read_no_files_are_refused(tiny_text_file, capsys, encoding):
    refused(capsys, ["train", str(tiny_text_file), "--encoding", encoding, *FAST],
            f"--encoding {encoding}", "utf-8")


def test_running_out_of_memory_is_one_line(run, capsys, monkeypatch):
    def no_memory(*args, **kwargs):
        raise MemoryError
    monkeypatch.setattr("charnn.trained.load", no_memory)
    refused(capsys, ["sample", str(run)], "out of memory")
    monkeypatch.setattr("charnn.memory.address_space_left", lambda: 1 << 20)
    refused(capsys, ["sample", str(run)], "out of memory", "ulimit -v")


# -- 10: silent contradictions ---------------------------------------------------------------

def test_a_text_file_with_a_bundled_corpus_is_refused(tiny_text_file, capsys):
    refused(capsys, ["train", str(tiny_text_file), "--corpus", "shakespeare", *FAST],
            "--corpus shakespeare", "one of them")
    refused(capsys, ["gradcheck", str(tiny_text_file), "--corpus", "shakespeare"], "--corpus")


@pytest.mark.parametrize("command", ["train", "report"])
def test_a_record_separator_without_records_is_refused(tiny_text_file, tmp_path, capsys,
                                                       command):
    refused(capsys, [command, str(tiny_text_file), "--record-separator", "|", *FAST[:4],
                     "--out", str(tmp_path / "out")], "--record-separator", "--records")


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/charnn-absolute-name", "..", "a/b"])
def test_a_run_name_that_is_a_path_is_refused(tiny_text_file, tmp_path, capsys, monkeypatch,
                                              name):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    refused(capsys, ["train", str(tiny_text_file), "--name", name, "--updates", "5", *FAST],
            "--name", "plain folder name")
    assert not (tmp_path / "escaped").exists() and not (work / "runs").exists()


# -- 11: honest messages and clean outputs ---------------------------------------------------

@pytest.mark.parametrize("content", [b"just some text\n" * 20, bytes(range(256)) * 4, b""])
def test_a_file_that_is_not_an_archive_is_named_so(tmp_path, capsys, content):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    err = refused(capsys, ["sample", str(path), "--backend", "numpy"], "not a charnn checkpoint")
    assert "Python objects" not in err


def test_a_checkpoint_holding_python_objects_is_still_named_so(run, tmp_path, capsys):
    arrays = arrays_of(run / "latest.npz")
    arrays["param_W_hh0"] = np.array([{"a": 1}], dtype=object)
    np.savez(tmp_path / "pickle.npz", **arrays)
    refused(capsys, ["sample", str(tmp_path / "pickle.npz"), "--backend", "numpy"],
            "Python objects")


def test_inspect_html_on_a_full_disk_leaves_no_empty_page(run, tmp_path, capsys, monkeypatch):
    page = tmp_path / "units.html"

    def full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("charnn.run_folder.os.fsync", full)
    assert main(["inspect", str(run), "--backend", "numpy", "--html", str(page)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert list(tmp_path.glob("*.html*")) == [] and not page.exists()


def test_report_markdown_escapes_the_corpus_name(tmp_path):
    text = tmp_path / "<img src=x onerror=alert(1)>.txt"
    text.write_text("the cat sat on the mat. " * 40, encoding="utf-8")
    out = tmp_path / "rep"
    assert main(["report", str(text), "--updates", "40", "--hidden", "6", "--sample-every",
                 "20", "--backend", "numpy", "--out", str(out), "--no-progress"]) == 0
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "<img" not in md and "&lt;img src=x onerror=alert(1)&gt;.txt" in md


@pytest.mark.parametrize("temperature", ["1e-320", "0.0001", "1e300", "nan", "inf"])
def test_a_temperature_outside_a_sane_range_is_refused(run, capsys, temperature):
    refused(capsys, ["sample", str(run), "--temperature", temperature, "--backend", "numpy"],
            "--temperature", "0.001", "1000")


def test_the_extreme_temperatures_accepted_give_text(run, capsys):
    for temperature in ("0.001", "1000"):
        assert main(["sample", str(run), "--temperature", temperature, "-n", "50",
                     "--backend", "numpy", "--seed", "1"]) == 0
        out = capsys.readouterr().out
        assert len(out) == 51


def test_weights_past_any_a_run_reaches_are_refused(run, tmp_path, capsys):
    arrays = arrays_of(run / "latest.npz")
    arrays["param_V"] = np.full_like(arrays["param_V"], 1e300)
    np.savez(tmp_path / "huge.npz", **arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # a RuntimeWarning fails the test
        refused(capsys, ["sample", str(tmp_path / "huge.npz"), "--beam", "2", "-n", "5",
                         "--backend", "numpy"], "model's V", "magnitude 1e+300")


def test_a_run_name_the_font_lacks_plots_without_warnings(run, tmp_path):
    from charnn.plot import plot_run
    named = tmp_path / "運行の名前"
    shutil.copytree(run, named)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_run(named)
    assert not [w for w in caught if "Glyph" in str(w.message)]
    assert (named / "loss.png").stat().st_size > 0


def charnn(*args, timeout=60):
    # a subprocess: a regression that opens a FIFO blocks, and must fail the test, not hang it
    return subprocess.run([sys.executable, "-m", "charnn.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_a_fifo_is_refused_before_it_is_opened(run, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for argv in (["train", fifo, *FAST], ["sample", fifo], ["sample", run, "--prime-file", fifo],
                 ["eval", run, fifo]):
        result = charnn(*argv, "--backend", "numpy") if argv[0] != "train" else charnn(*argv)
        assert result.returncode == 2, result.stderr
        assert "a pipe (FIFO)" in result.stderr and result.stderr.count("\n") == 1


def test_a_folder_or_device_is_refused_as_a_text_or_checkpoint(run, tmp_path, capsys):
    refused(capsys, ["sample", "/dev/null", "--backend", "numpy"], "a device")
    refused(capsys, ["train", "/dev/null", *FAST], "a device")
    refused(capsys, ["sample", str(run), "--prime-file", str(tmp_path), "--backend", "numpy"],
            "is a folder")
