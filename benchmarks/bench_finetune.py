"""Fine-tuning against training from scratch: the shipped model (a 2-layer GRU of 256 units,
trained on Shakespeare) fine-tuned on a new text for 1 minute, against the same network trained
on that text from scratch for 1 minute and for 5 minutes.

    apt-get install -y fortunes        # /usr/share/games/fortunes/songs-poems, ~234 KB
    python benchmarks/bench_finetune.py
    python benchmarks/bench_finetune.py --etas 0.0005 0.001 0.002    # the preset's search
    python benchmarks/bench_finetune.py --quick                       # a smoke run: 10 s each

Every run is `charnn train TEXT --val-frac 0.1 --time-limit T --eval-every 100` (the last 10%
of the text held out; the best checkpoint chosen by held-out loss every 100 updates, the same
rule for every run), fine-tuning with `--init-from shakespeare` (--preset fine-tune), from
scratch with `--preset best-cpu` (the settings the shipped model was trained with). The
held-out figure is what `charnn eval RUN HELD_OUT.txt` prints for the run's best checkpoint on
the held-out tail written out as a file: the same call (charnn.load(RUN).evaluate), 200
characters of warm-up from the carried state, every later character scored. Runs go one after
another; the CPU model is printed. Prints one table and writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import charnn
from charnn.cli import main as charnn_main
from charnn.corpus import read_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402

TEXT = Path("/usr/share/games/fortunes/songs-poems")
RESULTS = Path(__file__).resolve().parent / "results" / "bench_finetune.json"
VAL_FRAC = 0.1
EVAL_EVERY = 100


def held_out_text(path: Path) -> str:
    """The tail --val-frac holds out: the last round(0.1 N) characters (data.build_dataset)."""
    text = read_text(str(path))
    return text[len(text) - round(VAL_FRAC * len(text)):]


def run(text: Path, held: Path, label: str, seconds: float, flags: list[str],
        folder: Path) -> dict:
    out = folder / label.replace(" ", "-")
    argv = ["train", str(text), "--val-frac", str(VAL_FRAC), "--time-limit", f"{seconds:g}s",
            "--eval-every", str(EVAL_EVERY), "--out", str(out), "--no-progress", *flags]
    said = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
        status = charnn_main(argv)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"charnn {' '.join(argv)} failed:\n{said.getvalue()[-2000:]}")
    model = charnn.load(out)                              # best.npz, as charnn eval loads it
    score = model.evaluate(held.read_text(encoding="utf-8"))
    state = model.checkpoint.meta["state"]
    config = json.loads((out / "config.json").read_text())
    return {"run": label, "command": "charnn " + " ".join(argv[:1] + ["TEXT"] + argv[2:]),
            "backend": model.backend_name,                # that scored it (training's: auto)
            "updates": config["total_updates"],
            "best_update": state["iteration"], "wall_seconds": wall,
            "held_out_chars": score.count, "nats": score.nats, "bits": score.bits}


def table(rows: list[dict]) -> str:
    lines = [f"{'run':<28} {'updates':>8} {'best at':>8} {'nats/char':>10} {'bits/char':>10}"]
    for r in rows:
        lines.append(f"{r['run']:<28} {r['updates']:>8,} {r['best_update']:>8,} "
                     f"{r['nats']:>10.4f} {r['bits']:>10.4f}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text", type=Path, default=TEXT)
    p.add_argument("--quick", action="store_true", help="10 s runs (a smoke test)")
    p.add_argument("--etas", type=float, nargs="*", default=None,
                   help="fine-tune only, once per learning rate (the preset's search)")
    p.add_argument("--json", type=Path, default=RESULTS)
    args = p.parse_args()
    if not args.text.exists():
        raise SystemExit(f"{args.text} is missing: apt-get install -y fortunes, or give --text")
    minute = 10.0 if args.quick else 60.0
    with tempfile.TemporaryDirectory() as tmp:
        held = Path(tmp) / "held_out.txt"
        held.write_text(held_out_text(args.text), encoding="utf-8")
        rows = []
        if args.etas:
            plan = [(f"fine-tune 1 min eta {eta:g}", minute,
                     ["--init-from", "shakespeare", "--eta", str(eta)]) for eta in args.etas]
        else:
            plan = [("fine-tune shakespeare 1 min", minute, ["--init-from", "shakespeare"]),
                    ("from scratch 1 min", minute, ["--preset", "best-cpu"]),
                    ("from scratch 5 min", 5 * minute, ["--preset", "best-cpu"])]
        for label, seconds, flags in plan:
            rows.append(run(args.text, held, label, seconds, flags, Path(tmp)))
            print(f"{label}: {rows[-1]['nats']:.4f} nats/char", file=sys.stderr, flush=True)
    print(f"{machine()}; text {args.text.name}, last {VAL_FRAC:.0%} held out "
          f"({rows[0]['held_out_chars']:,} characters scored); held-out loss of each run's "
          "best checkpoint as charnn eval scores it")
    print(table(rows))
    if not args.quick:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": machine(), "python": platform.python_version(),
            "text": str(args.text), "val_frac": VAL_FRAC, "eval_every": EVAL_EVERY,
            "command": "python benchmarks/bench_finetune.py " + " ".join(sys.argv[1:]),
            "results": rows}, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
