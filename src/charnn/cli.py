"""The command line: charnn train | sample | gradcheck | eval | report."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from .config import BACKENDS
from .errors import CharnnError
from .networks import CELLS
from .options import (add_train_arguments, config_from_args, limited, load_training_corpus,
                      message_of, number, seed_number, text_source, unescape, whole_number)
from .progress import ProgressView
from .schedule import format_duration

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line, with exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- train ----------------------------------------------------------------------------------

def cmd_train(args) -> int:
    from . import distributed
    from .train import Trainer
    writer = distributed.is_writer()                     # under torchrun: rank 0 alone speaks
    view = ProgressView(show_bar=not args.no_progress) if writer else (lambda event: None)
    announce = (lambda message: print(message, flush=True)) if writer else (lambda m: None)
    if args.resume is not None:
        if args.init_from is not None:
            raise CharnnError("a resumed run goes on from its own weights; leave out "
                              "--init-from (or start a new run with it, without --resume)")
        trainer = _resume(args, view, announce)
    else:
        base = None
        if args.init_from is not None:                   # fine-tuning: finetune.py
            from .finetune import finetune_config, load_base
            base = load_base(args.init_from)
            config = finetune_config(args, base)
        else:
            # a budget's network is chosen below, from a config of its reference network
            config = config_from_args(args, preset=_budget_reference(args))
        corpus = load_training_corpus(args, config)
        if distributed.world_size() > 1 and args.out is None and args.name is None:
            raise CharnnError("several processes train one run: give it --out or --name, so "
                              "that every process names the same run folder")
        run_dir = args.out or Path("runs") / (_plain_name(args.name) if args.name else
                                              _default_run_name(corpus.name))
        if (run_dir / "latest.npz").exists():
            raise CharnnError(f"{run_dir} already holds a run; continue it with --resume "
                              f"{run_dir}, or give another --name or --out")
        preset = (args.preset, None)
        if base is None and chooses_for_budget(args):
            config, preset = _budget_config(args, config, corpus, announce)
        announce(describe_settings(config, *preset, Path(run_dir) / "config.json"))
        if base is not None:
            from .finetune import finetune_trainer
            trainer = finetune_trainer(base, corpus, config, run_dir, on_event=view,
                                       announce=announce)
        else:
            trainer = Trainer(corpus, config, run_dir, on_event=view, announce=announce)
    state = trainer.run()
    run_dir = trainer.run_dir
    if not writer:
        return EXIT_INTERRUPTED if trainer.stop_requested else 0
    if trainer.stop_requested:
        print(f"stopped at update {state.iteration}; saved {run_dir / 'latest.npz'}; "
              f"continue with: charnn train --resume {run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if trainer.time_up:
        print(f"the time limit ({format_duration(trainer.config.time_limit)}) passed at update "
              f"{state.iteration:,} of {trainer.total_updates:,}; the rest of the run can "
              f"follow with: charnn train --resume {run_dir}", flush=True)
    if trainer.dataset.val_chars:
        best = (f"best validation loss {state.best_value:.4f} nats/char "
                f"({state.best_value / math.log(2):.4f} bits/char)")
    else:
        best = f"best smooth loss {state.best_value:.2f}"
    print(f"done: {state.iteration:,} updates in {state.elapsed:.1f} s; {best} "
          f"at update {state.best_iteration:,}\n"
          f"run folder {run_dir}: loss.png, samples.txt, log.csv, latest.npz, best.npz\n"
          f"sample from it: charnn sample {run_dir} -n 500", flush=True)
    return 0


def describe_settings(config, preset: str, chosen, every: Path) -> str:
    """A new run's settings in one line: the preset (or the budget's choice, a budget.Choice,
    where `chosen` is one), the settings that differ from it (as the flags that give them),
    and where all of them are written."""
    from .config import TrainConfig
    from .presets import PRESETS, as_flags
    start = chosen.settings if chosen is not None else PRESETS[preset]
    values, base = config.to_dict(), TrainConfig(**start).to_dict()
    # sigma and eta left out default to values that follow other settings (the width, the
    # optimiser): they differ from the preset's only where they were given
    follows = TrainConfig(**{**values, "sigma": None, "eta": None}).to_dict()
    for name in ("sigma", "eta"):
        if name not in start:
            base[name] = follows[name]
    changed = {name: value for name, value in values.items() if value != base[name]}
    if chosen is not None:
        changed.pop("time_limit", None)                  # the choice's line states it
    if changed.get("time_limit") is not None:
        changed["time_limit"] = format_duration(changed["time_limit"]).replace(" ", "")
    flags = as_flags(changed)
    if chosen is not None:
        return (f"settings: {chosen.describe()}" + (f"; with {flags}" if flags else "")
                + f" (every setting: {every})")
    return (f"settings: preset {preset}" + (f" with {flags}" if flags else " as it is")
            + f" (every setting: {every})")


# Flags that state the network: any of them, or --preset, and --time-limit trains what they say
NETWORK_FLAGS = frozenset({"model", "layers", "hidden"})


def chooses_for_budget(args) -> bool:
    """Whether a new run's network is chosen for its budget (charnn.budget): --time-limit
    given, and neither --preset nor a flag that states the network."""
    given = getattr(args, "given", set())
    return (getattr(args, "time_limit", None) is not None and "preset" not in given
            and not given & NETWORK_FLAGS)


def _budget_reference(args) -> dict | None:
    """The preset of a run's first config: the budget's reference network where the budget
    chooses the network (so that flags such as --dropout are checked against a network
    they fit), else --preset's (None)."""
    from .budget import REFERENCE
    return dict(REFERENCE) if chooses_for_budget(args) else None


def _budget_config(args, config, corpus, announce):
    """The config of a run whose network its budget chooses (the flags given override the
    choice, as a preset's values), and ("budget", the choice) for its settings line."""
    import dataclasses
    from . import budget, distributed
    from .config import TrainConfig
    from .data import build_dataset
    if distributed.world_size() > 1:
        raise CharnnError("several processes (torchrun) would each measure their own speed "
                          "and could choose different networks for --time-limit; give the "
                          "network (--model, --layers, --hidden) or --preset best-cpu")
    given = getattr(args, "given", set())
    rate = budget.reference_rate(corpus, config, announce)
    # (one lane: too few records or chunks for the reference's 32 lanes fail only its shape)
    one_lane = TrainConfig.from_dict({**config.to_dict(), "batch_size": 1})
    chars = budget.train_chars(build_dataset(corpus, one_lane))
    shape = budget.shaped(budget.choose(config.time_limit, chars, rate).settings, corpus,
                          lambda values: config_from_args(args, preset=values))
    shaped = config_from_args(args, preset=shape)
    most = None                                          # a length given caps the passes
    if "epochs" in given:
        most = shaped.epochs * chars
    elif "updates" in given:
        most = shaped.updates * shaped.batch_size * shaped.seq_length
    choice = budget.choose(config.time_limit, chars, rate, most)
    choice = dataclasses.replace(choice, settings=dict(       # the shape the text allows
        choice.settings, batch_size=shape["batch_size"], seq_length=shape["seq_length"]))
    settings = dict(choice.settings)
    if "optimizer" in given and "eta" not in given:      # the optimiser's own learning rate
        eta = TrainConfig(**{**settings, "optimizer": config.optimizer, "eta": None}).eta
        settings.update(eta=eta, min_eta=budget.tenth(eta))
    if "dropout" in given and "output_dropout" not in given and \
            settings.get("output_dropout"):             # --dropout P: P wherever the rule drops
        settings["output_dropout"] = config.dropout
    return config_from_args(args, preset=settings), ("budget", choice)


def _resume(args, view, announce):
    """A trainer for `charnn train --resume RUN`: the run's own settings, with the length,
    the step and the reporting intervals the command line gives; any flag that would change
    the network or the data order is refused by name."""
    from .checkpoint import LATEST, load_checkpoint
    from .config import RESUMABLE, TrainConfig
    from .corpus import load_corpus
    from .train import resume_trainer
    given = args.given
    if "preset" in given:
        raise CharnnError("a resumed run keeps its settings; leave out --preset (give "
                          "--updates to change its length, --time-limit to cap this session)")
    if given & {"out", "name"}:
        raise CharnnError(f"a resumed run stays in its folder {args.resume}; leave out "
                          f"{' and '.join('--' + g for g in sorted(given & {'out', 'name'}))}")
    run = Path(args.resume)
    saved = TrainConfig.from_dict(load_checkpoint(run / LATEST if run.is_dir() else run)
                                  .meta["config"])
    fixed = sorted(g for g in given if g in saved.to_dict() and g not in RESUMABLE)
    if fixed:
        shown = ", ".join(f"--{g.replace('_', '-')} (the run has "
                          f"{getattr(saved, g)!r})" for g in fixed)
        raise CharnnError(f"{shown}: a resumed run keeps its network and data order; leave "
                          f"{'it' if len(fixed) == 1 else 'them'} out, or start a new run")
    changes = {g: getattr(args, g) for g in RESUMABLE if g in given}
    # a time limit fixed the run's length when it began (in updates, saved); it caps only a
    # session that asks for it again
    changes.setdefault("time_limit", None)
    if "updates" in changes:
        changes["epochs"] = None
    elif "epochs" in changes:
        changes["updates"] = None
    corpus = None
    if args.text or args.corpus:
        corpus = load_corpus(text_source(args), encoding=args.encoding,
                             records=saved.records, record_separator=saved.record_separator)
    trainer = resume_trainer(run, corpus, changes=changes, on_event=view, announce=announce)
    if trainer.state.iteration >= trainer.total_updates:
        raise CharnnError(f"{args.resume} has already run {trainer.state.iteration:,} "
                          f"updates; give --updates or --epochs beyond that to train on")
    shown = [f"--{g.replace('_', '-')} {getattr(trainer.config, g)} (was {getattr(saved, g)})"
             for g in changes if getattr(trainer.config, g) != getattr(saved, g)
             and changes[g] is not None]
    announce(f"resuming {trainer.run_dir} at update {trainer.state.iteration:,}"
             + (f" with {', '.join(shown)}" if shown else ""))
    return trainer


def _plain_name(name: str) -> str:
    """A --name that keeps the run inside runs/: one folder name, not a path."""
    if name in ("", ".", "..") or Path(name).name != name or "/" in name or "\\" in name:
        raise CharnnError(f"--name {name!r} is not a plain folder name (runs go in runs/NAME); "
                          "give a name without / or .., or --out for a folder elsewhere")
    return name


def _default_run_name(corpus_name: str) -> str:
    stem = Path(corpus_name).stem or "run"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


# -- sample ---------------------------------------------------------------------------------

def _add_sampling_arguments(g) -> None:
    g.add_argument("--temperature", type=number, default=1.0,
                   help="softmax(o / T): 1.0 = the model's distribution, < 1 = less random")
    g.add_argument("--top-k", type=limited("top_k"), default=0,
                   help="draw only from the K most likely characters (0 = off)")
    g.add_argument("--top-p", type=number, default=1.0,
                   help="nucleus: draw from the most likely characters reaching P (1.0 = off)")
    g.add_argument("--greedy", action="store_true", help="always take the most likely character")


def _add_beam_argument(g) -> None:
    g.add_argument("--beam", type=whole_number, default=None, metavar="K",
                   help="beam search: print the K most likely continuations of -n characters, "
                        "best first, with their total log-probability (instead of drawing)")


def _sampling_options(args):
    from .sampling import SamplingOptions
    return SamplingOptions(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                           greedy=args.greedy).validate()


def cmd_sample(args) -> int:
    from .corpus import read_text
    from .trained import load
    options = _sampling_options(args)
    if args.count < 1:
        raise CharnnError(f"--count is {args.count}; give at least 1")
    if args.checkpoint is None:
        from .bundled import DEFAULT_MODEL
        args.checkpoint = DEFAULT_MODEL
        print(f"charnn: no run folder given: sampling from the pretrained model "
              f"{DEFAULT_MODEL!r}", file=sys.stderr, flush=True)
    model = load(args.checkpoint, args.backend, lambda m: print(m, file=sys.stderr, flush=True),
                 jobs=("sample",))
    prime = read_text(args.prime_file) if args.prime_file else (args.prime or "")
    model.check_known(prime, "the prime text")        # before anything is written to stdout
    if args.beam is not None:
        return _print_beams(model, prime, args)
    records = model.is_record_model
    length = args.max_length if (records and args.max_length) else args.n
    rng = np.random.default_rng(args.seed)
    out = sys.stdout
    for i in range(args.count):
        if i:
            out.write("\n" if records else "\n\n")
        out.write(prime)
        out.flush()
        model.generate(length, prime, options.temperature, options.top_k, options.top_p,
                       options.greedy, stop_at=unescape(args.stop_at) if args.stop_at else None,
                       zero_state=args.zero_state, rng=rng,
                       on_text=lambda text: (out.write(text), out.flush()))
    out.write("\n")
    return 0


def _print_beams(model, prime: str, args) -> int:
    """`charnn sample --beam K`: the K most likely continuations, best first."""
    beams = model.beam_search(args.n, args.beam, prime, args.zero_state)
    for i, beam in enumerate(beams, start=1):
        end = " (end of record)" if beam.finished else ""
        print(f"{'' if i == 1 else chr(10)}#{i}  total log-probability {beam.logprob:.4f} nats"
              f"{end}\n{prime}{beam.text}", flush=True)
    return 0


# -- gradcheck ------------------------------------------------------------------------------

def cmd_gradcheck(args) -> int:
    from .corpus import load_corpus
    from .gradcheck import format_table, run_gradient_check
    from dataclasses import replace

    from .networks import Network
    if args.hidden < 1 or args.seq_length < 1 or args.layers < 1:
        raise CharnnError("--hidden, --seq-length and --layers must be at least 1")
    if not ((args.step is None or args.step > 0) and args.threshold > 0):
        raise CharnnError("--step and --threshold must be greater than 0")
    if args.batch_size < 1 or (args.elements is not None and args.elements < 1):
        raise CharnnError("--batch-size and --elements must be at least 1")
    for flag, p in (("--dropout", args.dropout), ("--output-dropout", args.output_dropout)):
        if not 0 <= p < 1:
            raise CharnnError(f"{flag} is {p}; give a probability from 0 up to (not "
                              "including) 1")
    network = Network(args.model, args.layers, args.hidden, dropout=args.dropout,
                      output_dropout=args.output_dropout)
    corpus = load_corpus(text_source(args), encoding=args.encoding)
    network = replace(network, vocab=len(corpus.vocab))
    data = corpus.data[:args.batch_size * args.seq_length + 1].astype(np.int32)
    if len(data) < args.batch_size + 1:
        raise CharnnError(f"{corpus.name} is too short for {args.batch_size} lanes; give a "
                          "longer text or a smaller --batch-size")
    check = run_gradient_check(network, data, args.seq_length, sigma=args.sigma,
                               step=args.step, threshold=args.threshold, backend=args.backend,
                               batch_size=args.batch_size, elements=args.elements,
                               seed=args.seed, announce=print)
    rows = check.rows
    lanes = f", batch {args.batch_size} (loss averaged over lanes)" if args.batch_size > 1 else ""
    checked = f", {args.elements} random elements per parameter" if args.elements else ""
    stack = f" x {args.layers} layers" if args.layers > 1 else ""
    dropped = ([f"{args.dropout:g} between layers"] if args.dropout and args.layers > 1
               else []) + ([f"{args.output_dropout:g} on the output"] if args.output_dropout
                           else [])
    dropout = f", dropout {' and '.join(dropped)} (fixed masks)" if dropped else ""
    print(f"gradient check ({args.model}{stack}, {check.backend}): m={args.hidden}, "
          f"K={len(corpus.vocab)}, seq_length={check.seq_length}{lanes}{dropout}, "
          f"sigma={check.sigma:.3g}, h={check.step:g}, float64{checked}, text {corpus.name}")
    print(format_table(rows, args.threshold))
    failed = [r.name for r in rows if not r.passed]
    if failed:
        print(f"FAILED: {', '.join(failed)}. If the absolute differences are ~1e-10, the "
              f"centred difference's own error (~h^2) exceeds {args.threshold:g} of some tiny "
              "gradient elements: check again with --step 1e-5 (the differences are taken in "
              "extended precision, so a smaller h is safe)")
    else:
        print("all gradients pass")
    return 1 if failed else 0


# -- eval -----------------------------------------------------------------------------------

def cmd_eval(args) -> int:
    from .corpus import read_text
    from .trained import load
    if args.warmup < 0 or args.max_chars < 0:
        raise CharnnError("--warmup and --max-chars must be 0 or more")
    announce = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    model = load(args.checkpoint, args.backend, announce, jobs=("evaluate", "sample"))
    text = read_text(args.text, args.encoding)
    unknown = model.vocab.unknown(text.replace(model.config.get("record_separator", "\n"), "")
                                  if model.is_record_model else text)
    if unknown and not args.skip_unknown:
        raise CharnnError(f"{args.text} has characters {''.join(unknown[:10])!r} outside the "
                          "model's vocabulary; pass --skip-unknown to leave them out")
    if unknown:
        text = "".join(ch for ch in text if ch not in set(unknown))
    if len(text) < 2:
        raise CharnnError(f"{args.text} has fewer than 2 known characters; give a longer text")
    model.prefer_compiled(min(len(text), args.max_chars or len(text)), announce)
    score = model.evaluate(text, warmup=args.warmup, max_chars=args.max_chars)
    skipped = f" ({len(unknown)} unknown character kinds skipped)" if unknown else ""
    if model.is_record_model:
        how = "record by record, each from h = 0"
    else:
        start = "the state training carried" if model.carried is not None else "h = 0"
        how = f"after a {score.warmup}-character warm-up from {start}"
    print(f"{args.text}: {score.count:,} characters scored{skipped}, {how}\n"
          f"loss {score.nats:.4f} nats/char = {score.bits:.4f} bits/char "
          f"(perplexity {math.exp(score.nats):.3f})")
    return 0


# -- inspect --------------------------------------------------------------------------------

def cmd_inspect(args) -> int:
    from .corpus import read_text
    from .insight import FEATURES, default_text, find_units, inspect_html
    from .trained import load
    model = load(args.run, args.backend, lambda m: print(m, file=sys.stderr, flush=True),
                 jobs=("sample",))
    if args.text:
        text, source = read_text(args.text, args.encoding), args.text
    else:
        text, source = default_text(Path(args.run), model)
    if args.max_chars < 1:
        raise CharnnError(f"--max-chars is {args.max_chars}; give at least 1")
    text = text[:args.max_chars]
    analysis = model.analyse(text)
    layers = len(analysis.layers)
    if args.layer is not None and not 0 <= args.layer < layers:
        raise CharnnError(f"--layer is {args.layer}; {model.network.describe()} has layer 0"
                          + (f" to {layers - 1}" if layers > 1 else ""))
    units = find_units(analysis.layers, text)
    layer, unit = chosen_unit(units, args.layer, args.unit)
    m = analysis.layers[layer].shape[1]
    if not 0 <= unit < m:
        raise CharnnError(f"--unit is {unit}; give a unit from 0 to {m - 1}")
    print(f"{source}: {len(text):,} characters through {model.network.describe()}; units "
          "whose activation tracks a feature (|Pearson r|):")
    for u in units:
        print(f"  {FEATURES[u.feature]:<22} layer {u.layer} unit {u.unit:>4}  r = {u.r:+.3f}")
    if args.html:
        where = f"layer {layer} unit {unit}" if layers > 1 else f"unit {unit}"
        page = inspect_html(analysis, units, unit, layer, f"{Path(args.run).name}: {where}",
                            source)
        from .run_folder import write_atomically     # a full disk leaves no empty page
        write_atomically(Path(args.html), page)
        print(f"wrote {args.html} ({where})")
    return 0


def chosen_unit(units, layer: int | None, unit: int | None) -> tuple[int, int]:
    """(layer, unit) to colour by: the ones given; for what is not given, the best ranked
    unit (of the layer given, if one is), whose own layer goes with it; layer 0 and unit 0
    when nothing ranks."""
    if unit is not None:
        return (0 if layer is None else layer), unit
    ranked = [u for u in units if layer is None or u.layer == layer]
    if not ranked:
        return (0 if layer is None else layer), 0
    return ranked[0].layer, ranked[0].unit


# -- serve ----------------------------------------------------------------------------------

def cmd_serve(args) -> int:
    from .serve import require_extra
    require_extra()
    from .serve.app import serve, split_host
    if not 0 <= args.port <= 65535:
        raise CharnnError(f"--port is {args.port}; give a port from 1 to 65535 (0: any free "
                          "one)")
    for name in args.allow_host:
        try:
            split_host(name)
        except ValueError:
            raise CharnnError(f"--allow-host is {name!r}; give a host name such as "
                              "mybox.local, or NAME:PORT") from None
    try:
        serve(args.runs, args.runs_dir, args.host, args.port, args.backend,
              allow_hosts=args.allow_host, announce=lambda message: print(message, flush=True),
              warn=lambda message: print(message, file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        pass
    print("charnn serve: stopped", flush=True)
    return 0


# -- main -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .bundled import pretrained_names
    from .evaluation import WARMUP
    PRETRAINED = ", ".join(pretrained_names()) or "none installed"  # noqa: N806
    parser = _Parser(prog="charnn", description="Character-level recurrent language models: the vanilla RNN, LSTM, GRU and mLSTM.")
    parser.add_argument("--version", action="version", version=f"charnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train a model on a text",
                       description="Train a network (default: the vanilla RNN) on a text (default: Shakespeare).")
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="generate text from a checkpoint",
                       description="Generate text from a checkpoint file, a run folder or a "
                                   "pretrained model (default: shakespeare).")
    p.add_argument("checkpoint", nargs="?", default=None,
                   help=f"a checkpoint file (.npz), a run folder (its best.npz) or a pretrained "
                        f"model's name (default: the pretrained {PRETRAINED})")
    g = p.add_argument_group("what to generate")
    g.add_argument("-n", type=limited("length"), default=1000, help="characters (default 1000)")
    g.add_argument("--prime", default="", help="text the sample starts from")
    g.add_argument("--prime-file", default=None, help="a file whose text the sample starts from")
    g.add_argument("--stop-at", default=None,
                   help="stop after this string appears (\\n and \\t are understood)")
    g.add_argument("--count", type=limited("count"), default=1, help="number of samples (default 1)")
    g.add_argument("--zero-state", action="store_true",
                   help="start from h = 0 (default: the state training carried, for models "
                        "trained in sequential order; records and shuffled chunks start at 0)")
    g.add_argument("--max-length", type=limited("length"), default=None,
                   help="record models: the longest record to generate (default -n)")
    g = p.add_argument_group("how to draw")
    _add_sampling_arguments(g)
    _add_beam_argument(g)
    g.add_argument("--seed", type=seed_number, default=None,
                   help="random seed: the same seed gives the same text (default: random)")
    g.add_argument("--backend", choices=BACKENDS, default="auto")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("gradcheck", help="check the analytic gradients numerically",
                       description="Compare the analytic gradients of b, c, U, W, V with "
                                   "centred differences on a small network.")
    p.add_argument("text", nargs="?", help="text whose first characters are used (default: "
                   "the bundled corpus)")
    p.add_argument("--corpus", choices=["shakespeare"])
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--model", choices=list(CELLS), default="rnn",
                   help="the network's cell (default rnn, the vanilla RNN)")
    p.add_argument("--layers", type=limited("layers"), default=1,
                   help="stacked layers of the cell (default 1)")
    p.add_argument("--dropout", type=number, default=0.0,
                   help="dropout between stacked layers, with fixed masks (default 0)")
    p.add_argument("--output-dropout", type=number, default=0.0,
                   help="dropout on the top layer's output, with fixed masks (default 0)")
    p.add_argument("--hidden", type=limited("hidden"), default=5, help="hidden units (default 5)")
    p.add_argument("--seq-length", type=limited("seq_length"), default=25, help="default 25")
    p.add_argument("--sigma", type=number, default=None,
                   help="init std (default 0.01 for rnn, the assignment's; 1/sqrt(hidden) for "
                        "the gated cells, PyTorch's scale: at 0.01 their lower layers get "
                        "gradients near 1e-12, whose relative differences say nothing)")
    p.add_argument("--step", type=number, default=None,
                   help="finite-difference h (default 1e-4 for rnn; 1e-5 for the gated cells, "
                        "whose larger weights curve the loss more)")
    p.add_argument("--threshold", type=number, default=1e-6,
                   help="largest relative difference that passes (default 1e-6)")
    p.add_argument("--batch-size", type=limited("batch_size"), default=1,
                   help="lanes: check the gradient of the loss averaged over B sequences")
    p.add_argument("--elements", type=limited("elements"), default=None,
                   help="check N random elements of each parameter (for big models)")
    p.add_argument("--seed", type=seed_number, default=0)
    p.add_argument("--backend", choices=["numpy", "compiled"], default="numpy",
                   help="whose analytic gradients to check (default numpy)")
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("eval", help="the loss of a model on a text, in bits per character",
                       description="Print the loss of a checkpoint's model on a text.")
    p.add_argument("checkpoint", help=f"a checkpoint file (.npz), a run folder (its best.npz) "
                                      f"or a pretrained model's name ({PRETRAINED})")
    p.add_argument("text", help="the text to evaluate on")
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--skip-unknown", action="store_true",
                   help="leave out characters the model does not know")
    p.add_argument("--warmup", type=limited("warmup"), default=WARMUP,
                   help=f"characters read to set the hidden state before scoring (default "
                        f"{WARMUP}, at most half the text; as validation does)")
    p.add_argument("--max-chars", type=limited("max_chars"), default=0,
                   help="score at most N characters after the warm-up (default 0: all; "
                        "validation scores at most --eval-chars)")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.set_defaults(func=cmd_eval)

    from .report.cli import add_report_parser
    add_report_parser(sub)

    from .export import add_export_parser
    add_export_parser(sub)

    p = sub.add_parser("inspect", help="which hidden units track which features of a text",
                       description="Run a text through a model, rank the hidden units by how "
                                   "well they track simple features of it (quotes, "
                                   "parentheses, position in the line, word starts, newlines), "
                                   "and write the text coloured by one unit as a web page.")
    p.add_argument("run", help="a run folder (its best.npz) or a checkpoint file")
    p.add_argument("text", nargs="?", help="a text file (default: a stretch of the run's "
                   "held-out part, or its latest sample)")
    p.add_argument("--unit", type=whole_number, default=None,
                   help="the unit to colour by (default: the best one found)")
    p.add_argument("--layer", type=whole_number, default=None,
                   help="its layer (default: the best unit's, or 0 with --unit)")
    p.add_argument("--html", default=None, help="write the coloured text to this page")
    p.add_argument("--max-chars", type=whole_number, default=2000,
                   help="look at the first N characters (default 2000)")
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("serve", help="watch runs, generate and look inside models in a browser",
                       description="Serve a local web page over run folders: their loss "
                                   "curves (live), text generation, beam search, and the "
                                   "hidden units (needs pip install \"charnn[serve]\").")
    p.add_argument("runs", nargs="*", help=f"run folders or pretrained models ({PRETRAINED}) "
                                          "to show (besides those in --runs-dir)")
    p.add_argument("--runs-dir", default="runs",
                   help="a folder whose run folders are shown (default runs)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; any "
                        "other address needs the token the server prints)")
    p.add_argument("--port", type=int, default=8000, help="default 8000 (0: any free port)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a host name (or NAME:PORT) the browser may use to reach the server, "
                        "besides 127.0.0.1, localhost and [::1]; repeatable")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("tune", help="show how the compiled kernels' products are blocked on "
                                    "this CPU",
                       description="Show the blocking of the compiled kernels' products that "
                                   "was measured on this CPU (tile shapes and order, with the "
                                   "speed of every candidate), measuring it first if it was "
                                   "not; --again measures it afresh (the kernels then compile "
                                   "again).")
    p.add_argument("--again", action="store_true",
                   help="measure again, and compile the kernels again with the new choice")
    p.set_defaults(func=cmd_tune)
    return parser


def cmd_tune(args) -> int:
    from .backends.compiled import cache, tuning
    record = None if args.again else tuning.recorded()
    if record is None:
        print("measuring this CPU's products (about 20 s) ...", file=sys.stderr)
        record = tuning.measure()
        cache.forget_compiled()
    print(tuning.describe(record))
    lanes = tuning.LANES
    print(f"\nGFLOP/s of each candidate (float32, m = {tuning.M}; lane groups of "
          f"{', '.join(map(str, lanes))} rows; measured in {record['seconds']:.0f} s):")
    shapes = [f"{kind} {n}" for kind in tuning.KINDS for n in lanes]
    print(f"{'':>20} " + " ".join(f"{s:>12}" for s in shapes))
    for name, row in record["gflops"].items():
        print(f"{name:>20} " + " ".join(f"{row[s]:>12.0f}" for s in shapes))
    print(f"\nrecorded in {tuning.record_path()}")
    return 0


def given_options(argv) -> set[str]:
    """The options of `charnn train` that the command line gives explicitly (whatever their
    value): parsed once more with every default suppressed."""
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    for action in train._actions:
        if action.option_strings:
            action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def _out_of_memory() -> str:
    from .memory import address_space_left
    limit = address_space_left()
    if limit is not None:
        # the usual cause under a limit is the limit: it counts address space, not memory used
        return ("out of memory under the address-space limit (ulimit -v); raise it (ulimit -v "
                "unlimited), or give a smaller --hidden, --batch-size or text")
    return "out of memory; give a smaller --hidden, --batch-size or text"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        args.given = given_options(argv)
    try:
        return args.func(args)
    except CharnnError as exc:
        print(f"charnn: error: {message_of(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("charnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except MemoryError:
        print(f"charnn: error: {_out_of_memory()}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"charnn: error: {exc.strerror or exc}{where}; check the path, its permissions "
              "and the free disk space", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
