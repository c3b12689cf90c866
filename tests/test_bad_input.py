"""Nothing a user types loses a run: every bad value, file or name gets one line naming the
problem and the fix, exit status 2, and never a traceback, a hang or a run that cannot be
resumed."""

import json
import zipfile

import numpy as np
import pytest

from charnn import checkpoint as checkpoint_module
from charnn.checkpoint import load_checkpoint
from charnn.cli import main
from charnn.config import LARGEST_WHOLE, WHOLE_LIMITS, TrainConfig
from charnn.errors import CharnnError

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
        with pytest.raises(CharnnError, match="--" + name.replace("_", "-")):
            TrainConfig(**{name: value}).validate()
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
    bomb = write_bomb(tmp_path / "bomb.npz", arrays, "param_W", (1 << 22,))   # 32 MiB
    assert bomb.stat().st_size < 1 << 20
    read = []
    original = checkpoint_module._Member.read
    monkeypatch.setattr(checkpoint_module._Member, "read",
                        lambda self: read.append(self.info.filename) or original(self))
    refused(capsys, ["sample", str(bomb), "--backend", "numpy"], "param_W has shape (4194304,)")
    assert "param_W.npy" not in read


def test_an_array_whose_header_and_size_disagree_is_refused_unread(run, tmp_path, capsys):
    arrays = arrays_of(run / "latest.npz")
    path = tmp_path / "lying.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in arrays.items():
            with zf.open(key + ".npy", "w") as f:
                if key == "param_W":          # declares 4 GiB, holds 8 bytes
                    np.lib.format.write_array_header_1_0(
                        f, {"descr": "<f8", "fortran_order": False, "shape": (1 << 29,)})
                    f.write(bytes(8))
                else:
                    np.lib.format.write_array(f, value)
    refused(capsys, ["sample", str(path), "--backend", "numpy"], "param_W",
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
