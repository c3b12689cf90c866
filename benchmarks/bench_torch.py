"""Training speed of charnn's torch backend next to a plain PyTorch training loop of the same
network, on whatever device there is (a CUDA GPU when PyTorch sees one).

    PYTHONPATH=src python3 benchmarks/bench_torch.py [--quick] [--out FILE.json]
        [--device auto|cpu|cuda|mps] [--models lstm,gru] [--hidden 512,1024] [--layers 1,2,3]
        [--batch 64,256] [--updates 200] [--rounds 2]

The plain loop is what a PyTorch user writes: nn.RNN/LSTM/GRU + nn.Linear on one-hot
characters, B lanes each reading its own stretch of the text with its state carried (detached)
from window to window, cross-entropy summed over the window and averaged over the lanes,
clip_grad_value_, torch.optim.Adam (charnn's Adam is the same rule). charnn runs the same
network, batch, window and optimiser through its Trainer, with its loop, logging every 100
updates (its default), best-model tracking (the parameters and optimiser state copied back from
the device when the loss improves) and a 200-character sample in the middle of every turn (fifty
times as often as charnn's default, every 10,000 updates, so a bound on what sampling costs):
its characters per second are the training loop's, from charnn's own clock (state.elapsed).
On the CPU, the compiled (numba) backend runs too where it has the network, in a process of
its own.

Each configuration is warmed up once, then the contenders take turns, `rounds` times, and the
best of each is shown, with charnn's speed as a fraction of the plain loop's. Timings
synchronise the GPU before the clock is read. Nothing is downloaded: the text is charnn's
bundled Shakespeare.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT.parent / "src"))      # charnn itself, when not pip-installed

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from machine import machine  # noqa: E402
from charnn import TrainConfig, Trainer, load_corpus  # noqa: E402
from charnn.backends import import_backend  # noqa: E402
from charnn.backends.pytorch import resolve_device  # noqa: E402

ETA, CLIP, SEQ = 0.002, 5.0, 50
QUICK = [("lstm", 512, 1, 64), ("lstm", 512, 2, 128), ("lstm", 1024, 3, 256),
         ("gru", 1024, 2, 128), ("rnn", 512, 1, 64)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class Plain(nn.Module):
    def __init__(self, model, K, m, layers):
        super().__init__()
        module = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[model]
        self.rnn, self.out, self.K = module(K, m, num_layers=layers), nn.Linear(m, K), K

    def forward(self, x, h):
        out, h = self.rnn(F.one_hot(x, self.K).to(self.out.weight.dtype), h)
        return self.out(out), h


def plain_loop(model, m, layers, B, data, K, device, dtype):
    """A run function: n updates of the plain PyTorch loop; returns the seconds they took."""
    torch.manual_seed(0)
    net = Plain(model, K, m, layers).to(device=device, dtype=dtype)
    opt = torch.optim.Adam(net.parameters(), lr=ETA)
    text = torch.from_numpy(data.astype(np.int64)).to(device)
    stride = (len(data) - SEQ - 1) // B
    offsets = torch.arange(B, device=device) * stride
    steps = torch.arange(SEQ + 1, device=device)
    zeros = torch.zeros(layers, B, m, device=device, dtype=dtype)
    h = (zeros, zeros.clone()) if model == "lstm" else zeros
    done = [0, h]

    def run(n):
        sync(device)
        started = time.perf_counter()
        h = done[1]
        for _ in range(n):
            u = done[0] % (stride // SEQ)
            window = text[(offsets[:, None] + u * SEQ + steps[None, :])].T   # (SEQ+1, B)
            h = tuple(s.detach() for s in h) if isinstance(h, tuple) else h.detach()
            logits, h = net(window[:-1], h)
            loss = F.cross_entropy(logits.reshape(-1, K), window[1:].reshape(-1),
                                   reduction="sum") / B
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_value_(net.parameters(), CLIP)
            opt.step()
            done[0] += 1
        loss.item()
        sync(device)
        done[1] = h
        return time.perf_counter() - started
    return run


def charnn_loop(model, m, layers, B, corpus, device_name, dtype, backend="torch"):
    """A run function: n updates of charnn's Trainer (a new run each time, its clock)."""
    def run(n):
        config = TrainConfig(model=model, hidden=m, layers=layers, batch_size=B,
                             seq_length=SEQ, optimizer="adam", eta=ETA, clip=CLIP,
                             updates=n, log_every=100, sample_every=max(1, n // 2),
                             sample_length=200,
                             checkpoint_every=10**9, backend=backend,
                             device=device_name if backend == "torch" else "auto",
                             dtype=dtype)
        with tempfile.TemporaryDirectory() as folder:
            trainer = Trainer(corpus, config, Path(folder) / "run")
            state = trainer.run()
        if trainer.stop_requested:          # (SIGHUP too: start it with nohup in a background)
            raise SystemExit("a stop signal cut charnn's turn short; its time would be wrong")
        return state.elapsed
    return run


def compiled_loop(model, m, layers, B, dtype):
    """A run function: n updates of the compiled backend's Trainer, in a process of its own
    (numba's worker threads, spinning after a kernel, would slow PyTorch's in this one)."""
    def run(n):
        done = subprocess.run([sys.executable, __file__, "--compiled-turn",
                               f"{model},{m},{layers},{B},{n},{dtype}"],
                              capture_output=True, text=True, check=True)
        return float(done.stdout.split()[-1])
    return run


def compiled_turn(spec: str) -> int:
    model, m, layers, B, n, dtype = spec.split(",")
    corpus = load_corpus("shakespeare")
    run = charnn_loop(model, int(m), int(layers), int(B), corpus, "cpu", dtype,
                      backend="compiled")
    run(2)                                               # loads the compiled kernels
    print(run(int(n)))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help=f"only {len(QUICK)} configurations (a few minutes on a GPU)")
    p.add_argument("--out", type=Path, help="write the table as JSON here")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--models", default="rnn,lstm,gru")
    p.add_argument("--hidden", default="512,1024")
    p.add_argument("--layers", default="1,2,3")
    p.add_argument("--batch", default="64,256")
    p.add_argument("--updates", type=int, default=200, help="updates per timed turn")
    p.add_argument("--rounds", type=int, default=2, help="turns of each contender")
    p.add_argument("--compiled-turn", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.compiled_turn:
        return compiled_turn(args.compiled_turn)

    device = resolve_device(args.device, args.dtype)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    corpus = load_corpus("shakespeare")
    data, K = np.asarray(corpus.data), len(corpus.vocab)
    if args.quick:
        configs = QUICK
    else:
        configs = [(model, m, layers, B) for model, m, layers, B in itertools.product(
            args.models.split(","), map(int, args.hidden.split(",")),
            map(int, args.layers.split(",")), map(int, args.batch.split(",")))
            if model != "rnn" or layers == 1]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else machine()
    print(f"charnn's torch backend against a plain PyTorch loop on {device} ({where}), "
          f"torch {torch.__version__}, {args.dtype}, seq_length {SEQ}, Adam, "
          f"{args.updates} updates a turn, best of {args.rounds} alternating turns")
    compiled = import_backend("compiled")
    header = (f"{'network':<7} {'m':>5} {'layers':>6} {'B':>4} {'plain chars/s':>14} "
              f"{'charnn chars/s':>15} {'ratio':>6}" +
              (f" {'compiled chars/s':>17}" if device.type == "cpu" else ""))
    print(header)
    rows = []
    for model, m, layers, B in configs:
        runs = {"plain": plain_loop(model, m, layers, B, data, K, device, dtype),
                "charnn": charnn_loop(model, m, layers, B, corpus, str(device.type), args.dtype)}
        if device.type == "cpu" and model in compiled.NETWORKS:
            runs["compiled"] = compiled_loop(model, m, layers, B, args.dtype)
        for run in runs.values():                        # warm-up: cuDNN plans, compilation
            run(max(2, args.updates // 10))
        best = {name: 0.0 for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                best[name] = max(best[name], args.updates * B * SEQ / run(args.updates))
        row = dict(network=model, hidden=m, layers=layers, batch=B, **{
            f"{name}_chars_per_s": round(v) for name, v in best.items()},
            ratio=best["charnn"] / best["plain"])
        rows.append(row)
        print(f"{model:<7} {m:>5} {layers:>6} {B:>4} {best['plain']:>14,.0f} "
              f"{best['charnn']:>15,.0f} {row['ratio']:>6.2f}" +
              (f" {best['compiled']:>17,.0f}" if "compiled" in best else
               (f" {'-':>17}" if device.type == "cpu" else "")), flush=True)
    if args.out:
        args.out.write_text(json.dumps({
            "device": str(device), "device_name": where, "torch": torch.__version__,
            "dtype": args.dtype, "seq_length": SEQ, "updates": args.updates,
            "rounds": args.rounds, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
