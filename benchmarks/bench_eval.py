"""Evaluation speed: characters per second of scoring a held-out text in one lane (the loss of
every next character, the state carried through the whole text), as `charnn eval` and a
training run's held-out figure do, for stacked networks of float32 weights: charnn as it
scores (a chunk of characters through each layer before the next, the layers side by side
on the cores: stack.py), charnn one character at a time through every layer on one core (as
it scored before chunks; the same bits), and PyTorch on the CPU scoring the same text with
the same model when torch is importable (nn.LSTM, nn.GRU or nn.RNN(tanh), then nn.Linear and
log_softmax, under inference_mode, batch 1, in pieces of 1,000 characters that carry the
state, 2 threads).

    python benchmarks/bench_eval.py [--chars 20000] [--repeats 5] [--rows gru:2:384,...]

The three are timed in turns, `repeats` times each; the table shows each one's median and
the medians of the per-turn ratios to PyTorch and to one character at a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import numba
from charnn.backends import compiled
from charnn.backends.compiled import CELLS, stack
from charnn.backends.compiled.lanes import _text
from charnn.corpus import load_corpus
from charnn.model import Params
from charnn.networks import NETWORKS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402

# networks the stack runs (a vanilla RNN of one layer has kernels of its own)
ROWS = "lstm:1:256,lstm:2:256,gru:1:256,gru:2:256,gru:2:384,gru:2:512,rnn:2:256"
RESULTS = Path(__file__).resolve().parent / "results" / "bench_eval.json"
PIECE = 1000


def charnn_scorer(network: str, layers: int, m: int, K: int, text: np.ndarray):
    """charnn's evaluation as `charnn eval` runs it, and the same in the order before
    chunks: one character at a time through every layer, on one core (stack._total_loss
    with chunks of 1, the bits either way)."""
    params = Params(NETWORKS[network].initial_params(K, m, layers, 1 / np.sqrt(m),
                                                     np.random.default_rng(0), np.float32))
    segment = np.array([[0, len(text)]])
    compiled.total_loss(params, text[:100], np.array([[0, 100]]))     # compiled, warm
    lay, theta, WT = stack._theta_and_transposes(CELLS[network], params)
    states = np.zeros((1, lay.layers, lay.S, lay.m), np.float32)
    total = np.zeros(1)

    def score() -> float:
        return compiled.total_loss(params, text, segment)[0]

    def one_at_a_time() -> float:
        stack._total_loss(lay.cell, lay.layers, lay.m, lay.K, theta, lay.off, WT, lay.offT,
                          *_text(text), segment, states, 1, total)
        return total[0]
    return score, one_at_a_time


def torch_scorer(network: str, layers: int, m: int, K: int, text: np.ndarray):
    import torch
    from torch import nn
    torch.set_num_threads(2)
    torch.manual_seed(0)
    kinds = {"lstm": nn.LSTM, "gru": nn.GRU}
    rnn = kinds[network](K, m, num_layers=layers, batch_first=True) if network in kinds else \
        nn.RNN(K, m, num_layers=layers, nonlinearity="tanh", batch_first=True)
    out = nn.Linear(m, K)
    data = torch.from_numpy(text.astype(np.int64))

    def score() -> float:
        total, state = 0.0, None
        with torch.inference_mode():
            for at in range(0, len(data) - 1, PIECE):
                x = data[at:at + PIECE]
                y = data[at + 1:at + PIECE + 1]
                x = x[:len(y)]
                hs, state = rnn(nn.functional.one_hot(x, K).float()[None], state)
                logp = torch.log_softmax(out(hs[0]), dim=-1)
                total -= float(logp.gather(1, y[:, None]).sum())
        return total
    score()
    return score


def timed(score) -> float:
    t0 = time.perf_counter()
    score()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chars", type=int, default=20_000, help="characters scored per turn")
    parser.add_argument("--repeats", type=int, default=5, help="timed turns of each")
    parser.add_argument("--rows", default=ROWS, help="network:layers:m, comma-separated")
    parser.add_argument("--json", default=str(RESULTS), help="where to write the results")
    args = parser.parse_args(argv)
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    corpus = load_corpus()
    text = np.asarray(corpus.encoded()[:args.chars], dtype=np.uint8)
    K = len(corpus.vocab)
    print(f"{machine()}\nnumba {numba.__version__}, PyTorch {torch_version or 'not installed'}; "
          f"float32, one lane, {len(text):,} characters, K = {K}; median of {args.repeats} "
          "alternating turns")
    print(f"{'network':>10} {'m':>5} {'charnn chars/s':>15} {'1 at a time':>12} {'gain':>6} "
          f"{'PyTorch chars/s':>16} {'ratio':>7}")
    rows = []
    for spec in args.rows.split(","):
        network, layers, m = spec.split(":")
        layers, m = int(layers), int(m)
        ours, single = charnn_scorer(network, layers, m, K, text)
        theirs = torch_scorer(network, layers, m, K, text) if torch_version else None
        a, c, b = [], [], []
        for _ in range(args.repeats):
            a.append(timed(ours))
            c.append(timed(single))
            if theirs:
                b.append(timed(theirs))
        scored = len(text) - 1
        row = {"network": network, "layers": layers, "m": m,
               "charnn_chars_per_s": scored / statistics.median(a),
               "one_at_a_time_chars_per_s": scored / statistics.median(c),
               "gain": statistics.median(y / x for x, y in zip(a, c))}
        line = (f"{row['charnn_chars_per_s']:>15,.0f} {row['one_at_a_time_chars_per_s']:>12,.0f}"
                f" {row['gain']:>6.2f}")
        if theirs:
            row["pytorch_chars_per_s"] = scored / statistics.median(b)
            row["ratio"] = statistics.median(y / x for x, y in zip(a, b))
            line += f" {row['pytorch_chars_per_s']:>16,.0f} {row['ratio']:>7.2f}"
        rows.append(row)
        name = network if layers == 1 else f"{network} x{layers}"
        print(f"{name:>10} {m:>5} {line}", flush=True)
    Path(args.json).write_text(json.dumps({"machine": machine(), "numba": numba.__version__,
                                           "torch": torch_version, "chars": len(text),
                                           "repeats": args.repeats, "rows": rows}, indent=1)
                               + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
