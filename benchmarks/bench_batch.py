"""Training speed with several lanes (batch rows): characters per second of charnn's compiled
kernels (float32, seq_length 25, AdaGrad, the bundled corpus) beside PyTorch on the CPU with
the same model and batch when torch is importable (nn.RNN(tanh), nn.LSTM or nn.GRU, then
nn.Linear, Adagrad, cross-entropy summed over time and averaged over the batch, 2 threads):
the vanilla RNN for B = 1, 8, 32, 128 at m = 100 and m = 256; the LSTM and GRU at m = 256 for
B = 8, 32, 128 with one layer; each at B = 32 with two. charnn trains in a session
(open_session), as a training run does; the products' blocking measured for this CPU is
printed first (charnn tune). Then, per update, calls of one update against calls of 32.

    python benchmarks/bench_batch.py [--networks rnn,lstm,gru] [--repeats 5] [--seconds 0.5]
                                     [--autocast] [--calls ROWS] [--json PATH]

With --autocast PyTorch runs under bfloat16 autocast (its products in bfloat16 on AMX or
AVX512-BF16), charnn in float32 as always.

Each contender is warmed up and calibrated to a number of updates that takes about
`seconds`; then the two are timed in turns, charnn, PyTorch, charnn, PyTorch, ... `repeats`
times each, so that a busy moment of a shared machine falls on both rather than on one. The
table shows each one's median characters per second and the median of the per-turn ratios.
PyTorch runs in a child process of its own (its thread pool and numba's never spin against
each other), driven over a pipe.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import numba
from charnn import optim
from charnn.backends import compiled
from charnn.backends.compiled import tuning
from charnn.config import TrainConfig
from charnn.corpus import load_corpus
from charnn.data import build_dataset, epoch_schedule
from charnn.model import Params
from charnn.networks import NETWORKS
from charnn.backends.calls import Optimiser, Windows

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402

TAU, ETA, CLIP = 25, 0.1, 5.0
BATCHES = (1, 8, 32, 128)
HIDDEN = (100, 256)
# (network, layers, m, B) of each row
ROWS = {"rnn": [("rnn", 1, m, B) for m in HIDDEN for B in BATCHES] + [("rnn", 2, 256, 32)],
        "lstm": [("lstm", 1, 256, B) for B in (8, 32, 128)] + [("lstm", 2, 256, 32)],
        "gru": [("gru", 1, 256, B) for B in (8, 32, 128)] + [("gru", 2, 256, 32)]}
RESULTS = Path(__file__).resolve().parent / "results" / "bench_batch.json"


def calibrate(run, seconds: float) -> int:
    """Warm run(n) up (compiles, allocates) and return the n that takes about `seconds`."""
    run(2)
    n, elapsed = 2, 0.0
    while elapsed < 0.1 * seconds:
        n *= 2
        t0 = time.perf_counter()
        run(n)
        elapsed = time.perf_counter() - t0
    return max(2, int(n * seconds / elapsed))


def rate(run, n: int) -> float:
    """Characters per second of one timed run(n) (run returns the characters it trained on)."""
    t0 = time.perf_counter()
    chars = run(n)
    return chars / (time.perf_counter() - t0)


def charnn_runner(corpus, B: int, m: int, network: str = "rnn", layers: int = 1):
    config = TrainConfig(batch_size=B, hidden=m, dtype="float32", seq_length=TAU,
                         model=network, layers=layers)
    dataset = build_dataset(corpus, config)
    sched = epoch_schedule(dataset, config, 1)
    K = len(corpus.vocab)
    net = NETWORKS[network]
    params = Params(net.initial_params(K, m, layers, 1 / np.sqrt(m), np.random.default_rng(0),
                                       np.float32))
    h = np.zeros((B,) + net.zero_state(m, layers).shape, np.float32)
    state = optim.initial_state("adagrad", params)
    data = dataset.data                      # uint8, as training passes it
    total = len(sched.starts)
    pos = [0]
    session = compiled.open_session(params, "adagrad", state, h)    # as a training run does

    def run(n, per_call=None):
        """n updates in calls of per_call updates (default: as many as the epoch allows)."""
        chars = 0
        while n > 0:
            if pos[0] >= total:
                pos[0] = 0
            first = pos[0]
            last = min(total, first + n, first + (per_call or n))
            session.train_updates(params, Optimiser("adagrad", state, first, ETA, CLIP), h,
                                  Windows(data, sched.starts, sched.lengths, sched.resets,
                                          first, last))
            chars += int(sched.lengths[first:last].sum())
            n -= last - first
            pos[0] = last
        return chars
    return run


def torch_runner(corpus, B: int, m: int, network: str = "rnn", layers: int = 1,
                 autocast: bool = False):
    """PyTorch's run(n): n updates of the same model and batch; under bfloat16 autocast (the
    products in bfloat16, as AMX and AVX512-BF16 run them) when `autocast`."""
    import contextlib

    import torch
    from torch import nn
    torch.set_num_threads(2)
    torch.manual_seed(0)
    K = len(corpus.vocab)
    data = torch.from_numpy(np.asarray(corpus.encoded(), dtype=np.int64))
    stream = (len(data) - 1) // B
    if network == "rnn":
        rnn = nn.RNN(K, m, num_layers=layers, nonlinearity="tanh", batch_first=True)
    else:
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[network](K, m, num_layers=layers,
                                                         batch_first=True)
    out = nn.Linear(m, K)
    parameters = list(rnn.parameters()) + list(out.parameters())
    opt = torch.optim.Adagrad(parameters, lr=ETA)
    lossf = nn.CrossEntropyLoss(reduction="sum")
    offsets = torch.arange(B) * stream

    def zero_state():
        h = torch.zeros(layers, B, m)
        return (h, torch.zeros(layers, B, m)) if network == "lstm" else h

    state = {"h": zero_state(), "pos": 0}

    def run(n):
        for _ in range(n):
            if state["pos"] + TAU + 1 > stream:
                state["pos"] = 0
                state["h"] = zero_state()
            idx = offsets[:, None] + state["pos"] + torch.arange(TAU)[None, :]
            x = nn.functional.one_hot(data[idx], K).float()
            y = data[idx + 1]
            with (torch.autocast("cpu", dtype=torch.bfloat16) if autocast
                  else contextlib.nullcontext()):
                hs, hn = rnn(x, state["h"])
                logits = out(hs)
            loss = lossf(logits.float().reshape(-1, K), y.reshape(-1)) / B
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_value_(parameters, CLIP)
            opt.step()
            state["h"] = tuple(a.detach() for a in hn) if network == "lstm" else hn.detach()
            state["pos"] += TAU
        return n * B * TAU
    return run


def torch_worker() -> int:
    """The child process: answers "setup network layers m B seconds" with the calibrated n,
    "run n" with
    characters per second, one line each, until stdin closes."""
    corpus = load_corpus()
    run = None
    for line in sys.stdin:
        command, *args = line.split()
        if command == "setup":
            network, layers, m, B = args[0], int(args[1]), int(args[2]), int(args[3])
            seconds, autocast = float(args[4]), args[5] == "bf16"
            run = torch_runner(corpus, B, m, network, layers, autocast)
            print(calibrate(run, seconds), flush=True)
        elif command == "run":
            print(rate(run, int(args[0])), flush=True)
    return 0


class TorchChild:
    """PyTorch in a child process, timed on request."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, __file__, "--torch-worker"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)

    def ask(self, line: str) -> str:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError("the PyTorch child process ended unexpectedly")
        return answer.strip()

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def compare_calls(corpus, args) -> list[dict]:
    """Per update, calls of one update against calls of 32, in alternating turns of the same
    number of updates: what a call costs besides its updates."""
    print("\nper update: calls of 1 update against calls of 32 (median of alternating turns)")
    print(f"{'network':>10} {'m':>5} {'B':>5} {'1-update ms':>12} {'32-update ms':>13} {'ratio':>7}")
    out = []
    for spec in args.calls.split(","):
        network, layers, m, B = spec.split(":")
        layers, m, B = int(layers), int(m), int(B)
        run = charnn_runner(corpus, B, m, network, layers)
        n = max(32, calibrate(run, args.seconds) // 32 * 32)
        one, many = [], []
        for _ in range(args.repeats):
            for per_call, times in ((1, one), (32, many)):
                t0 = time.perf_counter()
                run(n, per_call)
                times.append((time.perf_counter() - t0) / n)
        a, b = statistics.median(one), statistics.median(many)
        out.append({"network": network, "layers": layers, "m": m, "B": B,
                    "one_update_call_s": a, "32_update_call_s": b, "ratio": a / b})
        name = network if layers == 1 else f"{network} x{layers}"
        print(f"{name:>10} {m:>5} {B:>5} {a * 1e3:>12.3f} {b * 1e3:>13.3f} {a / b:>7.2f}",
              flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed turns of each row")
    parser.add_argument("--seconds", type=float, default=0.5,
                        help="about how long one timed turn runs")
    parser.add_argument("--networks", default="rnn,lstm,gru",
                        help="which networks' rows, comma-separated (default all)")
    parser.add_argument("--json", default=None,
                        help=f"where to write the results (default {RESULTS.name} in "
                             "benchmarks/results, bench_batch_bf16.json with --autocast)")
    parser.add_argument("--autocast", action="store_true",
                        help="PyTorch under bfloat16 autocast (its products in bfloat16, on "
                             "AMX or AVX512-BF16 where the CPU has them); charnn in float32")
    parser.add_argument("--calls", default="rnn:1:100:1,rnn:1:256:32,lstm:1:256:32,gru:2:256:32",
                        help="rows (network:layers:m:B) whose 1-update and 32-update calls are "
                             "compared ('' for none)")
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_worker:
        return torch_worker()
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    corpus = load_corpus()
    compiled.ensure_compiled(dtypes=(np.float32,))
    head = (f"{machine()}\nnumba {numba.__version__} ({numba.get_num_threads()} threads), "
            f"PyTorch {torch_version or 'not installed'}; float32, seq_length {TAU}, "
            f"AdaGrad, K = {len(corpus.vocab)}; median of {args.repeats} alternating turns "
            f"of ~{args.seconds} s")
    print(head)
    print(tuning.describe())
    print(f"{'network':>10} {'m':>5} {'B':>5} {'charnn chars/s':>16} {'PyTorch chars/s':>16} "
          f"{'ratio':>7}   per-turn ratios", flush=True)
    child = TorchChild() if torch_version else None
    rows = []
    try:
        for network, layers, m, B in [row for name in args.networks.split(",")
                                      for row in ROWS[name]]:
            run = charnn_runner(corpus, B, m, network, layers)
            n = calibrate(run, args.seconds)
            n_torch = int(child.ask(f"setup {network} {layers} {m} {B} {args.seconds} "
                                    f"{'bf16' if args.autocast else 'float32'}")) \
                if child else 0
            ours, theirs = [], []
            for _ in range(args.repeats):
                ours.append(rate(run, n))
                if child:
                    theirs.append(float(child.ask(f"run {n_torch}")))
            mine = statistics.median(ours)
            other = statistics.median(theirs) if theirs else None
            turns = [a / b for a, b in zip(ours, theirs)]
            ratio = statistics.median(turns) if turns else None
            rows.append({"network": network, "layers": layers, "m": m, "B": B,
                         "charnn_chars_per_s": mine,
                         "pytorch_chars_per_s": other, "ratio": ratio,
                         "turn_ratios": turns})
            name = network if layers == 1 else f"{network} x{layers}"
            print(f"{name:>10} {m:>5} {B:>5} {mine:>16,.0f} "
                  f"{(f'{other:,.0f}' if other else '-'):>16} "
                  f"{(f'{ratio:.2f}' if ratio else '-'):>7}   "
                  + " ".join(f"{t:.2f}" for t in turns), flush=True)
    finally:
        if child:
            child.close()
    calls = compare_calls(corpus, args) if args.calls else []
    path = Path(args.json or RESULTS.with_name("bench_batch_bf16.json" if args.autocast
                                               else RESULTS.name))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), "numba": numba.__version__,
                                "threads": numba.get_num_threads(), "torch": torch_version,
                                "dtype": "float32", "seq_length": TAU, "optimizer": "adagrad",
                                "repeats": args.repeats, "seconds": args.seconds,
                                "pytorch_autocast": "bfloat16" if args.autocast else None,
                                "blocking": tuning.recorded(), "rows": rows,
                                "calls": calls}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
