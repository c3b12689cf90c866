"""The training flags of `charnn train` and `charnn report`, derived from TrainConfig's fields:
each default is written once, in config.py, and every flag's help shows it.

The command line and the report both build their parsers from here, so neither imports the
other.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from .config import (BACKENDS, DEVICES, DTYPES, MAX_TIME_LIMIT, ORDERS, WHOLE_LIMITS,
                     TrainConfig)
from .errors import CharnnError, SettingError
from .networks import NETWORKS
from .optim import OPTIMIZERS
from .presets import PRESETS, describe_presets
from .schedule import SCHEDULES, parse_duration


def flag_of(name: str) -> str:
    """The flag that gives TrainConfig's field `name`: every setting's flag is its name."""
    return "--" + name.replace("_", "-")


def message_of(exc: CharnnError) -> str:
    """A library error as the command line says it: the settings it names, as flags."""
    return exc.naming(flag_of) if isinstance(exc, SettingError) else str(exc)


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def limited(name: str):
    """The argparse type of a whole-number flag bounded as config.WHOLE_LIMITS[name] bounds
    it, so that the command line refuses what TrainConfig.validate and the checkpoint
    loader would refuse later."""
    least, most = WHOLE_LIMITS[name]

    def parse(text: str) -> int:
        value = whole_number(text)
        if least <= value <= most:
            return value
        shown = text if len(text) <= 30 else f"a number of {len(text.strip())} digits"
        why = "is too large" if value > most else "is negative" if value < 0 else "is too small"
        raise argparse.ArgumentTypeError(f"{shown!r} {why}; give a whole number from "
                                         f"{least:,} to {most:,}")
    parse.__name__ = f"whole number ({name})"
    return parse


seed_number = limited("seed")


def duration(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds > MAX_TIME_LIMIT:
        raise argparse.ArgumentTypeError(f"{text!r} is longer than ten years; give a shorter "
                                         "duration, such as 10m")
    return seconds


def unescape(text: str) -> str:
    """Let a shell user write a newline or a tab as \\n or \\t."""
    return text.replace("\\n", "\n").replace("\\t", "\t")


# group -> {field: (help, argparse keywords)}; the defaults come from TrainConfig
MODEL = {
    "model": ("the network's cell: rnn (the assignment's vanilla RNN), lstm, gru or mlstm",
              {"choices": tuple(NETWORKS)}),
    "layers": ("stacked layers of the cell", {"type": whole_number}),
    "dropout": ("dropout between stacked layers while training", {"type": number}),
    "output_dropout": ("dropout on the top layer's output (into the output layer) while "
                       "training; with --dropout it is char-rnn's placement, and it works "
                       "with one layer", {"type": number}),
    "hidden": ("hidden units m (per layer)", {"type": whole_number}),
    "sigma": ("std of the initial weights (default 0.01 for rnn, the assignment's; 1/sqrt(m) "
              "for the gated cells, PyTorch's scale)", {"type": number}),
    "dtype": ("float32 is faster and takes half the memory", {"choices": DTYPES}),
}
OPTIMISATION = {
    "optimizer": ("update rule (adagrad is the assignment's)", {"choices": OPTIMIZERS}),
    "eta": ("learning rate (default 0.1 for adagrad, 0.005 for rmsprop and adam)",
            {"type": number}),
    "lr_schedule": ("constant eta, or cosine: from eta down to --min-eta over the run",
                    {"choices": SCHEDULES}),
    "warmup_updates": ("eta rises linearly over the first N updates", {"type": whole_number}),
    "min_eta": ("where --lr-schedule cosine ends", {"type": number}),
    "clip": ("clip gradients elementwise to [-clip, clip]", {"type": number}),
    "seq_length": ("characters per update and lane", {"type": whole_number}),
    "batch_size": ("lanes (sequences) per update; loss summed over time, averaged over lanes",
                   {"type": whole_number}),
}
LENGTH = {
    "epochs": ("passes over the text", {"type": number}),
    "updates": ("parameter updates", {"type": whole_number}),
    "time_limit": ("train for a wall-clock budget such as 90s, 10m or 1h30m: alone, the "
                   "speed of the first seconds fixes (and prints) the updates that fit, so "
                   "--updates N repeats the run exactly; with --updates or --epochs, a cap "
                   "that stops the run early; without --preset and the network's flags "
                   "(--model, --layers, --hidden), the network is chosen for the "
                   "budget and the text (charnn.budget; the first line says which)",
                   {"type": duration, "metavar": "DURATION"}),
}
DATA = {
    "order": ("sequential: the assignment's pointer walk; shuffled: chunks in a new random "
              "order each epoch, h reset per chunk", {"choices": ORDERS}),
    "chunk_length": ("characters per chunk with --order shuffled", {"type": whole_number}),
    "val_frac": ("fraction held out for validation (the tail; a random piece when shuffled); "
                 "the best checkpoint is then chosen by validation loss", {"type": number}),
    "records": ("each line (or --record-separator piece) is a record trained on its own",
                {"action": "store_true"}),
    "record_separator": ("what separates records; \\n and \\t are understood", {}),
}
REPORTING = {
    "sample_every": ("print a sample every N updates, and at update 0", {"type": whole_number}),
    "sample_length": ("characters per sample", {"type": whole_number}),
    "log_every": ("log a row of log.csv every N updates", {"type": whole_number}),
    "eval_every": ("validation loss every N updates with --val-frac", {"type": whole_number}),
    "eval_chars": ("score at most N held-out characters (charnn eval --max-chars N gives the "
                   "same figure)", {"type": whole_number}),
    "checkpoint_every": ("save latest.npz and best.npz every N updates", {"type": whole_number}),
}
RUN = {
    "seed": ("random seed", {"type": seed_number}),
    "backend": ("auto (the fastest that runs the network; torch with --device cuda or mps, "
                "or under torchrun), compiled (numba), numpy (the readable reference) or torch "
                "(PyTorch: pip install -e \".[torch]\")", {"choices": BACKENDS}),
    "device": ("where --backend torch runs: auto (a CUDA GPU when there is one, else the "
               "CPU), cpu, cuda or mps", {"choices": DEVICES}),
}
_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}


def add_config_flags(group, flags: dict, defaults: dict | None = None,
                     notes: dict | None = None) -> None:
    """Add one flag per TrainConfig field in `flags`, its default TrainConfig's (or
    `defaults`'), shown in its help, followed by notes[name] where there is one."""
    for name, (help_text, keywords) in flags.items():
        default = (defaults or {}).get(name, _DEFAULTS[name])
        shown = ("" if "default" in help_text else _shown(default)) + (notes or {}).get(name, "")
        if name in WHOLE_LIMITS:
            keywords = dict(keywords, type=limited(name))
        group.add_argument(flag_of(name), dest=name, default=default,
                           help=help_text + shown, **keywords)


def _shown(default) -> str:
    if default is None or isinstance(default, bool):
        return ""
    if isinstance(default, str):
        return f" (default {default!r})"
    return f" (default {default:,})" if isinstance(default, int) else f" (default {default:g})"


def add_train_arguments(p: argparse.ArgumentParser, with_run: bool = True,
                        notes: dict | None = None, length_title: str | None = None) -> list[str]:
    """Add the training flags to `p` (with_run: also those of a run folder, the reporting
    intervals and the backend); notes[name] follows a flag's help; length_title names the
    length's group. Returns the TrainConfig fields given flags (with_run False: the
    network's, the optimisation's, the length's and the data's)."""
    p.add_argument("text", nargs="?", help="the text file to train on (default: the bundled "
                   "Shakespeare corpus)")
    p.add_argument("--corpus", choices=["shakespeare"], help="train on a bundled corpus")
    p.add_argument("--encoding", default="utf-8", help="the text file's encoding (default utf-8)")
    add_config_flags(p.add_argument_group("model"), MODEL, notes=notes)
    add_config_flags(p.add_argument_group("optimisation"), OPTIMISATION, notes=notes)
    if with_run:
        p.add_argument("--preset", choices=tuple(PRESETS), default="assignment",
                       help="start from a named set of settings, which the flags given "
                            "override: " + describe_presets())
    add_config_flags(p.add_argument_group(length_title or "length (--epochs or --updates; "
                                          "default 100,000 updates)"), LENGTH, notes=notes)
    add_config_flags(p.add_argument_group("data"), DATA, notes=notes)
    given = [*MODEL, *OPTIMISATION, *LENGTH, *DATA]
    if not with_run:
        return given
    add_config_flags(p.add_argument_group("reporting"), REPORTING)
    g = p.add_argument_group("run")
    g.add_argument("--out", type=Path, default=None,
                   help="the run folder (default runs/<name>)")
    g.add_argument("--name", default=None,
                   help="the run's name (default: the text's name and the time)")
    g.add_argument("--resume", type=Path, default=None, metavar="RUN",
                   help="continue the run in folder RUN where it stopped")
    g.add_argument("--init-from", default=None, metavar="MODEL",
                   help="fine-tune: start from the weights of MODEL (a pretrained model's "
                        "name such as shakespeare, a run folder, a checkpoint or an exported "
                        "folder), keeping its network; --preset fine-tune unless --preset is "
                        "given")
    add_config_flags(g, RUN)
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return given + [*REPORTING, *RUN]


def config_from_args(args, preset: dict | None = None) -> TrainConfig:
    """The TrainConfig of parsed flags: every field a flag gave, then the preset's (`preset`,
    else --preset's), the rest its default. args.given names the flags the command line gave
    (cli.py); without it every flag counts as given."""
    values = {name: getattr(args, name) for name in _DEFAULTS if hasattr(args, name)}
    given = getattr(args, "given", None)
    if preset is None:
        preset = PRESETS[getattr(args, "preset", None) or "assignment"]
    for name, value in preset.items():
        if given is not None and name not in given:
            values[name] = value
    if given is not None and "eta" in given and "min_eta" not in given and "min_eta" in preset:
        # the preset's schedule ends at a fraction of its eta: keep that fraction of the new one
        values["min_eta"] = values["eta"] * preset["min_eta"] / preset["eta"]
    separator_given = "record_separator" in given if given is not None else \
        values.get("record_separator", "\n") != _DEFAULTS["record_separator"]
    if separator_given and not values.get("records"):
        raise CharnnError("--record-separator splits a text into records, which only --records "
                          "trains on; give --records too, or leave --record-separator out")
    values["record_separator"] = unescape(values.get("record_separator", "\n"))
    return TrainConfig(**values).validate()


def text_source(args):
    """The text a command reads: the file given, or the bundled corpus (--corpus); both at
    once would leave one of them unread."""
    if args.text and args.corpus:
        raise CharnnError(f"both a text file ({args.text}) and --corpus {args.corpus} given; "
                          "give one of them")
    return args.corpus or args.text


def load_training_corpus(args, config: TrainConfig):
    from .corpus import load_corpus
    return load_corpus(text_source(args), encoding=args.encoding, records=config.records,
                       record_separator=config.record_separator)
