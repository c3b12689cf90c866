"""Does `--time-limit T` hold? Trains `--preset best-cpu --time-limit T --val-frac 0.1` on the
bundled corpus and on a slice of it, on the machine as it is and with a CPU-bound process
running beside it, and prints how long each run took from its first update (the calibration
on a copy of the model) to its saved checkpoint and plot, against T.

    python benchmarks/bench_time_limit.py [--limits 60 180] [--texts slice bundled]
                                           [--slice-mb 1.1] [--json PATH]

Each run is a child process that builds the trainer (loading the corpus and compiling, which
the budget does not count) and then times Trainer.run(). The busy runs start a spinning
process first and stop it after.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine  # noqa: E402

CHILD = """
import json, sys, time
from charnn import Trainer, load_corpus
from charnn.config import TrainConfig
from charnn.presets import PRESETS
text, limit, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
corpus = load_corpus(None if text == "bundled" else text)
config = TrainConfig(**PRESETS["best-cpu"], time_limit=limit, val_frac=0.1)
messages = []
trainer = Trainer(corpus, config, out, announce=messages.append)
started = time.perf_counter()
state = trainer.run()
took = time.perf_counter() - started
print(json.dumps({"took": took, "updates": state.iteration, "planned": trainer.config.updates,
                  "time_up": trainer.time_up, "eval_chars": trainer.config.eval_chars,
                  "eval_every": trainer.config.eval_every,
                  "held_out_chars": trainer.dataset.val_chars,
                  "best_val": state.best_value, "plan": [m for m in messages
                                                         if m.startswith("time limit")]}))
"""


def run(text: str, limit: float, busy: bool) -> dict:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        with tempfile.TemporaryDirectory() as folder:
            out = subprocess.run([sys.executable, "-c", CHILD, text, str(limit),
                                  str(Path(folder) / "run")], capture_output=True, text=True,
                                 check=True).stdout
    finally:
        if spinner:
            spinner.kill()
            spinner.wait()
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", type=float, nargs="+", default=[60, 180])
    parser.add_argument("--slice-mb", type=float, default=1.1)
    parser.add_argument("--texts", nargs="+", choices=["slice", "bundled"],
                        default=["slice", "bundled"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    from charnn import load_corpus
    bundled = load_corpus(None)
    with tempfile.TemporaryDirectory() as folder:
        piece = Path(folder) / "slice.txt"
        chars = int(args.slice_mb * 1e6)
        piece.write_text(bundled.vocab.decode(bundled.data[:chars]), encoding="utf-8")
        print(f"machine: {machine()}; best-cpu, --val-frac 0.1; took = first update to "
              "saved checkpoint and plot")
        print(f"{'text':<10}{'limit s':>8}{'machine':>9}{'took s':>8}{'of limit':>9}"
              f"{'updates':>9}{'planned':>9}{'eval chars':>11}{'val nats':>9}")
        rows = []
        for limit in args.limits:
            for kind, text, name in (("slice", piece, f"{args.slice_mb:g} MB"),
                                     ("bundled", "bundled", "bundled")):
                if kind not in args.texts:
                    continue
                for busy in (False, True):
                    got = run(str(text), limit, busy)
                    got.update(text=name, limit=limit, busy=busy)
                    rows.append(got)
                    print(f"{name:<10}{limit:8.0f}{'busy' if busy else 'as is':>9}"
                          f"{got['took']:8.1f}{got['took'] / limit:9.1%}{got['updates']:9,}"
                          f"{got['planned']:9,}{got['eval_chars']:11,}{got['best_val']:9.4f}",
                          flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "runs": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
