"""Record the golden runs: short trainings whose log, samples and final weights the tests
hold fixed, so that a change elsewhere cannot silently change what a run computes.

Run from the repository root after a change that is meant to change these numbers, and say
why in the commit:  python tests/data/golden/make_golden.py
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

# Each golden run: a name and the settings that differ from the shared ones below.
RUNS = {
    "b1-adagrad-numpy": dict(backend="numpy"),
    "b1-adagrad-compiled": dict(backend="compiled"),
    "b1-adam-compiled": dict(backend="compiled", optimizer="adam", eta=0.01),
    "b8-adam-compiled": dict(backend="compiled", optimizer="adam", eta=0.01, batch_size=8,
                             seq_length=10),
    "b8-adagrad-numpy": dict(backend="numpy", batch_size=8, seq_length=10),
}
SHARED = dict(hidden=16, updates=240, sample_every=80, sample_length=60, log_every=20,
              checkpoint_every=120, seed=3, dtype="float64")


def text_path() -> Path:
    return HERE / "text.txt"


def run_golden(name: str, out: Path) -> dict:
    """Train golden run `name` into `out`; return what the tests compare."""
    from charnn import TrainConfig, Trainer, load_checkpoint, load_corpus
    corpus = load_corpus(text_path())
    Trainer(corpus, TrainConfig(**SHARED, **RUNS[name]), out).run()
    with open(out / "log.csv", newline="") as f:
        rows = [{k: v for k, v in row.items() if k != "elapsed"} for row in csv.DictReader(f)]
    ckpt = load_checkpoint(out / "latest.npz")
    return {"log": rows, "samples": (out / "samples.txt").read_text(encoding="utf-8"),
            "params": {k: a for k, a in ckpt.params.items()}}


def main() -> None:
    import tempfile
    for name in RUNS:
        with tempfile.TemporaryDirectory() as tmp:
            got = run_golden(name, Path(tmp) / "run")
        folder = HERE / name
        folder.mkdir(exist_ok=True)
        (folder / "log.json").write_text(json.dumps(got["log"], indent=0) + "\n")
        (folder / "samples.txt").write_text(got["samples"], encoding="utf-8")
        np.savez(folder / "params.npz", **got["params"])
        print("recorded", name)


if __name__ == "__main__":
    main()
