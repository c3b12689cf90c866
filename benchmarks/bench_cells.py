"""The stacked cells' training speed side by side (float32, m = 256, seq_length 25, Adam with
η 0.002, the bundled corpus, the compiled backend): characters per second of each cell at B = 8, 32 and
128, and of two layers at B = 32, as ratios to the LSTM at the same B measured in the same run.
With --against DIR, the same rows of another charnn source tree (a checkout of an earlier
commit) run beside this one, turn about, and the table adds this tree's speed over that one's:
how a change to the kernels moved each cell.

    python benchmarks/bench_cells.py [--against DIR] [--cells lstm,gru,mlstm] [--repeats 5]
                                     [--seconds 0.5] [--json PATH]

Each tree trains in a child process of its own (its own compile cache: CHARNN_CACHE_DIR), driven
over a pipe; each row is warmed up and calibrated to about `seconds` a turn, then the contenders
are timed in turns, `repeats` times each, so that a busy moment of a shared machine falls on
all of them rather than on one. The figures are medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import machine  # noqa: E402

TAU, ETA, CLIP, M = 25, 0.002, 5.0, 256
# (layers, B) of each cell's rows: the vanilla RNN of one layer runs on its own kernels
# (batch 1 is the assignment's run), with two layers on the stack like every cell
SHAPES = {"rnn": [(1, 1), (1, 32), (2, 32)]}
STACKED_SHAPES = [(1, 8), (1, 32), (1, 128), (2, 32)]
RESULTS = HERE / "results" / "bench_cells.json"


# -- the child: one charnn tree, timing training calls on request ------------------------------

def child() -> None:
    """Read 'cell layers B n' lines; for each, train n updates (after a warm-up the first time
    a row is asked for) and print the seconds they took."""
    import numpy as np
    from charnn import optim
    from charnn.backends import get_backend
    from charnn.config import TrainConfig
    from charnn.corpus import load_corpus
    from charnn.data import build_dataset, epoch_schedule
    from charnn.networks import Network
    try:
        from charnn.backends import calls
    except ImportError:
        calls = None

    backend = get_backend("compiled", dtype="float32", network="lstm", jobs=())
    corpus = load_corpus()
    rows = {}
    for line in sys.stdin:
        cell, layers, B, n = line.split()
        layers, B, n = int(layers), int(B), int(n)
        try:                                                 # an earlier tree may lack the
            config = TrainConfig(model=cell, layers=layers, hidden=M, batch_size=B,  # network
                                 seq_length=TAU, dtype="float32").validate()
            assert cell in backend.NETWORKS
        except Exception:
            print("nan", flush=True)
            continue
        if (cell, layers, B) not in rows:
            jobs = ("train-one" if B == 1 else "train-batch",)
            try:                                             # layers matter to the compile
                get_backend("compiled", dtype="float32", network=config.network(), jobs=jobs)
            except Exception:                                # a tree that takes a cell's name
                get_backend("compiled", dtype="float32", network=cell, jobs=jobs)
            dataset = build_dataset(corpus, config)
            spec = Network(cell, layers, M, len(corpus.vocab))
            params = spec.initial_params(None, np.random.default_rng(0), np.float32)
            rows[cell, layers, B] = (params, optim.initial_state("adam", params),
                                     spec.zero_state(np.float32, lanes=B), dataset,
                                     epoch_schedule(dataset, config, 1))
        params, state, h, dataset, sched = rows[cell, layers, B]
        first = int(np.random.default_rng(n).integers(0, max(len(sched.starts) - n, 1)))
        t0 = time.perf_counter()
        if calls is None:                                    # a tree from before calls.py
            backend.train_updates(params, "adam", state, 0, ETA, CLIP, h, dataset.data,
                                  sched.starts, sched.lengths, sched.resets, first, first + n)
        else:
            backend.train_updates(params, calls.Optimiser("adam", state, 0, ETA, CLIP), h,
                                  calls.Windows(dataset.data, sched.starts, sched.lengths,
                                                sched.resets, first, first + n))
        print(time.perf_counter() - t0, flush=True)


# -- the parent: the table ---------------------------------------------------------------------

class Tree:
    """A child process running the charnn of one source tree."""

    def __init__(self, name: str, source: Path, cache: Path):
        env = dict(os.environ, PYTHONPATH=str(source / "src"), CHARNN_CACHE_DIR=str(cache))
        self.name = name
        self.proc = subprocess.Popen([sys.executable, __file__, "--child"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def time(self, cell: str, layers: int, B: int, n: int) -> float:
        self.proc.stdin.write(f"{cell} {layers} {B} {n}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} child stopped")
        return float(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def calibrate(tree: Tree, row, seconds: float) -> int | None:
    """Updates a turn of about `seconds`, or None where the tree has no such cell."""
    first = tree.time(*row, 2)                                # compile or load, allocate
    if first != first:                                        # nan: no such cell
        return None
    n = 2
    while (elapsed := tree.time(*row, n)) < 0.3 * seconds:
        n *= 2
    return max(2, round(n * seconds / elapsed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--against", type=Path, default=None,
                        help="another charnn source tree to time beside this one")
    parser.add_argument("--cells", default="rnn,lstm,gru,mlstm")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        child()
        return
    cells = args.cells.split(",")
    caches = tempfile.TemporaryDirectory()
    trees = [Tree("this", HERE.parent, Path(caches.name) / "this")]
    if args.against is not None:
        trees.append(Tree("against", args.against.resolve(), Path(caches.name) / "against"))
    print(f"machine: {machine()}", flush=True)
    results = []
    for cell, layers, B in sorted(((c, l, b) for c in cells
                                   for l, b in SHAPES.get(c, STACKED_SHAPES)),
                                  key=lambda r: (r[1], r[2], cells.index(r[0]))):
        row = (cell, layers, B)
        counts = [calibrate(tree, row, args.seconds) for tree in trees]
        timed = [(tree, n) for tree, n in zip(trees, counts) if n is not None]
        speeds = [[] for _ in timed]
        for _ in range(args.repeats):
            for k, (tree, n) in enumerate(timed):
                speeds[k].append(n * B * TAU / tree.time(*row, n))
        medians = [statistics.median(s) for s in speeds]
        both = len(timed) > 1
        turn_ratio = statistics.median(a / b for a, b in zip(*speeds)) if both else None
        results.append({"cell": cell, "layers": layers, "B": B, "chars_per_s": medians[0],
                        "against_chars_per_s": medians[1] if both else None,
                        "this_over_against": turn_ratio})
        shown = f"{cell}{' x2' if layers > 1 else ''} B = {B}: {medians[0]:,.0f} chars/s"
        if turn_ratio is not None:
            shown += f"; against {medians[1]:,.0f}: x{turn_ratio:.2f}"
        print(shown, flush=True)
    for tree in trees:
        tree.close()
    print(f"\n{'row':<16} {'chars/s':>10} {'/ LSTM':>7}" +
          (f" {'against':>10} {'this/against':>13}" if len(trees) > 1 else ""))
    for r in results:
        lstm = next((x for x in results if x["cell"] == "lstm" and x["layers"] == r["layers"]
                     and x["B"] == r["B"]), None)
        r["over_lstm"] = r["chars_per_s"] / lstm["chars_per_s"] if lstm else None
        name = f"{r['cell']}{' x2' if r['layers'] > 1 else ''} B={r['B']}"
        line = f"{name:<16} {r['chars_per_s']:>10,.0f} " + \
            (f"{r['over_lstm']:>7.2f}" if lstm else f"{'':>7}")
        if r["this_over_against"] is not None:
            line += f" {r['against_chars_per_s']:>10,.0f} {r['this_over_against']:>13.2f}"
        print(line)
    out = args.json or RESULTS
    out.write_text(json.dumps({"machine": machine(), "m": M, "seq_length": TAU,
                               "dtype": "float32", "repeats": args.repeats,
                               "against": str(args.against) if args.against else None,
                               "rows": results}, indent=1) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
