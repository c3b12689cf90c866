"""The loss plot, drawn from a run's log.csv (never from inside the training loop)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")                       # headless: no display is needed or used
import matplotlib.pyplot as plt  # noqa: E402


def read_log(run_dir: str | Path) -> list[dict]:
    from .run_folder import RunFolder
    return RunFolder(run_dir).read_log()


def plot_run(run_dir: str | Path, out: str | Path | None = None,
             seq_length: int | None = None, updates_per_epoch: int | None = None) -> Path:
    """loss.png: the smooth loss (summed over a sequence of seq_length characters) against
    updates, epoch boundaries marked, validation loss when there is one, and bits per
    character on a second axis."""
    with warnings.catch_warnings():
        # a run name in a script the font lacks (CJK, say) is drawn as boxes; matplotlib
        # would warn of every missing glyph at every plot, and the run plots at every log row
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from",
                                category=UserWarning)
        return _plot_run(run_dir, out, seq_length, updates_per_epoch)


def _plot_run(run_dir, out, seq_length, updates_per_epoch) -> Path:
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "loss.png"
    if seq_length is None or updates_per_epoch is None:   # from the run's config.json
        config = json.loads((run_dir / "config.json").read_text())
        seq_length = config["config"]["seq_length"]
        updates_per_epoch = config.get("updates_per_epoch")
    rows = read_log(run_dir)
    train = [(int(r["iteration"]), float(r["smooth_loss"])) for r in rows if r["loss"]]
    val = [(int(r["iteration"]), float(r["val_loss"]) * seq_length) for r in rows if r["val_loss"]]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    if train:
        ax.plot(*zip(*train), color="tab:blue", lw=1.4, label="smooth loss (training)")
    if val:
        ax.plot(*zip(*val), "o-", color="tab:orange", ms=3, lw=1.2,
                label=f"validation loss x {seq_length} (same units)")
    # Every epoch of the run has the first epoch's number of updates (shuffled orders and
    # record corpora differ by at most a few), so the boundaries are its multiples.
    per_epoch = updates_per_epoch or 0
    last = max((int(r["iteration"]) for r in rows), default=0)
    if per_epoch:
        for epoch in range(2, last // per_epoch + 2):
            start = (epoch - 1) * per_epoch
            if start >= last:             # a run that ends on a boundary starts no new epoch
                break
            ax.axvline(start, color="gray", ls="--", lw=0.8)
            ax.text(start, 0.02, f" epoch {epoch}", transform=ax.get_xaxis_transform(),
                    va="bottom", fontsize=8, color="gray")
    ax.set_xlabel("update (iteration)")
    ax.set_ylabel(f"loss: nats summed over {seq_length} characters")
    to_bpc = seq_length * math.log(2)
    second = ax.secondary_yaxis("right", functions=(lambda y: y / to_bpc, lambda b: b * to_bpc))
    second.set_ylabel("bits per character")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    ax.set_title(f"{run_dir.name}: smooth loss")
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    try:
        fig.savefig(tmp)
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)       # a full disk leaves the last plot, and no stray file
        raise
    finally:
        plt.close(fig)
    return out
