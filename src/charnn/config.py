"""Every setting of a training run, with the assignment's defaults."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from .backends import BACKENDS as BACKEND_MODULES
from .errors import SettingError, setting
from .evaluation import MAX_CHARS
from .networks import NETWORKS, Network
from .networks.spec import ASSIGNMENT_SIGMA
from .optim import DEFAULT_ETA, OPTIMIZERS
from .schedule import SCHEDULES

BACKENDS = ("auto",) + tuple(BACKEND_MODULES)  # auto: the fastest that runs the network
DTYPES = ("float64", "float32")
ORDERS = ("sequential", "shuffled")
# Where --backend torch runs (auto: a CUDA GPU when PyTorch sees one, else the CPU).
DEVICES = ("auto", "cpu", "cuda", "mps")
# How long a run is when neither --epochs nor --updates is given: the span of the report's
# samples (iter 0 .. 100,000).
DEFAULT_UPDATES = 100_000
# The settings a resumed run may change: its length, the step, and what is reported when.
# Every other one shapes the network or the data order, which a checkpoint fixes.
RESUMABLE = ("updates", "epochs", "eta", "lr_schedule", "warmup_updates", "min_eta", "clip",
             "sample_every", "sample_length", "log_every", "eval_every", "eval_chars",
             "checkpoint_every", "backend", "device", "time_limit")

# Counters and whole-number settings reach the kernels as int64, and a checkpoint holds none
# at or above this (checkpoint.py refuses them): every bound below stays under it, so that a
# run can always load its own checkpoints.
LARGEST_WHOLE = 2 ** 62
_MOST = LARGEST_WHOLE - 1
# The least and the most of every whole-number quantity, wherever it is read: the command
# line's flags, TrainConfig.validate and so the checkpoint loader.
WHOLE_LIMITS = {
    # counts of updates, and intervals in updates (a huge interval means "never"): anything
    # a checkpoint can hold
    "updates": (1, _MOST),
    "warmup_updates": (0, _MOST),
    "sample_every": (1, _MOST),
    "log_every": (1, _MOST),
    "eval_every": (1, _MOST),
    "checkpoint_every": (1, _MOST),
    "seed": (0, _MOST),
    # characters of a text: scored, per chunk, read as a warm-up
    "eval_chars": (1, _MOST),
    "chunk_length": (1, _MOST),
    "warmup": (0, _MOST),
    "max_chars": (0, _MOST),
    "elements": (1, _MOST),
    # the network's size: a million units' W alone is 8 TB, so no larger one fits a machine
    # (train.check_memory refuses most below that); a thousand layers, a million lanes and a
    # million characters per update are far past any run that trains in reasonable time
    "hidden": (1, 1_000_000),
    "layers": (1, 1_000),
    "batch_size": (1, 1_000_000),
    "seq_length": (1, 1_000_000),
    # characters drawn for each of training's samples, which are held whole in memory and
    # written to samples.txt: a million take seconds; a bigger one stalls the run unannounced
    "sample_length": (1, 1_000_000),
    # characters `charnn sample` draws (streamed as drawn), and how many samples
    "length": (1, 1_000_000_000),
    "count": (1, 1_000_000),
    # a vocabulary never holds more characters than Unicode has
    "top_k": (0, 0x110000),
}
# The longest --time-limit: ten years. The updates a time limit fixes (rate x time) then stay
# far under LARGEST_WHOLE at any speed a machine reaches.
MAX_TIME_LIMIT = 10 * 365.25 * 24 * 3600


def whole_limits_message(flag: str, value, name: str) -> str | None:
    """None when `value` is a whole number within WHOLE_LIMITS[name]; else the problem, in a
    line that names `flag` (a flag, a name, or errors.setting(name)) and the range to give."""
    least, most = WHOLE_LIMITS[name]
    if isinstance(value, int) and not isinstance(value, bool) and least <= value <= most:
        return None
    # a huge int is described, not shown: str() of one past 4,300 digits raises
    shown = value if not isinstance(value, int) or abs(value) < 10 ** 30 else \
        f"a number of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return f"{flag} is {shown}; give a whole number from {least:,} to {most:,}"


@dataclass
class TrainConfig:
    # model
    hidden: int = 100              # m, hidden units
    sigma: float | None = None     # std of the initial weights; None: the network's default
    dtype: str = "float64"         # float32 halves memory traffic and is faster
    model: str = "rnn"             # the network's cell: rnn (the assignment's), lstm, gru, mlstm
    layers: int = 1                # stacked layers of the cell
    dropout: float = 0.0           # between stacked layers, while training
    output_dropout: float = 0.0    # on the top layer's output, while training
    # optimisation
    optimizer: str = "adagrad"
    eta: float | None = None       # learning rate; None: the optimizer's default (0.1 for AdaGrad)
    lr_schedule: str = "constant"  # constant, or cosine from eta down to min_eta (schedule.py)
    warmup_updates: int = 0        # eta rises linearly over the first N updates
    min_eta: float = 0.0           # where the cosine schedule ends
    clip: float = 5.0              # gradients clipped elementwise to [-clip, clip]
    seq_length: int = 25           # tau, characters per update and lane
    batch_size: int = 1            # B, lanes trained side by side
    # length: at most one of epochs and updates; neither means DEFAULT_UPDATES updates, or,
    # with time_limit, the updates that fit in it (the trainer measures and records them)
    epochs: float | None = None
    updates: int | None = None
    time_limit: float | None = None  # seconds a session trains at most
    # data
    order: str = "sequential"      # sequential: the pointer walk; shuffled: chunks in random order
    chunk_length: int = 1000       # characters per chunk when order is shuffled
    val_frac: float = 0.0          # fraction of the text held out for validation
    records: bool = False          # each record trained on its own, h reset at its start
    record_separator: str = "\n"
    # reporting
    sample_every: int = 10_000
    sample_length: int = 200
    log_every: int = 100
    eval_every: int = 5_000
    eval_chars: int = MAX_CHARS    # held-out characters scored at most (evaluation.py)
    checkpoint_every: int = 10_000
    # machinery
    seed: int = 0
    backend: str = "auto"
    device: str = "auto"           # for --backend torch: cpu, cuda or mps

    def __post_init__(self):
        if self.eta is None:
            self.eta = DEFAULT_ETA.get(self.optimizer, 0.1)
        if self.sigma is None:
            try:
                self.sigma = self.network().default_sigma
            except (KeyError, TypeError, ValueError, ArithmeticError):
                # an impossible network, which validate names; any scale stands until then
                self.sigma = ASSIGNMENT_SIGMA

    def network(self, vocab: int | None = None) -> Network:
        """The network these settings train, for `vocab` characters."""
        return Network.from_config(self, vocab)

    def validate(self) -> "TrainConfig":
        """Raise a SettingError naming the first impossible setting and what to give instead
        (the message names settings by their field names; the command line shows its flags)."""
        def need(ok: bool, message: str):
            if not ok:
                raise SettingError(message)

        def s(name: str) -> str:
            return setting(name)

        for name in WHOLE_LIMITS:
            if hasattr(self, name) and not (name == "updates" and self.updates is None):
                problem = whole_limits_message(s(name), getattr(self, name), name)
                need(problem is None, problem)
        need(self.model in NETWORKS,
             f"{s('model')} {self.model!r} is unknown; choose one of {', '.join(NETWORKS)}")
        need(isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1,
             f"{s('dropout')} is {self.dropout}; give a probability from 0 up to (not "
             "including) 1")
        need(self.dropout == 0 or self.layers > 1,
             f"{s('dropout')} {self.dropout} acts between stacked layers; give {s('layers')} 2 "
             f"or more (or {s('output_dropout')} for one layer)")
        need(isinstance(self.output_dropout, (int, float)) and 0 <= self.output_dropout < 1,
             f"{s('output_dropout')} is {self.output_dropout}; give a probability from 0 up "
             "to (not including) 1")
        need(self.optimizer in OPTIMIZERS,
             f"{s('optimizer')} {self.optimizer!r} is unknown; choose one of "
             f"{', '.join(OPTIMIZERS)}")
        need(self.backend in BACKENDS,
             f"{s('backend')} {self.backend!r} is unknown; choose one of {', '.join(BACKENDS)}")
        need(self.device in DEVICES,
             f"{s('device')} {self.device!r} is unknown; choose one of {', '.join(DEVICES)}")
        need(self.device in ("auto", "cpu") or self.backend in ("auto", "torch"),
             f"{s('device')} {self.device} runs on PyTorch; give {s('backend')} torch (or auto)")
        need(self.dtype in DTYPES,
             f"{s('dtype')} {self.dtype!r} is unknown; choose float64 or float32")
        need(self.order in ORDERS,
             f"{s('order')} {self.order!r} is unknown; choose sequential or shuffled")
        need(math.isfinite(self.eta) and self.eta > 0,
             f"{s('eta')} is {self.eta}; give a learning rate greater than 0, such as 0.1")
        need(math.isfinite(self.sigma) and self.sigma > 0,
             f"{s('sigma')} is {self.sigma}; give a standard deviation greater than 0, such as "
             "0.01")
        need(math.isfinite(self.clip) and self.clip > 0,
             f"{s('clip')} is {self.clip}; give a bound greater than 0, such as 5")
        need(0 <= self.val_frac < 1,
             f"{s('val_frac')} is {self.val_frac}; give a fraction from 0 up to (not including) 1")
        need(not (self.epochs is not None and self.updates is not None),
             f"{s('epochs')} and {s('updates')} both given; give one of them")
        need(self.lr_schedule in SCHEDULES,
             f"{s('lr_schedule')} {self.lr_schedule!r} is unknown; choose one of "
             f"{', '.join(SCHEDULES)}")
        need(math.isfinite(self.min_eta) and 0 <= self.min_eta <= self.eta,
             f"{s('min_eta')} is {self.min_eta}; give a learning rate from 0 up to {s('eta')} "
             f"({self.eta:g})")
        need(self.time_limit is None or (math.isfinite(self.time_limit)
                                         and 0 < self.time_limit <= MAX_TIME_LIMIT),
             f"{s('time_limit')} is {self.time_limit}; give a duration greater than 0 and at "
             "most ten years, such as 10m")
        need(self.epochs is None or (math.isfinite(self.epochs) and self.epochs > 0),
             f"{s('epochs')} is {self.epochs}; give a number of epochs greater than 0")
        need(self.chunk_length > self.seq_length or self.order != "shuffled",
             f"{s('chunk_length')} {self.chunk_length} is not longer than {s('seq_length')} "
             f"{self.seq_length}; give a longer chunk")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
