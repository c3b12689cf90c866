"""`charnn report`: the assignment's report, reproduced as a page to look at.

    charnn report                          # bundled corpus, the assignment's settings, 2 epochs
    charnn report book.txt --updates 100000 --out report/
    charnn report --from runs/<run>        # from a finished run, without training again

The report folder gets report.html (self-contained: the figures are embedded as base64 data
URIs, nothing is fetched), report.md and the PNG figures beside it. A report that trains puts
its run in <out>/run/. The page holds, as the student's report does:

  1. the gradient check on a small network (m = 5): max absolute and relative differences
     for b, c, U, W, V, with pass or fail;
  2. the smooth loss against updates, epoch boundaries marked, bits per character beside it;
  3. the samples drawn while learning, each headed `iter N , epoch E , smooth loss L`;
  4. 1,000 characters from the best checkpoint (best.npz), seeded;
  5. the facts of the run: corpus, every setting, wall time, speed, the best smooth loss,
     and the loss on a held-out tail of the text in nats and bits per character.
"""

from __future__ import annotations

import base64
import datetime
import html
import math
import re
import struct
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import __version__
from .checkpoint import BEST, LATEST, Checkpoint, load_checkpoint
from .config import BACKENDS, TrainConfig
from .corpus import END_OF_RECORD, Corpus, load_corpus
from .data import build_dataset, epoch_schedule
from .errors import CharnnError
from .evaluation import WARMUP, carries_state, score_held_out, warmup_length
from .gradcheck import GradCheck
from .options import (add_train_arguments, config_from_args, limited, load_training_corpus,
                      seed_number, text_source)
from .progress import ProgressView
from .run_folder import RunFolder, parse_sample_blocks, write_atomically
from .train import describe_network
from .sampling import carried_state

DEFAULT_OUT = Path("report")
DEFAULT_EPOCHS = 2.0           # Figure 2 spans two epochs
DEFAULT_VAL_FRAC = 0.05        # the tail held out, so that the held-out loss means something
BEST_SAMPLE_LENGTH = 1000      # Figure 4
GRADCHECK_HIDDEN = 5           # Figure 1's small network
GRADCHECK_THRESHOLD = 1e-6
UNSEEN_TAIL_FRAC = 0.05        # the tail evaluated when a run held nothing out
RUN_FILES = ("config.json", "log.csv", "samples.txt", LATEST, BEST, "loss.png")

# The numbers of the student's report, shown beside ours.
REFERENCE = {
    "gradcheck_max_abs": 6e-10,        # its largest, for c
    "initial_smooth_loss": 109.5,      # iter 0, K = 80, tau = 25
    "smooth_loss_20_epochs": 37.2,
}


# -- what a report holds --------------------------------------------------------------------

@dataclass
class SampleBlock:
    iteration: int
    epoch: int
    smooth_loss: float
    text: str

    @property
    def header(self) -> str:
        return f"iter {self.iteration} , epoch {self.epoch} , smooth loss {self.smooth_loss:.2f}"


@dataclass
class HeldOut:
    chars: int                   # characters predicted
    where: str                   # what part of the text it is
    seen_in_training: bool
    final_nats: float            # per character, final model (latest.npz)
    best_nats: float             # per character, best model (best.npz)


@dataclass
class LookInside:
    """Section 6: the hidden units the finder (insight.py) ranks best on a stretch of text,
    and that text coloured by the best of them."""
    source: str                  # where the text comes from
    units: list                  # insight.UnitMatch, best first
    coloured_html: str           # the text as spans coloured by units[0]


@dataclass
class ReportData:
    run_dir: Path
    corpus: dict
    vocab: str
    config: TrainConfig
    updates_per_epoch: int
    iteration: int               # updates done
    epoch: int
    elapsed: float               # training seconds, over all sessions
    log: list[dict]
    samples: list[SampleBlock]
    gradcheck: GradCheck
    held_out: HeldOut
    best_iteration: int
    best_epoch: int
    best_kind: str               # "val_loss" or "smooth_loss"
    best_value: float
    best_text: str
    best_seed: int
    backend: str
    trained_here: bool
    command: str
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    inside: LookInside | None = None

    @property
    def train_rows(self) -> list[dict]:
        return [r for r in self.log if r["loss"]]


# -- the command ----------------------------------------------------------------------------

def add_report_parser(sub) -> None:
    """Add `charnn report` to the argparse subparsers `sub`."""
    p = sub.add_parser(
        "report", help="reproduce the assignment's report as a web page (report.html)",
        description="Train with the assignment's settings (m=100, seq 25, eta 0.1, AdaGrad) for "
                    "two epochs with the text's last 5% held out, or take a finished run "
                    "(--from), and write report.html and report.md with the figures: the "
                    "gradient check, the loss over the epochs, the samples while learning, "
                    "the best model's text and the facts of the run.")
    add_train_arguments(p, with_run=False)
    train_dests = [a.dest for a in p._actions
                   if a.dest not in ("help", "text", "corpus", "encoding")]
    for group in p._action_groups:
        if group.title and group.title.startswith("length"):
            group.title = "length (one of them; default 2 epochs)"
    p.set_defaults(val_frac=DEFAULT_VAL_FRAC)
    for action in p._actions:
        if action.dest == "val_frac":
            action.help += f" (default {DEFAULT_VAL_FRAC:g} here: the report's held-out loss)"
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
    from .train import Trainer
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


def report_from_run(run: Path, out: Path, text: str | None = None, encoding: str = "utf-8",
                    backend: str | None = None, command: str = "") -> ReportData:
    run = Path(run)
    if not run.is_dir():
        raise CharnnError(f"{run}: no such run folder; give a folder written by charnn train "
                          "(it holds log.csv and latest.npz)")
    missing = [n for n in ("log.csv", LATEST) if not (run / n).exists()]
    if missing:
        raise CharnnError(f"{run} is not a finished run (it lacks {', '.join(missing)}); give a "
                          "folder written by charnn train")
    meta = load_checkpoint(run / LATEST).meta
    config = TrainConfig.from_dict(meta["config"])
    facts = meta["corpus"]
    source = text or facts.get("source")
    if source is None or (source != "shakespeare" and not Path(source).exists()):
        raise CharnnError(f"the text this run trained on ({facts['name']}) is not at {source}; "
                          f"give it: charnn report TEXT --from {run}")
    corpus = load_corpus(source, encoding=encoding if text else facts.get("encoding", "utf-8"),
                         records=config.records, record_separator=config.record_separator)
    if corpus.sha256 != facts["sha256"]:
        raise CharnnError(f"{corpus.name} is not the text this run trained on (its hash "
                          "differs); give the original text")
    backend = backend or config.backend
    announce = lambda message: print(message, flush=True)  # noqa: E731
    gradcheck = run_gradcheck(corpus, backend, announce, config)
    return collect(run, corpus, backend, gradcheck, trained_here=False, command=command)


# -- the pieces -----------------------------------------------------------------------------

def run_gradcheck(corpus: Corpus, backend: str, announce=None,
                  config: TrainConfig | None = None) -> GradCheck:
    """Figure 1: the check of `charnn gradcheck`, on the first characters of the corpus, for
    the run's network (every layer of a stacked one) at m = GRADCHECK_HIDDEN, with the
    network's default initial scale and step, on the backend the registry gives for
    `backend`."""
    from .gradcheck import run_gradient_check
    seq_length = 25
    data = corpus.data[:seq_length + 1].astype(np.int32)   # records: framed, as trained on
    if len(data) < 2:
        raise CharnnError(f"{corpus.name} has fewer than 2 characters; give a longer text")
    run = (config or TrainConfig()).network(len(corpus.vocab))
    network = replace(run, hidden=GRADCHECK_HIDDEN, dropout=0.0)
    result = run_gradient_check(network, data, seq_length, threshold=GRADCHECK_THRESHOLD,
                                backend=backend or "auto", announce=announce)
    print(f"gradient check (m={result.hidden}, K={result.K}): "
          f"{'all pass' if result.passed else 'FAILED'} in {result.seconds:.1f} s, largest "
          f"absolute difference {max(r.max_abs for r in result.rows):.2e}", flush=True)
    return result


def estimate_message(trainer) -> str:
    """How long the training will take: the updates left at a rate measured on a short first
    stretch (on copies, so the run itself is not touched), plus the held-out evaluations."""
    seconds, rate, evals, eval_s = estimate_seconds(trainer)
    total = trainer.total_updates - trainer.state.iteration
    message = (f"training {total:,} updates ({total / trainer.updates_per_epoch:.2f} epochs) "
               f"on the {trainer.config.backend} backend at ~{rate:,.0f} updates/s (measured)")
    if evals:
        message += f", plus {evals} held-out evaluations of ~{eval_s:.2g} s each"
    return message + f": about {format_duration(seconds)}"


def estimate_seconds(trainer, budget: float = 0.3) -> tuple[float, float, int, float]:
    """(total seconds, updates/s, evaluations, seconds per evaluation)."""
    backend, c, s = trainer.backend, trainer.config, trainer.state
    d, sched = trainer.dataset, trainer.schedule
    params = s.params.copy()
    opt_state = {k: a.copy() for k, a in s.opt_state.items()}
    h = s.h.copy()
    position, step = s.position, s.opt_step

    def stretch(n: int) -> int:
        nonlocal position, step
        if position >= len(sched):
            position = 0
        n = min(n, len(sched) - position)
        backend.train_updates(params, c.optimizer, opt_state, step, c.eta, c.clip, h, d.data,
                              sched.starts, sched.lengths, sched.resets, position, position + n)
        position += n
        step += n
        return n

    stretch(3)                                     # warm-up: first calls load or compile
    n, done, spent = 16, 0, 0.0
    while spent < budget and done < 1_000_000:
        started = time.perf_counter()
        done += stretch(n)
        spent += time.perf_counter() - started
        n *= 2
    rate = done / max(spent, 1e-9)
    remaining = trainer.total_updates - s.iteration
    seconds = remaining / rate
    evals, eval_s = 0, 0.0
    if d.val_chars:
        probe = d.val[:1].copy()
        probe[0, 1] = min(probe[0, 1], probe[0, 0] + 20_000)
        started = time.perf_counter()
        _, count = backend.total_loss(params, d.data, probe)
        per_char = (time.perf_counter() - started) / max(count, 1)
        eval_s = per_char * min(d.val_chars, c.eval_chars)
        evals = remaining // c.eval_every + 1 + (1 if remaining % c.eval_every else 0)
        seconds += evals * eval_s
    return seconds, rate, evals, eval_s


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s" if minutes < 10 else f"{round(seconds / 60)} min"
    hours, rest = divmod(round(seconds / 60), 60)
    return f"{hours} h {rest} min"


def parse_samples(text: str) -> list[SampleBlock]:
    """The blocks of a samples.txt (see run_folder.parse_sample_blocks)."""
    return [SampleBlock(**block) for block in parse_sample_blocks(text)]


def held_out_loss(corpus: Corpus, config: TrainConfig, backend, final: Checkpoint,
                  best: Checkpoint) -> HeldOut:
    """Item 5's held-out loss, scored as validation and `charnn eval` score it
    (evaluation.py), for the final and the best model: on the part the run held out, or,
    when it held nothing out, on the text's tail, which the run did train on (and the report
    says so)."""
    dataset = build_dataset(corpus, config)
    if dataset.val_chars:
        segments, seen = dataset.val, False
        fraction = f"{config.val_frac:g} of the text"
        if config.records:
            where = (f"{len(segments):,} records held out from training "
                     f"({config.val_frac:g} of the records)")
        elif config.order == "shuffled":
            where = f"one piece of the text held out from training ({fraction})"
        else:
            where = f"the text's tail, held out from training ({fraction})"
    else:
        data = dataset.data
        n = max(2, int(round(UNSEEN_TAIL_FRAC * len(data))))
        segments = np.array([[len(data) - n, len(data)]], np.int64)
        seen = True
        where = (f"the text's last {UNSEEN_TAIL_FRAC:.0%}, which this run did NOT hold out: it "
                 "was seen in training, so this is not a held-out measure")
    scores = [score_held_out(ckpt.params, dataset.data, segments, backend,
                             records=bool(config.records) and not seen,
                             h_start=carried_state(ckpt), max_chars=config.eval_chars)
              for ckpt in (final, best)]
    return HeldOut(scores[0].count, where, seen, scores[0].nats, scores[1].nats)


INSIDE_CHARS = 3_000           # Section 6's stretch of text


def look_inside(corpus: Corpus, config: TrainConfig, best: Checkpoint, backend) -> LookInside:
    """Section 6: run INSIDE_CHARS characters of the held-out part (or of the text's tail)
    through the best model from the state sampling starts from, and rank its units by how
    well they track simple features of the text."""
    from .corpus import Vocabulary
    from .insight import coloured_by_unit, find_units
    from .trained import TrainedModel
    dataset = build_dataset(corpus, config)
    start, end = (dataset.val[0] if dataset.val_chars else (max(0, len(dataset.data) -
                                                                 INSIDE_CHARS), len(dataset.data)))
    vocab = Vocabulary(best.meta["vocab"])
    text = vocab.decode(dataset.data[start:min(end, start + INSIDE_CHARS)])
    text = text.replace(END_OF_RECORD, "\n")[:INSIDE_CHARS] if config.records else text
    model = TrainedModel(best.params, vocab, dict(best.meta["config"]), carried_state(best),
                         backend, best)
    analysis = model.analyse(text)
    units = find_units(analysis.layers, text)
    where = "the held-out part" if dataset.val_chars else "the text's tail (seen in training)"
    coloured = coloured_by_unit(analysis, units[0].layer, units[0].unit) if units else ""
    return LookInside(f"the first {len(text):,} characters of {where}", units, coloured)


def collect(run_dir: Path, corpus: Corpus, backend_name: str, gradcheck: GradCheck,
            trained_here: bool, command: str) -> ReportData:
    """Everything the report shows, read from the run folder."""
    from .backends import get_backend
    from .plot import read_log
    from .sampling import generate
    run_dir = Path(run_dir)
    latest = load_checkpoint(run_dir / LATEST)
    config = TrainConfig.from_dict(latest.meta["config"])
    notes = []
    if (run_dir / BEST).exists():
        best = load_checkpoint(run_dir / BEST)
    else:
        best = latest
        notes.append(f"{run_dir.name} has no {BEST}; the final model stands in for the best one.")
    backend = get_backend(backend_name, lambda m: print(m, flush=True), config.dtype,
                          config.model, jobs=("evaluate", "sample"))
    samples = [SampleBlock(**block) for block in RunFolder(run_dir).read_samples()]
    held = held_out_loss(corpus, config, backend, latest, best)
    inside = look_inside(corpus, config, best, backend)
    best_kind = "val_loss" if config.val_frac > 0 else "smooth_loss"
    if held.seen_in_training:
        notes.append("This run held no text out from training, so there is no true held-out "
                     "loss: the loss in section 5 is measured on the text's tail, which the "
                     "model WAS trained on.")
    rng = np.random.default_rng(config.seed)
    best_text = generate(best.params, corpus.vocab, BEST_SAMPLE_LENGTH, rng, backend,
                         h=carried_state(best))
    if corpus.records is not None:                # a record model stops at a record's end
        pieces = [best_text]
        while sum(map(len, pieces)) < BEST_SAMPLE_LENGTH and len(pieces) < 1000:
            pieces.append(generate(best.params, corpus.vocab,
                                   BEST_SAMPLE_LENGTH - sum(map(len, pieces)), rng, backend,
                                   h=carried_state(best)))
        best_text = "\n".join(pieces)
    state, best_state = latest.meta["state"], best.meta["state"]
    best_value = best_state.get("best_value", math.nan)
    if not math.isfinite(best_value):
        best_value = best_state.get("smooth_loss", math.nan)
    return ReportData(
        run_dir=run_dir, corpus=latest.meta["corpus"], vocab=corpus.vocab.chars, config=config,
        updates_per_epoch=len(epoch_schedule(build_dataset(corpus, config), config, 1)),
        iteration=int(state["iteration"]), epoch=int(state["epoch"]),
        elapsed=float(state["elapsed"]), log=read_log(run_dir), samples=samples,
        gradcheck=gradcheck, held_out=held, best_iteration=int(best_state["iteration"]),
        best_epoch=int(best_state["epoch"]), best_kind=best_kind, best_value=float(best_value),
        best_text=best_text, best_seed=config.seed, backend=backend_name,
        trained_here=trained_here, command=command, notes=notes, inside=inside)


def _network_name(d) -> str:
    return d.config.network().abbreviation


def _inside_text(inside: LookInside) -> str:
    return (f"Which hidden units track simple features of the text: {inside.source} run "
            "through the best model, each unit's activation correlated (Pearson r) with inside "
            "quotes, inside parentheses, position in the line, start of a word and after a "
            "newline; the best units of each feature, best first. charnn serve and charnn "
            "inspect show the same interactively.")


def _inside_rows(inside: LookInside) -> list[list[str]]:
    from .insight import FEATURES
    return [[FEATURES[u.feature], str(u.layer), str(u.unit), f"{u.r:+.3f}"]
            for u in inside.units]


# -- writing --------------------------------------------------------------------------------

def write_report(data: ReportData, out: Path) -> Path:
    """Write loss.png, report.md and report.html into `out`; returns report.html's path."""
    from .plot import plot_run
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figure = plot_run(data.run_dir, out / "loss.png", data.config.seq_length,
                      data.updates_per_epoch)
    png = figure.read_bytes()
    # each file whole or not at all: a full disk leaves the last report, not an empty file
    write_atomically(out / "report.md", render_markdown(data, figure.name))
    page = out / "report.html"
    write_atomically(page, render_html(data, png))
    return page


def _visible(text: str) -> str:
    """Sample text as shown: the end-of-record mark made visible."""
    return text.replace(END_OF_RECORD, "\u241e")


def _facts(d: ReportData) -> dict[str, list[tuple[str, str]]]:
    """The tables of section 5, as (label, value) rows, shared by the page and the Markdown."""
    c, corpus = d.config, d.corpus
    tau, K = c.seq_length, len(d.vocab)
    rows = d.train_rows
    first = float(rows[0]["smooth_loss"]) if rows else math.nan
    last = float(rows[-1]["smooth_loss"]) if rows else math.nan
    best_row = min(rows, key=lambda r: float(r["smooth_loss"])) if rows else None
    epochs_done = d.iteration / d.updates_per_epoch if d.updates_per_epoch else math.nan
    corpus_rows = [
        ("name", str(corpus.get("name"))),
        ("source", str(corpus.get("source"))),
        ("characters", f"{corpus.get('chars', 0):,}"),
        ("K (distinct characters)", str(K)),
        ("SHA-256", str(corpus.get("sha256"))),
        ("encoding", str(corpus.get("encoding"))),
    ]
    if corpus.get("records") is not None:
        corpus_rows.append(("records", f"{corpus['records']:,}"))
    settings_rows = [("network", describe_network(c))] + [
        (k, "(none)" if v is None else repr(v) if isinstance(v, str) else str(v))
        for k, v in c.to_dict().items()]
    speed = d.iteration / d.elapsed if d.elapsed > 0 else math.nan
    run_rows = [
        ("run folder", str(d.run_dir)),
        ("updates", f"{d.iteration:,}" + (" (stopped early)" if d.interrupted else "")),
        ("updates per epoch", f"{d.updates_per_epoch:,}"),
        ("epochs", f"{epochs_done:.2f} (ended in epoch {d.epoch})"),
        ("wall time of training", f"{d.elapsed:.1f} s" + (f" ({format_duration(d.elapsed)})"
                                                            if d.elapsed >= 60 else "")),
        ("speed", f"{speed:,.0f} updates/s = {speed * tau * c.batch_size:,.0f} characters/s "
                  "over the whole run (evaluation and sampling included); "
                  f"{_training_speed(rows):,.0f} updates/s while training (median over the "
                  "log's intervals)"),
        ("backend", f"{c.backend} (training); {d.backend} (this report's evaluation and text)"),
        ("smooth loss at update 0", f"{first:.2f} (tau ln K = {tau * math.log(K):.2f}; the "
                                    f"assignment's report: {REFERENCE['initial_smooth_loss']} "
                                    "with K = 80)"),
        ("final smooth loss", f"{last:.2f} = {last / (tau * math.log(2)):.3f} bits/char"),
    ]
    if best_row is not None:
        run_rows.append(("best smooth loss",
                         f"{float(best_row['smooth_loss']):.2f} at update "
                         f"{int(best_row['iteration']):,} (epoch {best_row['epoch']}) = "
                         f"{float(best_row['smooth_loss']) / (tau * math.log(2)):.3f} bits/char"))
    if d.best_kind == "val_loss":
        chosen = f"lowest held-out loss, {d.best_value:.4f} nats/char"
    else:
        chosen = f"lowest smooth loss, {d.best_value:.2f}"
    run_rows.append(("best checkpoint (best.npz)",
                     f"update {d.best_iteration:,} (epoch {d.best_epoch}): {chosen}"))
    h = d.held_out
    ln2 = math.log(2)
    held_rows = [
        ("evaluated on", h.where),
        ("characters predicted", f"{h.chars:,}" + (
            "" if d.config.records and not h.seen_in_training else
            f", after a warm-up of {warmup_length(h.chars + WARMUP)} characters from "
            + ("the state training carried" if carries_state(d.config.to_dict())
               else "h = 0") + " (as charnn eval scores a text)")),
        ("held out from training", "no: it WAS seen in training" if h.seen_in_training else "yes"),
        ("final model (latest.npz)", f"{h.final_nats:.4f} nats/char = "
                                     f"{h.final_nats / ln2:.4f} bits/char "
                                     f"({h.final_nats * tau:.2f} per {tau} characters)"),
        ("best model (best.npz)", f"{h.best_nats:.4f} nats/char = "
                                  f"{h.best_nats / ln2:.4f} bits/char "
                                  f"({h.best_nats * tau:.2f} per {tau} characters)"),
    ]
    held_title = ("Loss on the text's tail (seen in training)" if h.seen_in_training
                  else "Loss on held-out text")
    return {"Corpus": corpus_rows, "Settings": settings_rows, "Run": run_rows,
            held_title: held_rows}





def _training_speed(rows: list[dict]) -> float:
    """Updates per second between consecutive log rows, the median over the run, so that
    the intervals holding an evaluation or a sample do not count."""
    rates = []
    for a, b in zip(rows, rows[1:]):
        updates = int(b["iteration"]) - int(a["iteration"])
        seconds = float(b["elapsed"]) - float(a["elapsed"])
        if updates > 0 and seconds > 0:
            rates.append(updates / seconds)
    return float(np.median(rates)) if rates else math.nan


def _gradcheck_rows(gc: GradCheck) -> list[list[str]]:
    return [[r.name, "x".join(map(str, r.shape)), f"{r.max_abs:.3e}", f"{r.max_rel:.3e}",
             "pass" if r.passed else "FAIL"] for r in gc.rows]


_GC_HEADERS = ["parameter", "shape", "max absolute difference", "max relative difference",
               "result"]


def _texts(d: ReportData) -> dict[str, str]:
    """The captions and paragraphs, as plain text, shared by the page and the Markdown."""
    gc, c = d.gradcheck, d.config
    epochs_done = d.iteration / d.updates_per_epoch if d.updates_per_epoch else 0
    t = {
        "intro": (f"A vanilla character-level RNN (m = {c.hidden}, seq_length = {c.seq_length}, "
                  f"eta = {c.eta:g}, {c.optimizer}) trained on {d.corpus.get('name')} "
                  f"({d.corpus.get('chars', 0):,} characters, K = {len(d.vocab)}), reported as "
                  "in the DD2424 Assignment 4 report: the gradient check, the loss over the "
                  "epochs, the text while learning and the best model's text."),
        "gc": (f"Analytic gradients of {gc.gradients_of} against centred differences "
               f"(L(theta + h) - L(theta - h)) / 2h, h = {gc.step:g}, for every element of "
               f"{', '.join(r.name for r in gc.rows)}, on a small network: m = {gc.hidden}, "
               f"K = {gc.K}, the first {gc.seq_length} characters of the text, a random "
               "starting state. An element passes "
               f"when its relative difference |a - n| / (|a| + |n|) is at most "
               f"{gc.threshold:g}. " + ("All parameters pass." if gc.passed else
                                        "Some parameters FAIL: the gradients are wrong.")
               + f" The assignment's report found absolute differences up to about "
               f"{REFERENCE['gradcheck_max_abs']:.0e}."),
        "gc_caption": "Figure 1: maximal differences between analytic and numerical gradients.",
        "loss": (f"Smooth loss (0.999 smooth + 0.001 loss; the loss is summed over the "
                 f"{c.seq_length} characters of a sequence) against updates over "
                 f"{epochs_done:.2f} epochs of {d.updates_per_epoch:,} updates; dashed lines "
                 "mark where each epoch starts, and the right axis gives bits per character."
                 + (" The held-out loss, multiplied by the sequence length so that it is in "
                    "the same units, is drawn as well." if c.val_frac > 0 else "")
                 + (" This run is shorter than the two epochs the assignment asks for."
                    if epochs_done < 2 else "")),
        "loss_caption": f"Figure 2: smooth loss over {epochs_done:.2f} epochs.",
        "samples": (f"{c.sample_length} characters drawn from the model before the first "
                    f"update and every {c.sample_every:,} updates (and after the last), each "
                    "headed with its update, epoch and smooth loss."),
        "samples_caption": "Figure 3: text generated while learning.",
        "best": (f"{BEST_SAMPLE_LENGTH:,} characters from the best checkpoint (best.npz, "
                 f"update {d.best_iteration:,}, chosen by its "
                 + ("held-out loss" if d.best_kind == "val_loss" else "smooth loss")
                 + f"), drawn with seed {d.best_seed} from "
                 + ("the hidden state training carried" if c.order == "sequential"
                    and not c.records else "a zero hidden state")
                 + ". The assignment's "
                 f"report reached a smooth loss of {REFERENCE['smooth_loss_20_epochs']} after "
                 "20 epochs."),
        "best_caption": "Figure 4: text generated by the best model.",
        "made": (f"Made by charnn {__version__} on "
                 f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}"
                 + (f" with: {d.command}" if d.command else "") + ". "
                 + ("The run was trained for this report." if d.trained_here else
                    "The run was trained before; this report did not train it again.")),
    }
    return t


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(map(_md_cell, headers)) + " |",
             "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(d: ReportData, figure_name: str) -> str:
    # Markdown passes HTML through: what names files (the corpus facts, the run folder, the
    # command line, notes naming them) is escaped, as report.html escapes it
    def text(value: str) -> str:
        return html.escape(value, quote=False)
    d = replace(d, corpus={k: text(v) if isinstance(v, str) else v for k, v in d.corpus.items()},
                run_dir=text(str(d.run_dir)), command=text(d.command),
                notes=[text(n) for n in d.notes])
    t, facts = _texts(d), _facts(d)
    samples = "\n".join(f"{s.header}\n{_visible(s.text)}" for s in d.samples)
    best = _visible(d.best_text)
    parts = [
        f"# Character-level {_network_name(d)} on {d.corpus.get('name')}", "", t["intro"], "",
        *(["> " + n for n in d.notes] + [""] if d.notes else []),
        "## 1 Gradient check", "", t["gc"], "",
        _md_table(_GC_HEADERS, _gradcheck_rows(d.gradcheck)), "", f"*{t['gc_caption']}*", "",
        "## 2 Training", "", t["loss"], "",
        f"![Smooth loss against updates]({figure_name})", "", f"*{t['loss_caption']}*", "",
        "## 3 Samples while learning", "", t["samples"], "",
        _fence(samples), samples, _fence(samples), "", f"*{t['samples_caption']}*", "",
        "## 4 The best model's text", "", t["best"], "",
        _fence(best), best, _fence(best), "", f"*{t['best_caption']}*", "",
        "## 5 Facts of the run", "",
    ]
    for title, rows in facts.items():
        parts += [f"### {title}", "", _md_table(["what", "value"], [list(r) for r in rows]), ""]
    if d.inside is not None:
        parts += ["## 6 Look inside", "", _inside_text(d.inside), "",
                  _md_table(["feature", "layer", "unit", "r"], _inside_rows(d.inside)), ""]
    parts += ["---", "", t["made"], ""]
    return "\n".join(parts)


_CSS = """
body { font-family: Georgia, 'Times New Roman', serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #1d1d1f; background: #fff; line-height: 1.45; }
h1 { font-size: 1.8rem; margin-bottom: .3rem; }
h2 { font-size: 1.35rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
h3 { font-size: 1.1rem; margin-top: 1.4rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .95rem; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-family: 'DejaVu Sans Mono', Menlo, Consolas, monospace; }
td.pass { color: #176b2c; font-weight: bold; }
td.fail { color: #b00020; font-weight: bold; }
table.facts td:first-child { white-space: nowrap; color: #444; }
table.facts td { overflow-wrap: anywhere; }
pre { font-family: 'DejaVu Sans Mono', Menlo, Consolas, monospace; font-size: .85rem;
      background: #f7f7f5; border: 1px solid #e2e2dd; padding: .8rem; white-space: pre-wrap;
      overflow-wrap: anywhere; }
pre .head { color: #0b4f8a; font-weight: bold; display: inline-block; margin-top: .7em; }
pre .head:first-child { margin-top: 0; }
figure { margin: 1rem 0; }
figcaption { font-style: italic; color: #444; margin-top: .3rem; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.note { background: #fff6d6; border-left: 4px solid #e0b400; padding: .4rem .8rem; }
.verdict { font-weight: bold; }
footer { margin-top: 2.5rem; color: #666; font-size: .85rem; border-top: 1px solid #ddd;
         padding-top: .6rem; }
"""


def _h(text) -> str:
    return html.escape(str(text), quote=True)


def _html_table(headers: list[str] | None, rows: list[list[str]], cls: str = "",
                cell_classes: list[str] | None = None) -> str:
    out = [f'<table class="{_h(cls)}">' if cls else "<table>"]
    if headers:
        out.append("<tr>" + "".join(f"<th>{_h(x)}</th>" for x in headers) + "</tr>")
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            klass = (cell_classes[i] if cell_classes else "") or ""
            if klass == "verdict":
                klass = "pass" if value == "pass" else "fail"
            cells.append(f'<td class="{klass}">{_h(value)}</td>' if klass else f"<td>{_h(value)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def render_html(d: ReportData, png: bytes) -> str:
    t, facts = _texts(d), _facts(d)
    title = f"Character-level {_network_name(d)} on {d.corpus.get('name')}"
    image = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    width, height = struct.unpack(">II", png[16:24])          # the PNG's IHDR
    samples = "\n".join(f'<span class="head">{_h(s.header)}</span>\n{_h(_visible(s.text))}'
                        for s in d.samples)
    gc_verdict = ("all gradients pass" if d.gradcheck.passed else "the gradient check FAILED")
    body = [
        f"<h1>{_h(title)}</h1>",
        f"<p>{_h(t['intro'])}</p>",
        *(f'<p class="note">{_h(n)}</p>' for n in d.notes),
        '<h2 id="gradcheck">1 Gradient check</h2>',
        f"<p>{_h(t['gc'])}</p>",
        "<figure>",
        _html_table(_GC_HEADERS, _gradcheck_rows(d.gradcheck), "gradcheck",
                    ["", "num", "num", "num", "verdict"]),
        f'<figcaption>{_h(t["gc_caption"])} <span class="verdict">{_h(gc_verdict)}.</span>'
        "</figcaption>",
        "</figure>",
        '<h2 id="training">2 Training</h2>',
        f"<p>{_h(t['loss'])}</p>",
        "<figure>",
        f'<img src="{image}" alt="{_h("Smooth loss against updates, epochs marked")}" '
        f'width="{width}" height="{height}">',
        f"<figcaption>{_h(t['loss_caption'])}</figcaption>",
        "</figure>",
        '<h2 id="samples">3 Samples while learning</h2>',
        f"<p>{_h(t['samples'])}</p>",
        "<figure>",
        f'<pre class="samples">{samples}</pre>',
        f"<figcaption>{_h(t['samples_caption'])}</figcaption>",
        "</figure>",
        '<h2 id="best">4 The best model\'s text</h2>',
        f"<p>{_h(t['best'])}</p>",
        "<figure>",
        f'<pre class="best">{_h(_visible(d.best_text))}</pre>',
        f"<figcaption>{_h(t['best_caption'])}</figcaption>",
        "</figure>",
        '<h2 id="facts">5 Facts of the run</h2>',
    ]
    for title_, rows in facts.items():
        body.append(f"<h3>{_h(title_)}</h3>")
        body.append(_html_table(None, [list(r) for r in rows], "facts"))
    if d.inside is not None:
        body += ['<h2 id="inside">6 Look inside</h2>', f"<p>{_h(_inside_text(d.inside))}</p>",
                 _html_table(["feature", "layer", "unit", "r"], _inside_rows(d.inside), "inside")]
        if d.inside.units:
            best = d.inside.units[0]
            caption = (f"Figure 5: the text coloured by unit {best.unit} (layer {best.layer}), "
                       "the best ranked: blue -1, white 0, red +1; hover a character for its "
                       "loss and the model's guesses for the next one.")
            body += ["<figure>", f'<pre class="inside">{d.inside.coloured_html}</pre>',
                     f"<figcaption>{_h(caption)}</figcaption>", "</figure>"]
    body.append(f"<footer>{_h(t['made'])}</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_h(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
