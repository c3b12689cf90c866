"""The measurements behind `charnn train --time-limit T` without network flags: candidate
networks trained for 1, 3 and 10 minutes on the bundled corpus and on a 1 MB slice of it
(its first 1,000,000 characters), beside bench_learning.py's small GPT on the same split and
budget. Each run appends one JSON line to the results file as it ends, so a long sweep
keeps what it measured; benchmarks/fit_budget.py fits the rule to those lines.

    python benchmarks/bench_budget.py --corpus 1mb --minutes 10 --networks gru2x384d3 gpt
    python benchmarks/bench_budget.py --list           # the candidates' settings

Runs one after another, each in a process of its own with both cores (see bench_learning.py
for how each is trained and scored).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from charnn import TrainConfig, load_corpus
from charnn.data import build_dataset
from charnn.presets import as_flags

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_learning import VAL_FRAC, train_charnn, train_gpt  # noqa: E402
from machine import machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_budget.jsonl"
SLICE_CHARS = 1_000_000

# Every candidate trains 32 lanes of 50 characters in float32 with Adam, 100 warm-up updates
# and a cosine down to a tenth of eta; names say cell, layers x width, dropout between the
# layers in tenths (d) and on the top's output (o).
SCHEDULE = dict(dtype="float32", optimizer="adam", lr_schedule="cosine", warmup_updates=100,
                seq_length=50, batch_size=32)


def gru(layers: int, hidden: int, dropout: float, eta: float, output: float = 0.0) -> dict:
    return dict(model="gru", layers=layers, hidden=hidden, dropout=dropout,
                **({"output_dropout": output} if output else {}), eta=eta, min_eta=eta / 10,
                **SCHEDULE)


CANDIDATES = {
    "gru1x256": gru(1, 256, 0.0, 0.004),
    "gru2x256": gru(2, 256, 0.0, 0.004),
    "gru2x256d2": gru(2, 256, 0.2, 0.004),
    "gru2x384": gru(2, 384, 0.0, 0.003),
    "gru2x384d1": gru(2, 384, 0.1, 0.003),
    "gru2x384d3": gru(2, 384, 0.3, 0.003),
    "gru2x512": gru(2, 512, 0.0, 0.002),
    "gru2x512d1": gru(2, 512, 0.1, 0.002),
    "gru2x512d3": gru(2, 512, 0.3, 0.002),
    "gru3x384d3": gru(3, 384, 0.3, 0.003),
    "gru3x384d3o3": gru(3, 384, 0.3, 0.003, output=0.3),
    "gru2x256d2o2": gru(2, 256, 0.2, 0.004, output=0.2),
    "gru2x384d3o3": gru(2, 384, 0.3, 0.003, output=0.3),
    "gru2x384d4o4": gru(2, 384, 0.4, 0.003, output=0.4),
    "gru2x512d3o3": gru(2, 512, 0.3, 0.002, output=0.3),
}


def corpus_for(name: str):
    """The bundled corpus ('full') or its first SLICE_CHARS characters ('1mb')."""
    corpus = load_corpus(None)
    if name == "full":
        return corpus
    text = "".join(corpus.vocab.chars[i] for i in corpus.data[:SLICE_CHARS])
    path = Path(tempfile.mkdtemp()) / "shakespeare-1mb.txt"
    path.write_text(text, encoding="utf-8")
    return load_corpus(path)


def child(corpus_name: str, network: str, seconds: float, seed: int) -> int:
    corpus = corpus_for(corpus_name)
    if network == "gpt":
        result = train_gpt(corpus, seconds, seed, 0)
    else:
        result = train_charnn(corpus, CANDIDATES[network], seconds, seed, 10**9)
    result["candidate"] = network
    print(json.dumps(result))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=("full", "1mb"), default="full")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 3, 10])
    parser.add_argument("--networks", nargs="+", choices=[*CANDIDATES, "gpt"],
                        default=["gru2x256", "gpt"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--list", action="store_true", help="print the candidates and stop")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.list:
        for name, settings in CANDIDATES.items():
            print(f"{name:<12} {as_flags(settings)}")
        return 0
    if args.child:
        return child(args.child[0], args.child[1], float(args.child[2]), args.seed)

    corpus = corpus_for(args.corpus)
    held = build_dataset(corpus, TrainConfig(val_frac=VAL_FRAC)).val_chars
    print(f"machine: {machine()}")
    print(f"text: {args.corpus} ({corpus.chars:,} characters, K={len(corpus.vocab)}), the last "
          f"{held:,} held out")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    for minutes in args.minutes:
        for network in args.networks:
            print(f"  {network}, {minutes:g} min ...", flush=True)
            run = subprocess.run([sys.executable, __file__, "--child", args.corpus, network,
                                  str(60 * minutes), "--seed", str(args.seed)],
                                 capture_output=True, text=True)
            if run.returncode:
                print(f"    failed:\n{run.stderr[-2000:]}", flush=True)
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            r.update(corpus=args.corpus, corpus_chars=corpus.chars, held_out=held,
                     minutes=minutes, machine=machine())
            with args.results.open("a") as out:
                out.write(json.dumps(r) + "\n")
            print(f"    {r['nats']:.4f} nats/char, {r['chars_seen']:,} characters seen, "
                  f"{r['updates']:,} of {r['planned_updates']:,} updates in "
                  f"{r['wall_seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
