"""Big corpora: peak memory and time to the first training update, first run and second run.

Writes an ASCII text of --size bytes (default 1 GB) into a temporary folder, made of the
bundled corpus repeated, each copy with its speeches in another order (--non-ascii: in
UTF-8, with the corpus's em dashes kept, so the decoding path runs), then trains one
update on it in child processes, each a fresh interpreter with an empty charnn cache at
first:

    sequential, first run    (the text is hashed, encoded and cached)
    sequential, second run   (the cached array is memory-mapped)
    records, first run       (--records: split at newlines, blank records dropped, framed)
    records, second run

Each child times load_corpus, build_dataset, epoch_updates + epoch_schedule and the first
update (backend.train_updates over the schedule's first row), and reports its peak RSS
(getrusage). The temporary folder, text and cache included, is deleted at the end.

    python benchmarks/bench_corpus.py                 # 1 GB
    python benchmarks/bench_corpus.py --size 200M     # smaller
    python benchmarks/bench_corpus.py --non-ascii     # UTF-8 with multi-byte characters
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

RUNS = [("sequential", False, "first"), ("sequential", False, "second"),
        ("records", True, "first"), ("records", True, "second")]


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def write_text(path: Path, size: int, seed: int = 0, ascii: bool = True) -> None:
    """`size` bytes: the bundled corpus again and again, the order of its speeches shuffled
    in each copy; ASCII with non-ASCII characters replaced, or else UTF-8 (a multi-byte
    character cut at the end is left out)."""
    from charnn.corpus import shakespeare_text
    text = shakespeare_text()
    if ascii:
        text = text.encode("ascii", "replace").decode("ascii")
    speeches = text.split("\n\n")
    rng = random.Random(seed)
    written = 0
    with open(path, "wb") as f:
        while written < size:
            rng.shuffle(speeches)
            piece = ("\n\n".join(speeches) + "\n\n").encode("utf-8")[:size - written]
            piece = piece.decode("utf-8", "ignore").encode("utf-8")
            f.write(piece)
            written += len(piece)
            if not piece:                    # what is left is less than a character
                break


def child(path: str, records: bool, backend: str) -> None:
    """One run: from the text file to the first update; prints a JSON line."""
    import resource

    from charnn.backends import get_backend
    from charnn.backends.calls import Optimiser, Windows
    from charnn.config import TrainConfig
    from charnn.corpus import load_corpus
    from charnn.data import build_dataset, epoch_schedule, epoch_updates
    from charnn.train import initial_state

    config = TrainConfig(records=records, backend=backend).validate()
    module = get_backend(backend)
    times = {}
    t0 = time.perf_counter()
    corpus = load_corpus(path, records=records)
    times["load"] = time.perf_counter() - t0
    t = time.perf_counter()
    dataset = build_dataset(corpus, config)
    times["dataset"] = time.perf_counter() - t
    t = time.perf_counter()
    updates = epoch_updates(dataset, config, 1)
    schedule = epoch_schedule(dataset, config, 1)
    times["schedule"] = time.perf_counter() - t
    t = time.perf_counter()
    s = initial_state(config, len(corpus.vocab))
    losses = module.train_updates(s.params, Optimiser(config.optimizer, s.opt_state, 0,
                                                      config.eta, config.clip), s.h,
                                  Windows(dataset.data, schedule.starts,
                                          schedule.lengths, schedule.resets, 0, 1))
    times["update"] = time.perf_counter() - t
    times["first_update"] = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"times": times, "peak_mb": peak_kb / 1024, "chars": corpus.chars,
                      "K": len(corpus.vocab), "dtype": str(corpus.data.dtype),
                      "records": None if corpus.records is None else len(corpus.records),
                      "updates": updates, "loss": float(losses[0]) / config.seq_length}))


def run_child(path: Path, records: bool, backend: str, env: dict) -> dict:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", str(path), "--backend", backend]
                         + (["--records"] if records else []),
                         env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"child failed:\n{out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G", help="bytes of text: 1G (default), 200M, ...")
    parser.add_argument("--backend", default="compiled", choices=("numpy", "compiled"),
                        help="the backend of the first update (default compiled, as training "
                             "uses: it reads the uint8 text in place)")
    parser.add_argument("--non-ascii", action="store_true", help="write UTF-8 with the "
                        "corpus's non-ASCII characters (the decoding path) instead of ASCII")
    parser.add_argument("--folder", default=None, help="where to put the text (default: a "
                        "temporary folder)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--records", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.records, args.backend)
        return

    from charnn import paths
    size = parse_size(args.size)
    work = Path(tempfile.mkdtemp(prefix="charnn-bench-corpus-", dir=args.folder))
    try:
        env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"),
                   CHARNN_CACHE_DIR=str(work / "cache"),
                   # compiled code stays in the usual cache: a first run is not a first compile
                   NUMBA_CACHE_DIR=os.environ.get("NUMBA_CACHE_DIR",
                                                  str(paths.cache_dir() / "numba")))
        warm = work / "warm.txt"
        write_text(warm, 1 << 20)
        for records in (False, True):
            run_child(warm, records, args.backend, dict(env, CHARNN_CACHE_DIR=str(work / "w")))
        text = work / "text.txt"
        t = time.perf_counter()
        write_text(text, size, ascii=not args.non_ascii)
        kind = "UTF-8 (non-ASCII)" if args.non_ascii else "ASCII"
        print(f"text: {size:,} bytes of {kind} in {text} (written in {time.perf_counter() - t:.1f} s); "
              f"backend {args.backend}; python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        rows = []
        for order, records, which in RUNS:
            r = run_child(text, records, args.backend, env)
            rows.append((order, which, r))
            cache_mb = sum(f.stat().st_size for f in (work / "cache").rglob("*") if f.is_file())
            r["cache_mb"] = cache_mb / 2 ** 20
        head = (f"{'run':<22} {'peak RSS':>9} {'1st update':>10} {'load':>6} {'dataset':>7} "
                f"{'schedule':>8} {'update':>6} {'process':>7}  facts")
        print(head)
        print("-" * len(head))
        for order, which, r in rows:
            t = r["times"]
            facts = (f"N={r['chars']:,} K={r['K']} {r['dtype']}, {r['updates']:,} updates"
                     + (f", {r['records']:,} records" if r["records"] is not None else ""))
            print(f"{order + ', ' + which + ' run':<22} {r['peak_mb']:>6.0f} MB {t['first_update']:>8.2f} s "
                  f"{t['load']:>6.2f} {t['dataset']:>7.2f} {t['schedule']:>8.2f} {t['update']:>6.2f} "
                  f"{r['process']:>6.2f}s  {facts}")
        print("(seconds; '1st update' runs from load_corpus to the end of the first update; "
              "'process' is the whole child, interpreter start and imports included)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
