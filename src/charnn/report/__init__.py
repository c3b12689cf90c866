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

import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..backends.calls import Optimiser, Windows
from ..checkpoint import BEST, LATEST, Checkpoint, load_checkpoint
from ..config import TrainConfig
from ..corpus import END_OF_RECORD, Corpus, load_corpus
from ..data import build_dataset, epoch_schedule
from ..errors import CharnnError
from ..evaluation import score_held_out
from ..gradcheck import GradCheck
from ..run_folder import RunFolder, write_atomically
from ..sampling import carried_state
from .data import (BEST_SAMPLE_LENGTH, DEFAULT_EPOCHS, DEFAULT_OUT, DEFAULT_VAL_FRAC,
                   GRADCHECK_HIDDEN, GRADCHECK_THRESHOLD, INSIDE_CHARS, REFERENCE, RUN_FILES,
                   UNSEEN_TAIL_FRAC, HeldOut, LookInside, ReportData, SampleBlock,
                   format_duration, parse_samples)
from .render import render_html, render_markdown

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
    from ..gradcheck import assignment_rows, run_gradient_check
    seq_length = 25
    data = corpus.data[:seq_length + 1].astype(np.int32)   # records: framed, as trained on
    if len(data) < 2:
        raise CharnnError(f"{corpus.name} has fewer than 2 characters; give a longer text")
    run = (config or TrainConfig()).network(len(corpus.vocab))
    network = replace(run, hidden=GRADCHECK_HIDDEN, dropout=0.0, output_dropout=0.0)
    result = run_gradient_check(network, data, seq_length, threshold=GRADCHECK_THRESHOLD,
                                backend=backend or "auto", announce=announce)
    if network.assignment:                   # Figure 1 names them as the assignment does
        result = replace(result, rows=assignment_rows(result.rows))
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
        backend.train_updates(params, Optimiser(c.optimizer, opt_state, step, c.eta, c.clip), h,
                              Windows(d.data, sched.starts, sched.lengths, sched.resets,
                                      position, position + n))
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


def look_inside(corpus: Corpus, config: TrainConfig, best: Checkpoint, backend) -> LookInside:
    """Section 6: run INSIDE_CHARS characters of the held-out part (or of the text's tail)
    through the best model from the state sampling starts from, and rank its units by how
    well they track simple features of the text."""
    from ..corpus import Vocabulary
    from ..insight import coloured_by_unit, find_units
    from ..trained import TrainedModel
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
    from ..backends import get_backend
    from ..plot import read_log
    from ..sampling import generate
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
                          config.network(), jobs=("evaluate", "sample"))
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



# -- writing --------------------------------------------------------------------------------

def write_report(data: ReportData, out: Path) -> Path:
    """Write loss.png, report.md and report.html into `out`; returns report.html's path."""
    from ..plot import plot_run
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


__all__ = ["BEST_SAMPLE_LENGTH", "DEFAULT_EPOCHS", "DEFAULT_OUT", "DEFAULT_VAL_FRAC",
           "GRADCHECK_HIDDEN", "GRADCHECK_THRESHOLD", "INSIDE_CHARS", "REFERENCE", "RUN_FILES",
           "UNSEEN_TAIL_FRAC", "GradCheck", "HeldOut", "LookInside", "ReportData", "SampleBlock",
           "collect", "estimate_message", "estimate_seconds", "format_duration",
           "held_out_loss", "look_inside", "parse_samples", "render_html", "render_markdown",
           "report_from_run", "run_gradcheck", "write_report"]
