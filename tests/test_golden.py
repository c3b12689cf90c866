"""The golden runs: short trainings recorded before later changes; the same flags and seed
must keep giving the same log, samples and weights, bit for bit."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "data" / "golden"
sys.path.insert(0, str(GOLDEN))
import make_golden  # noqa: E402


@pytest.mark.parametrize("name", list(make_golden.RUNS))
def test_a_golden_run_gives_the_recorded_log_samples_and_weights(name, tmp_path):
    got = make_golden.run_golden(name, tmp_path / "run")
    folder = GOLDEN / name
    assert got["log"] == json.loads((folder / "log.json").read_text())
    assert got["samples"] == (folder / "samples.txt").read_text(encoding="utf-8")
    with np.load(folder / "params.npz") as recorded:
        for key, a in got["params"].items():
            np.testing.assert_array_equal(a, recorded[key], err_msg=key)


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
