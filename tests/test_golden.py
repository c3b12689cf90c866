"""The golden runs: short trainings recorded before later changes; the same flags and seed
must keep giving the same log and samples, character for character, and the same weights to
within the rounding that differs from one CPU to another.

Why a tolerance on the weights, and which one: the numbers were recorded on one machine, and
the same float64 operations round differently on another (numba compiles for the host CPU:
fused multiply-adds, vector widths and summation orders differ; numpy's BLAS picks a kernel per
CPU). Each update then differs in the last bits (unit roundoff 1.1e-16), and 240 updates of the
recurrence carry that forward: measured with numba generating code for five CPUs (this host,
haswell, znver4, skylake-avx512, generic) and OpenBLAS on four kernels, the weights differed by
at most 1.3e-13. WEIGHTS_ATOL = 1e-10 leaves a thousandfold room for other CPUs, and is still
far below what any change of the computation does (one update more, another learning rate or
clip, a missing gradient term move weights by 1e-4 or more). The log (six decimals) and the
samples (a draw flips only when a uniform lands within 1e-13 of a boundary) stay identical.

On one machine the runs are also identical bit for bit: tests/test_train.py and
tests/test_kernels_threads.py hold that (threads, resumes, calls split differently)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "data" / "golden"
sys.path.insert(0, str(GOLDEN))
import make_golden  # noqa: E402

WEIGHTS_ATOL = 1e-10      # see above: rounding across CPUs, with a thousandfold room


def recorded_name(name: str) -> str:
    """The recorded weights keep the assignment's names (b, c, U, W, V), which the vanilla RNN
    cell's of one layer (W_ih0, W_hh0, b_ih0, V, c) are."""
    from charnn.model import NETWORK_NAMES
    return {theirs: ours for ours, theirs in NETWORK_NAMES.items()}[name]


@pytest.mark.parametrize("name", list(make_golden.RUNS))
def test_a_golden_run_gives_the_recorded_log_samples_and_weights(name, tmp_path):
    got = make_golden.run_golden(name, tmp_path / "run")
    folder = GOLDEN / name
    assert got["log"] == json.loads((folder / "log.json").read_text())
    assert got["samples"] == (folder / "samples.txt").read_text(encoding="utf-8")
    with np.load(folder / "params.npz") as recorded:
        for key, a in got["params"].items():
            np.testing.assert_allclose(a, recorded[recorded_name(key)], rtol=0,
                                       atol=WEIGHTS_ATOL, err_msg=key)


def test_the_weights_tolerance_is_far_below_what_one_more_update_changes(tmp_path):
    # the tolerance must still catch a real change: the run stopped one update short
    from charnn import TrainConfig, Trainer, load_checkpoint, load_corpus
    name = "b1-adagrad-compiled"
    config = TrainConfig(**{**make_golden.SHARED, **make_golden.RUNS[name],
                            "updates": make_golden.SHARED["updates"] - 1})
    Trainer(load_corpus(make_golden.text_path()), config, tmp_path / "run").run()
    got = load_checkpoint(tmp_path / "run" / "latest.npz").params
    with np.load(GOLDEN / name / "params.npz") as recorded:
        moved = max(np.abs(got[key] - recorded[recorded_name(key)]).max() for key in got.names)
    assert moved > 1e3 * WEIGHTS_ATOL


def test_a_checkpoint_of_the_first_format_still_loads_samples_and_resumes(tmp_path):
    import shutil
    from charnn import load_checkpoint, load_corpus, resume_trainer
    from charnn.cli import main
    run = tmp_path / "old"
    run.mkdir()
    shutil.copy(GOLDEN.parent / "checkpoint-format1.npz", run / "latest.npz")
    ckpt = load_checkpoint(run)
    assert ckpt.meta["state"]["iteration"] == 60
    assert main(["sample", str(run / "latest.npz"), "-n", "20", "--seed", "1"]) == 0
    trainer = resume_trainer(run, load_corpus(GOLDEN / "text.txt"), updates=80)
    assert trainer.run().iteration == 80
