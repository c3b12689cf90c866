"""Learning per second: train several configurations for the same wall-clock budget and
compare the held-out bits per character each reaches.

    python benchmarks/bench_learning.py                 # 120 s each on the bundled corpus
    python benchmarks/bench_learning.py --seconds 30 --text my_book.txt

Every configuration trains on the same text with the same held-out tail (--val-frac), and is
evaluated on all of it at the end. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from charnn import TrainConfig, Trainer, load_corpus

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402
from charnn.train import Progress

CONFIGS = {
    "assignment: B=1, m=100, float64, adagrad": dict(),
    "B=1, m=100, float32, adagrad": dict(dtype="float32"),
    "B=32, m=256, float32, adam": dict(batch_size=32, hidden=256, dtype="float32",
                                       optimizer="adam", eta=0.002, seq_length=50),
    "B=32, m=512, float32, adam": dict(batch_size=32, hidden=512, dtype="float32",
                                       optimizer="adam", eta=0.001, seq_length=50),
}


def train_for(corpus, name, overrides, seconds, val_frac, seed):
    config = TrainConfig(val_frac=val_frac, updates=10**9, sample_every=10**9,
                         eval_every=10**9, checkpoint_every=10**9, log_every=50, seed=seed,
                         **overrides)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(corpus, config, Path(tmp) / "run")
        start = [None]

        def stop_when_spent(event):
            if isinstance(event, Progress):
                if start[0] is None:
                    start[0] = time.perf_counter()
                if time.perf_counter() - start[0] >= seconds:
                    trainer.request_stop()

        trainer.on_event = stop_when_spent
        t0 = time.perf_counter()
        state = trainer.run()
        wall = time.perf_counter() - t0
        chars = state.iteration * config.seq_length * config.batch_size
        # the held-out loss of the final weights, as charnn eval scores the held-out part
        val_bpc = trainer.validation_score().bits
    return {"config": name, "settings": overrides, "updates": state.iteration,
            "chars_trained": chars, "epochs": state.epoch, "train_seconds": state.elapsed,
            "wall_seconds": wall, "val_bpc": val_bpc}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", default=None, help="text file (default: bundled Shakespeare)")
    parser.add_argument("--seconds", type=float, default=120.0, help="budget per configuration")
    parser.add_argument("--val-frac", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="substrings of config names")
    parser.add_argument("--json", default="benchmarks/results/bench_learning.json")
    args = parser.parse_args(argv)

    corpus = load_corpus(args.text)
    print(f"machine: {machine()}; python {platform.python_version()}")
    print(f"text: {corpus.name}, {corpus.chars:,} characters, K={len(corpus.vocab)}; "
          f"held out: the last {args.val_frac:.0%}; budget {args.seconds:g} s per configuration "
          "(the first update's compile excluded)")
    results = []
    for name, overrides in CONFIGS.items():
        if args.only and not any(s in name for s in args.only):
            continue
        print(f"  training: {name} ...", flush=True)
        results.append(train_for(corpus, name, overrides, args.seconds, args.val_frac, args.seed))

    print()
    print(f"{'configuration':<40} {'updates':>10} {'chars/s':>10} {'held-out bpc':>13}")
    for r in results:
        rate = r["chars_trained"] / max(r["train_seconds"], 1e-9)
        r["chars_per_s"] = rate
        bpc = "n/a" if r["val_bpc"] is None else f"{r['val_bpc']:.3f}"
        print(f"{r['config']:<40} {r['updates']:>10,} {rate:>10,.0f} {bpc:>13}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "text": corpus.name,
                               "seconds": args.seconds, "results": results}, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
