"""Training speed of one update (m = 100, seq_length = 25, AdaGrad, batch 1), every way
charnn can run it, against the textbook per-time-step numpy code as the baseline.

    python benchmarks/bench_train.py [--text PATH] [--repeats 5] [--json PATH]

Each contender is warmed up, then timed `repeats` times over a fixed number of updates;
the table shows the median microseconds per update and the speed-up over the baseline.
The compiled kernels run with numba pinned to one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import textbook_numpy  # noqa: E402
from machine import machine  # noqa: E402
from charnn import corpus as corpus_module  # noqa: E402
from charnn import optim  # noqa: E402
from charnn.backends import compiled, reference  # noqa: E402
from charnn.model import Params  # noqa: E402
from charnn.backends.calls import Optimiser, Windows

M, TAU, ETA, CLIP = 100, 25, 0.1, 5.0


def schedule(n_updates: int, n_data: int):
    usable = (n_data - 1) // TAU
    starts = ((np.arange(n_updates) % usable) * TAU)[:, None].astype(np.int64)
    lengths = np.full((n_updates, 1), TAU, np.int32)
    resets = (starts == 0).astype(np.uint8)
    return starts, lengths, resets


def charnn_runner(module, data, K, dtype):
    params = Params.initial(M, K, 0.01, np.random.default_rng(0), dtype=dtype)
    state = optim.initial_state("adagrad", params)
    h = np.zeros((1, M), dtype)
    done = [0]

    def run(n):
        starts, lengths, resets = schedule(done[0] + n, len(data))
        module.train_updates(params, Optimiser("adagrad", state, done[0], ETA, CLIP), h,
                             Windows(data, starts, lengths, resets, done[0], done[0] + n))
        done[0] += n
    return run


def textbook_runner(data, K):
    state = [None]
    listed = data.tolist()

    def run(n):
        state[0] = textbook_numpy.train(listed, K, M, TAU, ETA, n, state=state[0])
    return run


def torch_runner(data, K, threads):
    import torch
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.RNN(K, M, nonlinearity="tanh")
            self.out = torch.nn.Linear(M, K)

        def forward(self, x, h):
            hs, h = self.rnn(x, h)
            return self.out(hs), h

    net = Net()
    opt = torch.optim.Adagrad(net.parameters(), lr=ETA, eps=1e-8)
    eye = torch.eye(K)
    tokens = torch.from_numpy(data.astype(np.int64))
    h = torch.zeros(1, 1, M)
    pos = [0]

    def run(n):
        nonlocal h
        torch.set_num_threads(threads)
        for _ in range(n):
            e = pos[0]
            if e + TAU + 1 >= len(tokens):
                e, h = 0, torch.zeros(1, 1, M)
            x = eye[tokens[e:e + TAU]].unsqueeze(1)           # (TAU, 1, K) one-hot
            y = tokens[e + 1:e + TAU + 1]
            logits, h = net(x, h.detach())
            loss = torch.nn.functional.cross_entropy(logits.squeeze(1), y, reduction="sum")
            opt.zero_grad()
            loss.backward()
            for p in net.parameters():
                p.grad.clamp_(-CLIP, CLIP)
            opt.step()
            pos[0] = e + TAU
    return run


def sampling_speed(corpus, repeats):
    """Seconds to draw 10,000 characters with each backend, the text streamed in blocks as
    `charnn sample` does."""
    from charnn.sampling import generate
    params = Params.initial(M, len(corpus.vocab), 0.01, np.random.default_rng(0))
    result = {}
    for name, module in (("charnn numpy reference", reference), ("charnn compiled", compiled)):
        generate(params, corpus.vocab, 100, np.random.default_rng(0), module)       # warm up
        times = []
        for r in range(repeats):
            t0 = time.perf_counter()
            generate(params, corpus.vocab, 10_000, np.random.default_rng(r), module)
            times.append(time.perf_counter() - t0)
        result[name] = statistics.median(times)
    return result


def timed(run, n, repeats):
    run(max(1, n // 5))                                       # warm up (and compile)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(n)
        times.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(times), times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text", help="text file to train on (default: the bundled Shakespeare)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats of each contender")
    ap.add_argument("--torch-threads", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "bench_train.json"),
                    help="where to write the results")
    args = ap.parse_args(argv)

    if args.torch_threads:
        corpus = corpus_module.load_corpus(args.text)
        data = corpus.encoded()[: 400_000]
        import torch
        name = f"PyTorch {torch.__version__}, {args.torch_threads} thread" + \
            ("s" if args.torch_threads > 1 else "")
        median, times = timed(torch_runner(data, len(corpus.vocab), args.torch_threads), 1000,
                              args.repeats)
        print(json.dumps(dict(name=name, us_per_update=median, all_us_per_update=times,
                              updates_per_repeat=1000)))
        return

    import numba
    numba.set_num_threads(1)
    compiled.ensure_compiled()
    corpus = corpus_module.load_corpus(args.text)
    data = corpus.encoded()[: 400_000]
    K = len(corpus.vocab)
    print(f"machine: {machine()}")
    print(f"text: {corpus.name}, K = {K}; m = {M}, seq_length = {TAU}, AdaGrad, batch 1")

    contenders = [
        ("textbook numpy (baseline)", textbook_runner(data, K), 300),
        ("charnn numpy reference", charnn_runner(reference, data, K, np.float64), 300),
        ("charnn compiled float64", charnn_runner(compiled, data, K, np.float64), 10000),
        ("charnn compiled float32", charnn_runner(compiled, data, K, np.float32), 10000),
    ]
    rows = []
    for name, run, n in contenders:
        median, times = timed(run, n, args.repeats)
        rows.append(dict(name=name, us_per_update=median, all_us_per_update=times,
                         updates_per_repeat=n))
    try:
        import torch
        # PyTorch runs in a child process of its own, so that its thread pool and numba's
        # never compete for the two cores.
        for threads in sorted({1, os.cpu_count() or 1}):
            child = subprocess.run([sys.executable, __file__, "--torch-threads", str(threads),
                                    "--repeats", str(args.repeats)] +
                                   (["--text", args.text] if args.text else []),
                                   capture_output=True, text=True, check=True)
            rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    except ImportError:
        print("PyTorch not installed: its rows are left out")
    base = rows[0]["us_per_update"]
    print(f"\n{'(compiled: numba pinned to 1 thread; median of %d repeats)' % args.repeats}")
    print(f"{'implementation':40s} {'us/update':>12s} {'speed-up':>10s}")
    for row in rows:
        row["speedup_vs_baseline"] = base / row["us_per_update"]
        print(f"{row['name']:40s} {row['us_per_update']:12.1f} {row['speedup_vs_baseline']:9.1f}x")
    sampling = sampling_speed(corpus, args.repeats)
    print(f"\nsampling 10,000 characters (m = {M}, K = {K}, temperature 1; median of "
          f"{args.repeats})")
    for name, seconds in sampling.items():
        print(f"{name:40s} {seconds:11.3f}s")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(machine=machine(), text=corpus.name, K=K, m=M,
                                   seq_length=TAU, optimizer="adagrad", batch=1,
                                   numba_threads=1, rows=rows,
                                   sampling_10000_chars_seconds=sampling), indent=2))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
