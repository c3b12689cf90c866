"""`charnn report` on the command line: its flags, and the command that trains or reads a
run and writes the report (the package's functions do the work)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ..checkpoint import LATEST
from ..config import BACKENDS
from ..errors import CharnnError
from ..options import (add_train_arguments, config_from_args, limited, load_training_corpus,
                       seed_number, text_source)
from ..progress import ProgressView
from . import collect, estimate_message, report_from_run, run_gradcheck, write_report
from .data import DEFAULT_EPOCHS, DEFAULT_OUT, DEFAULT_VAL_FRAC, RUN_FILES, ReportData

def add_report_parser(sub) -> None:
    """Add `charnn report` to the argparse subparsers `sub`."""
    p = sub.add_parser(
        "report", help="reproduce the assignment's report as a web page (report.html)",
        description="Train with the assignment's settings (m=100, seq 25, eta 0.1, AdaGrad) for "
                    "two epochs with the text's last 5% held out, or take a finished run "
                    "(--from), and write report.html and report.md with the figures: the "
                    "gradient check, the loss over the epochs, the samples while learning, "
                    "the best model's text and the facts of the run.")
    train_dests = add_train_arguments(
        p, with_run=False, length_title="length (one of them; default 2 epochs)",
        notes={"val_frac": f" (default {DEFAULT_VAL_FRAC:g} here: the report's held-out loss)"})
    p.set_defaults(val_frac=DEFAULT_VAL_FRAC)
    g = p.add_argument_group("report")
    g.add_argument("--from", dest="from_run", type=Path, default=None, metavar="RUN",
                   help="make the report from the finished run in folder RUN, without training")
    g.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="the report folder (default report/); training goes into OUT/run/")
    g.add_argument("--force", action="store_true",
                   help="train again even if OUT/run already holds a run (it is replaced)")
    g.add_argument("--sample-every", type=limited("sample_every"), default=10_000,
                   help="a 200-character sample every N updates, and at update 0 (default 10000)")
    g.add_argument("--eval-every", type=limited("eval_every"), default=10_000,
                   help="the held-out loss every N updates (default 10000)")
    g.add_argument("--seed", type=seed_number, default=0,
                   help="random seed of the training and of the best model's text (default 0)")
    g.add_argument("--backend", choices=BACKENDS, default=None,
                   help="the backend (default when training: auto, the fastest that runs "
                        "the network); with --from, the run's own unless given")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    train_dests += ["sample_every", "eval_every", "seed"]
    p.set_defaults(func=cmd_report,
                   _train_defaults={d: p.get_default(d) for d in train_dests})


def cmd_report(args) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CharnnError(f"--out {out} is a file; give a folder for the report")
    command = _command_line(args)
    if args.from_run is not None:
        changed = [d for d, default in args._train_defaults.items()
                   if getattr(args, d) != default]
        if changed:
            names = ", ".join("--" + d.replace("_", "-") for d in changed)
            raise CharnnError(f"--from makes the report from a finished run without training; "
                              f"leave out {names}")
        data = report_from_run(args.from_run, out, text=text_source(args),
                               encoding=args.encoding, backend=args.backend,
                               command=command)
    else:
        data = report_by_training(args, out, command)
    written = write_report(data, out)
    print(f"report written: {written} (open it in a browser), "
          f"{out / 'report.md'}, {out / 'loss.png'}", flush=True)
    if not data.gradcheck.passed:
        print("charnn: the gradient check FAILED; see Figure 1 of the report", file=sys.stderr)
        return 1
    return 130 if data.interrupted else 0


def _command_line(args) -> str:
    """The command that makes this report again: the options that differ from the defaults."""
    parts = ["charnn", "report"]
    if args.text:
        parts.append(str(args.text))
    if args.corpus:
        parts += ["--corpus", args.corpus]
    for dest, default in args._train_defaults.items():
        value = getattr(args, dest)
        if value == default:
            continue
        flag = "--" + dest.replace("_", "-")
        parts += [flag] if value is True else [flag, str(value)]
    if args.backend:
        parts += ["--backend", args.backend]
    if args.from_run is not None:
        parts += ["--from", str(args.from_run)]
    if Path(args.out) != DEFAULT_OUT:
        parts += ["--out", str(args.out)]
    return " ".join(_quote(p) for p in parts)


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w./:=,+-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def report_by_training(args, out: Path, command: str = "") -> ReportData:
    from ..train import Trainer
    if args.backend is None:
        args.backend = "auto"
    if args.epochs is None and args.updates is None:
        args.epochs = DEFAULT_EPOCHS
    config = config_from_args(args)
    corpus = load_training_corpus(args, config)
    run_dir = out / "run"
    if (run_dir / LATEST).exists():
        if not args.force:
            raise CharnnError(f"{run_dir} already holds a run; make the report from it with "
                              f"`charnn report --from {run_dir} --out {out}`, train again with "
                              "--force, or give another --out")
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
    announce = lambda message: print(message, flush=True)  # noqa: E731

    gradcheck = run_gradcheck(corpus, config.backend, announce, config)

    view = ProgressView(show_bar=not args.no_progress)
    trainer = Trainer(corpus, config, run_dir, on_event=view, announce=announce)
    print(estimate_message(trainer), flush=True)
    state = trainer.run()
    interrupted = trainer.stop_requested
    if interrupted:
        print(f"stopped at update {state.iteration}; the report shows the run so far", flush=True)
    data = collect(run_dir, corpus, config.backend, gradcheck, trained_here=True,
                   command=command)
    data.interrupted = interrupted
    return data
