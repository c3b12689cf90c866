"""What a report holds: its figures' data, the run's facts, and the numbers it is measured
against."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..checkpoint import BEST, LATEST
from ..config import TrainConfig
from ..gradcheck import GradCheck
from ..run_folder import parse_sample_blocks

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
INSIDE_CHARS = 3_000           # Section 6's stretch of text

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
