"""Held-out loss per CPU-minute: each charnn network in its best configuration, and a small
character-level GPT in PyTorch, each trained for the same wall-clock budget on the bundled
corpus with its last 10% held out.

    python benchmarks/bench_learning.py                      # 3 and 10 minutes each
    python benchmarks/bench_learning.py --minutes 3 --networks rnn gpt
    python benchmarks/bench_learning.py --quick               # a smoke run: 15 s each

charnn's networks train as `charnn train --time-limit` trains them (the speed of the first
seconds fixes the number of updates, over which the learning-rate schedule spans; the
held-out loss is scored at the end exactly as `charnn eval` scores the run's weights on the
held-out text). The GPT follows nanoGPT's settings for a CPU (4 layers, 4 heads, 128 wide,
context 64, batch 12, AdamW lr 1e-3 with 100 warm-up iterations and a cosine decay to 1e-4
over the iterations that fit the budget, estimated from a short timed run; weight decay 0.1
on the 2-D weights, beta2 0.99, no dropout, gradient norm clipped at 1), on the same
characters, scored on every held-out character with 32 to 64 characters of context (sliding
windows of 64, half overlapping). Every run has both cores, one run after another. Prints
one table and writes JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from charnn import TrainConfig, Trainer, load_corpus
from charnn.data import build_dataset
from charnn.presets import PRESETS, as_flags

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402

VAL_FRAC = 0.1
RESULTS = Path(__file__).resolve().parent / "results" / "bench_learning.json"
THREADS = 2
# Held-out characters charnn's trainer scores inside the budget (see train_charnn).
TRAIN_EVAL_CHARS = 20_000

# The configuration of each network that trains best in a few CPU-minutes, from short runs
# (the search is in the README); the GRU's is the best-cpu preset. All train 32 lanes of 50
# characters in float32 with Adam, 100 warm-up updates and a cosine down to a tenth of eta.
SCHEDULE = dict(dtype="float32", optimizer="adam", lr_schedule="cosine", warmup_updates=100,
                seq_length=50, batch_size=32)
NETWORKS = {
    "rnn": dict(model="rnn", hidden=256, eta=0.003, min_eta=0.0003, **SCHEDULE),
    "lstm": dict(model="lstm", hidden=256, layers=1, eta=0.004, min_eta=0.0004, **SCHEDULE),
    "gru": dict(PRESETS["best-cpu"]),
}
GPT = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, lr=1e-3,
           min_lr=1e-4, warmup_iters=100, weight_decay=0.1, beta1=0.9, beta2=0.99,
           grad_clip=1.0)


# -- charnn ---------------------------------------------------------------------------------

def train_charnn(corpus, settings: dict, seconds: float, seed: int, eval_chars: int) -> dict:
    # Inside the budget the trainer scores only the first TRAIN_EVAL_CHARS held-out characters
    # (its evaluation at update 0 and the one that times the run); the final weights are then
    # scored on every held-out character outside the budget, as the GPT is.
    config = TrainConfig(val_frac=VAL_FRAC, time_limit=seconds, sample_every=10**9,
                         eval_every=10**9, checkpoint_every=10**9, log_every=100,
                         eval_chars=min(eval_chars, TRAIN_EVAL_CHARS), seed=seed, **settings)
    with tempfile.TemporaryDirectory() as tmp:
        said = []
        trainer = Trainer(corpus, config, Path(tmp) / "run", announce=said.append)
        started = time.perf_counter()
        state = trainer.run()
        wall = time.perf_counter() - started
        trainer.config.eval_chars = eval_chars
        score = trainer.validation_score()               # what charnn eval says of the weights
        nats, count = score.nats, score.count
    c = trainer.config
    return {"network": settings["model"], "settings": as_flags(settings),
            "backend": trainer.backend_name, "updates": state.iteration,
            "planned_updates": c.updates, "stopped_by_time_limit": trainer.time_up,
            "chars_seen": state.iteration * c.batch_size * c.seq_length,
            "held_out_chars": count, "nats": nats, "bits": nats / math.log(2),
            "wall_seconds": wall, "note": said[-1] if said else ""}


# -- the small GPT --------------------------------------------------------------------------

def gpt_model(vocab: int):
    import torch
    from torch import nn
    from torch.nn import functional as F
    g = GPT

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            C = g["n_embd"]                        # no biases, as nanoGPT's default
            self.ln1, self.ln2 = nn.LayerNorm(C, bias=False), nn.LayerNorm(C, bias=False)
            self.qkv = nn.Linear(C, 3 * C, bias=False)
            self.proj = nn.Linear(C, C, bias=False)
            self.fc = nn.Linear(C, 4 * C, bias=False)
            self.out = nn.Linear(4 * C, C, bias=False)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
            heads = lambda a: a.view(B, T, g["n_head"], C // g["n_head"]).transpose(1, 2)  # noqa: E731
            y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
            x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
            return x + self.out(F.gelu(self.fc(self.ln2(x))))

    class SmallGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(vocab, g["n_embd"])
            self.wpe = nn.Embedding(g["block_size"], g["n_embd"])
            self.blocks = nn.ModuleList(Block() for _ in range(g["n_layer"]))
            self.ln_f = nn.LayerNorm(g["n_embd"], bias=False)
            self.head = nn.Linear(g["n_embd"], vocab, bias=False)
            self.head.weight = self.wte.weight                  # tied, as nanoGPT's
            for name, p in self.named_parameters():              # nanoGPT's initialisation
                if p.dim() >= 2:
                    std = 0.02 / math.sqrt(2 * g["n_layer"]) if name.endswith(
                        ("proj.weight", "out.weight")) else 0.02
                    nn.init.normal_(p, 0.0, std)

        def forward(self, idx):
            pos = torch.arange(idx.shape[1], device=idx.device)
            x = self.wte(idx) + self.wpe(pos)
            for block in self.blocks:
                x = block(x)
            return self.head(self.ln_f(x))

    return SmallGPT()


def gpt_lr(it: int, max_iters: int) -> float:
    """nanoGPT's schedule: linear warm-up, then a cosine from lr down to min_lr."""
    g = GPT
    if it < g["warmup_iters"]:
        return g["lr"] * (it + 1) / (g["warmup_iters"] + 1)
    if it >= max_iters:
        return g["min_lr"]
    ratio = (it - g["warmup_iters"]) / max(max_iters - g["warmup_iters"], 1)
    return g["min_lr"] + 0.5 * (1 + math.cos(math.pi * ratio)) * (g["lr"] - g["min_lr"])


def train_gpt(corpus, seconds: float, seed: int, eval_chars: int) -> dict:
    import torch
    from torch.nn import functional as F
    torch.set_num_threads(THREADS)
    torch.manual_seed(seed)
    g = GPT
    split = build_dataset(corpus, TrainConfig(val_frac=VAL_FRAC))
    (val_start, val_end), = split.val
    data = torch.from_numpy(corpus.data.astype(np.int64))
    train, val = data[:val_start], data[val_start:val_end]
    rng = np.random.default_rng(seed)

    def batch():
        ix = torch.from_numpy(rng.integers(0, len(train) - g["block_size"] - 1, g["batch_size"]))
        x = torch.stack([train[i:i + g["block_size"]] for i in ix])
        y = torch.stack([train[i + 1:i + 1 + g["block_size"]] for i in ix])
        return x, y

    def optimiser(model):
        decay = [p for p in model.parameters() if p.dim() >= 2]
        rest = [p for p in model.parameters() if p.dim() < 2]
        return torch.optim.AdamW([{"params": decay, "weight_decay": g["weight_decay"]},
                                  {"params": rest, "weight_decay": 0.0}], lr=g["lr"],
                                 betas=(g["beta1"], g["beta2"]))

    def step(model, opt, it, max_iters):
        for group in opt.param_groups:
            group["lr"] = gpt_lr(it, max_iters)
        x, y = batch()
        loss = F.cross_entropy(model(x).view(-1, len(corpus.vocab)), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), g["grad_clip"])
        opt.step()

    started = time.perf_counter()
    deadline = started + seconds
    # the iterations that fit: timed on a copy, as charnn's --time-limit does
    model = gpt_model(len(corpus.vocab))
    probe = copy.deepcopy(model)
    probe_opt = optimiser(probe)
    probe_seconds = min(max(0.03 * seconds, 0.5), 5.0)
    step(probe, probe_opt, 0, 10)                          # warm-up, not timed
    timed_from, its = time.perf_counter(), 0
    while time.perf_counter() - timed_from < probe_seconds:
        step(probe, probe_opt, its, 10)
        its += 1
    rate = its / (time.perf_counter() - timed_from)
    del probe, probe_opt
    max_iters = max(1, int(0.97 * (deadline - time.perf_counter()) * rate))
    rng = np.random.default_rng(seed)                      # the run's batches from the start
    opt = optimiser(model)
    it = 0
    while it < max_iters and time.perf_counter() < deadline:
        step(model, opt, it, max_iters)
        it += 1
    train_seconds = time.perf_counter() - started
    nats, count = gpt_held_out(model, val[:eval_chars + 1] if eval_chars else val)
    settings = (f"{g['n_layer']} layers, {g['n_head']} heads, {g['n_embd']} wide, context "
                f"{g['block_size']}, batch {g['batch_size']}, AdamW lr {g['lr']:g} -> "
                f"{g['min_lr']:g} cosine over {max_iters:,} iterations")
    return {"network": "gpt", "settings": settings, "backend": f"torch {torch.__version__}",
            "updates": it, "planned_updates": max_iters,
            "stopped_by_time_limit": it < max_iters,
            "chars_seen": it * g["batch_size"] * g["block_size"], "held_out_chars": count,
            "nats": nats, "bits": nats / math.log(2), "wall_seconds": train_seconds,
            "note": f"{rate:.1f} iterations/s measured"}


def gpt_held_out(model, val, stride: int = 32) -> tuple[float, int]:
    """Mean loss (nats) over every held-out character after the first: windows of the
    context length, `stride` apart; each window scores the targets no earlier window did,
    so every character is predicted from at least context - stride characters (all it has
    at the start)."""
    import torch
    from torch.nn import functional as F
    T = GPT["block_size"]
    n = len(val) - 1                                       # targets val[1:]
    starts = list(range(0, max(n - T, 0) + 1, stride))
    if starts[-1] + T < n:
        starts.append(n - T)
    total, scored, windows = 0.0, 0, []
    model.eval()
    with torch.no_grad():
        for s in starts:
            windows.append((s, max(scored, s) - s))        # (start, first target to score)
            scored = s + T
        for i in range(0, len(windows), 256):
            chunk = windows[i:i + 256]
            x = torch.stack([val[s:s + T] for s, _ in chunk])
            y = torch.stack([val[s + 1:s + T + 1] for s, _ in chunk])
            losses = F.cross_entropy(model(x).transpose(1, 2), y, reduction="none")
            for row, (_, first) in enumerate(chunk):
                total += float(losses[row, first:].sum())
    model.train()
    return total / n, n


# -- main -----------------------------------------------------------------------------------

def run_alone(network: str, seconds: float, seed: int, eval_chars: int) -> dict:
    """One training run in a child process of its own, so that PyTorch's thread pool and
    numba's never meet (two OpenMP runtimes in one process spin against each other)."""
    child = subprocess.run([sys.executable, __file__, "--child", network, str(seconds),
                            "--seed", str(seed), "--eval-chars", str(eval_chars)],
                           capture_output=True, text=True)
    if child.returncode:
        raise SystemExit(f"the {network} run failed:\n{child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def child(network: str, seconds: float, seed: int, eval_chars: int) -> int:
    corpus = load_corpus(None)
    if network == "gpt":
        result = train_gpt(corpus, seconds, seed, eval_chars)
    else:
        result = train_charnn(corpus, NETWORKS[network], seconds, seed, eval_chars or 10**9)
    print(json.dumps(result))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[3, 10],
                        help="budgets per run (default 3 10)")
    parser.add_argument("--networks", nargs="+", default=[*NETWORKS, "gpt"],
                        choices=[*NETWORKS, "gpt"], help="default: all")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 15 s each, 20,000 held-out characters scored")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=2, metavar=("NETWORK", "SECONDS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--eval-chars", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child[0], float(args.child[1]), args.seed, args.eval_chars)
    minutes = [0.25] if args.quick else args.minutes
    eval_chars = 20_000 if args.quick else 0

    corpus = load_corpus(None)
    held = build_dataset(corpus, TrainConfig(val_frac=VAL_FRAC)).val_chars
    print(f"machine: {machine()}; python {platform.python_version()}")
    print(f"text: the bundled {corpus.name}, {corpus.chars:,} characters, K="
          f"{len(corpus.vocab)}; the last {VAL_FRAC:.0%} ({held:,} characters) held out"
          + (f", the first {eval_chars:,} of them scored" if eval_chars else ", all scored"))
    results = []
    for budget in minutes:
        for network in args.networks:
            print(f"  {network}, {budget:g} min ...", flush=True)
            r = run_alone(network, 60 * budget, args.seed, eval_chars)
            r["minutes"] = budget
            print(f"    {r['nats']:.4f} nats/char, {r['chars_seen']:,} characters seen in "
                  f"{r['wall_seconds']:.0f} s ({r['backend']}; {r['note']})", flush=True)
            results.append(r)

    print()
    print(f"{'budget':>6}  {'network':<7} {'chars seen':>12} {'held-out nats':>13} "
          f"{'bits/char':>9} {'wall s':>7}  settings")
    for r in results:
        print(f"{r['minutes']:>4g} m  {r['network']:<7} {r['chars_seen']:>12,} "
              f"{r['nats']:>13.4f} {r['bits']:>9.4f} {r['wall_seconds']:>7.0f}  {r['settings']}")
    for budget in minutes:
        rows = [r for r in results if r["minutes"] == budget]
        gpt = [r for r in rows if r["network"] == "gpt"]
        ours = [r for r in rows if r["network"] != "gpt"]
        if gpt and ours:
            best = min(ours, key=lambda r: r["nats"])
            print(f"{budget:g} min: charnn's best ({best['network']}) "
                  f"{gpt[0]['nats'] - best['nats']:+.4f} nats/char below the GPT")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "machine": machine(), "python": platform.python_version(), "text": corpus.name,
        "chars": corpus.chars, "held_out_chars": held, "val_frac": VAL_FRAC,
        "command": "python benchmarks/bench_learning.py " + " ".join(sys.argv[1:] if argv is None
                                                                   else argv),
        "results": results}, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
