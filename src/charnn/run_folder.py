"""The run folder: one module writes everything in it, so that a crash, a kill, a full disk or
a second process can never leave it half-written.

    config.json     every setting and the corpus facts
    log.csv         a row every log_every updates, and a row per validation
    samples.jsonl   the sample blocks as data: iteration, epoch, smooth loss, text
    samples.txt     the same blocks as the report prints them
    latest.npz, best.npz, loss.png

Rules:
- One writer: a process holds an OS lock on `.lock` while it trains (released by the OS when
  the process dies, so a killed run leaves no stale lock); a second one is refused, naming
  the holder's pid.
- Whole-file rewrites (config.json, cutting the log and samples back to the checkpoint a run
  resumes from) go to a temporary file that replaces the old one by a rename, so a kill at
  any moment leaves either the old file or the new one.
- Appends (a log row, a sample block) are flushed line by line; a row cut by a kill is
  dropped when the run resumes, since only rows up to the checkpoint are kept.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

from .checkpoint import BEST, LATEST
from .errors import CharnnError

try:                                             # POSIX; elsewhere the lock is advisory only
    import fcntl
except ImportError:                              # pragma: no cover
    fcntl = None

LOG_FIELDS = ("iteration", "epoch", "loss", "smooth_loss", "val_loss", "val_bpc", "elapsed")
CONFIG, LOG, SAMPLES_TXT, SAMPLES_JSONL, LOCK = (
    "config.json", "log.csv", "samples.txt", "samples.jsonl", ".lock")
_SAMPLE_HEADER = re.compile(r"^iter (\d+) , epoch (\d+) , smooth loss (\S+)\n", re.MULTILINE)


def sample_block(iteration: int, epoch: int, smooth_loss: float, text: str) -> str:
    """As the report prints it: `iter 10000 , epoch 1 , smooth loss 52.53`, then the text."""
    return f"iter {iteration} , epoch {epoch} , smooth loss {smooth_loss:.2f}\n{text}"


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` by `text` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_file = None

    # -- the one-writer lock -------------------------------------------------------------------

    def acquire(self) -> None:
        """Create the folder if need be and take its lock, or raise a CharnnError naming the
        process that holds it."""
        self._guard("create", lambda: self.path.mkdir(parents=True, exist_ok=True))
        if fcntl is None:
            return
        lock = self._guard("write", lambda: open(self.path / LOCK, "a+"))
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise CharnnError(f"{self.path} is being written by another charnn process (pid "
                              f"{holder}); wait for it to finish, or stop it (kill {holder}) "
                              "and then resume") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        self._lock_file = lock

    def release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()                  # closing the file releases the lock
            self._lock_file = None

    # -- starting and resuming ---------------------------------------------------------------

    def start(self, config_doc: dict) -> None:
        """A new run: config.json, a log with its header, no samples."""
        self.remove_leftovers()
        header = io.StringIO()
        csv.DictWriter(header, LOG_FIELDS).writeheader()
        self._guard("write", lambda: (
            write_atomically(self.path / CONFIG, json.dumps(config_doc, indent=2) + "\n"),
            write_atomically(self.path / LOG, header.getvalue()),
            write_atomically(self.path / SAMPLES_JSONL, ""),
            write_atomically(self.path / SAMPLES_TXT, "")))

    def write_config(self, config_doc: dict) -> None:
        """config.json anew (a time-limited run fixes its length after it starts)."""
        self._guard("write", lambda: write_atomically(
            self.path / CONFIG, json.dumps(config_doc, indent=2) + "\n"))

    def resume(self, iteration: int, config_doc: dict) -> None:
        """A resumed run: the log and the samples cut back to the checkpoint's iteration (what
        was written after it is written again, identically, by the resumed run)."""
        self.remove_leftovers()
        rows = self.read_log(upto=iteration)
        samples = [s for s in self.read_samples() if s["iteration"] <= iteration]
        out = io.StringIO()
        writer = csv.DictWriter(out, LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        self._guard("write", lambda: (
            write_atomically(self.path / CONFIG, json.dumps(config_doc, indent=2) + "\n"),
            write_atomically(self.path / LOG, out.getvalue()),
            write_atomically(self.path / SAMPLES_JSONL,
                             "".join(json.dumps(s) + "\n" for s in samples)),
            write_atomically(self.path / SAMPLES_TXT,
                             "".join(sample_block(**s) + "\n\n" for s in samples))))

    def remove_leftovers(self) -> None:
        """Temporary files of saves that a kill interrupted (never a finished file)."""
        for leftover in self.path.glob(".*.tmp"):
            if leftover.name.startswith((f".{LATEST}.", f".{BEST}.", f".{LOG}.", f".{CONFIG}.",
                                         f".{SAMPLES_TXT}.", f".{SAMPLES_JSONL}.")):
                leftover.unlink(missing_ok=True)

    # -- appending ---------------------------------------------------------------------------

    def append_log(self, row: dict) -> None:
        def write():
            with open(self.path / LOG, "a", newline="") as f:
                csv.DictWriter(f, LOG_FIELDS).writerow(row)
        self._guard("write", write)

    def append_sample(self, iteration: int, epoch: int, smooth_loss: float, text: str) -> None:
        record = {"iteration": iteration, "epoch": epoch, "smooth_loss": smooth_loss,
                  "text": text}

        def write():
            with open(self.path / SAMPLES_JSONL, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            with open(self.path / SAMPLES_TXT, "a", encoding="utf-8") as f:
                f.write(sample_block(**record) + "\n\n")
        self._guard("write", write)

    # -- reading -----------------------------------------------------------------------------

    def read_log(self, upto: int | None = None) -> list[dict]:
        """log.csv's rows (all, or those up to iteration `upto`); a damaged file is named."""
        path = self.path / LOG
        if not path.exists():
            return []
        rows = []
        try:
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                text = text[:text.rfind("\n") + 1]      # a row cut short by a kill: dropped
            reader = csv.DictReader(io.StringIO(text, newline=""))
            if reader.fieldnames is None:
                return []
            if tuple(reader.fieldnames) != LOG_FIELDS:
                raise ValueError("its header is not charnn's")
            for line, row in enumerate(reader, start=2):
                if None in row or None in row.values():
                    raise ValueError(f"row {line} has the wrong number of fields")
                try:
                    iteration = int(row["iteration"])
                    for key in ("loss", "smooth_loss", "val_loss", "val_bpc", "elapsed"):
                        if row[key]:
                            float(row[key])
                except ValueError:
                    raise ValueError(f"row {line} is not numbers") from None
                if upto is None or iteration <= upto:
                    rows.append(row)
        except OSError as exc:
            raise CharnnError(f"cannot read {path} ({exc.strerror or exc}); check its "
                              "permissions") from None
        except (ValueError, UnicodeDecodeError, csv.Error) as exc:
            raise CharnnError(f"{path} is damaged ({exc}); repair it, or move it aside to "
                              "go on without the old rows") from None
        return rows

    def read_samples(self) -> list[dict]:
        """The sample blocks as records: from samples.jsonl, or parsed from samples.txt for
        runs written before samples were kept as data."""
        jsonl = self.path / SAMPLES_JSONL
        if jsonl.exists():
            samples = []
            for line in jsonl.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    samples.append({"iteration": int(record["iteration"]),
                                    "epoch": int(record["epoch"]),
                                    "smooth_loss": float(record["smooth_loss"]),
                                    "text": str(record["text"])})
                except (ValueError, KeyError, TypeError):
                    continue                          # a line cut short by a kill
            return samples
        txt = self.path / SAMPLES_TXT
        return parse_sample_blocks(txt.read_text(encoding="utf-8")) if txt.exists() else []

    # -- errors ------------------------------------------------------------------------------

    def _guard(self, verb: str, action):
        try:
            return action()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise CharnnError(f"cannot {verb} the run folder {self.path} ({reason}); free some "
                              "disk space, fix its permissions, or give another --out") from None


def parse_sample_blocks(text: str) -> list[dict]:
    """The blocks of a samples.txt: `iter N , epoch E , smooth loss L`, a newline, the sample,
    a blank line. A header counts only at the file's start or after a blank line."""
    heads = [m for m in _SAMPLE_HEADER.finditer(text)
             if m.start() == 0 or text[:m.start()].endswith("\n\n")]
    blocks = []
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        body = text[m.end():end]
        body = body[:-2] if body.endswith("\n\n") else body.rstrip("\n")
        try:
            loss = float(m.group(3))
        except ValueError:
            loss = float("nan")
        blocks.append({"iteration": int(m.group(1)), "epoch": int(m.group(2)),
                       "smooth_loss": loss, "text": body})
    return blocks
