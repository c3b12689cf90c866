"""The run folders a server shows, found once by name: a request names a run, never a path.

A run is known by its folder's name (made unique with a suffix when two folders share one).
Requests are looked up in that table, so no request can reach a file outside the run folders
the server was given; the files read are the fixed names below, inside those folders.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import BEST, LATEST
from ..errors import CharnnError
from ..networks import Network
from ..run_folder import CONFIG, LOCK, SAMPLES_JSONL, RunFolder

try:
    import fcntl
except ImportError:                                  # pragma: no cover
    fcntl = None


class UnknownRun(CharnnError):
    pass


@dataclass
class Run:
    name: str
    path: Path

    def config_doc(self) -> dict:
        try:
            return json.loads((self.path / CONFIG).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def log(self) -> list[dict]:
        try:
            return RunFolder(self.path).read_log()
        except CharnnError as exc:
            raise CharnnError(f"run {self.name!r}: {self.without_path(str(exc))}") from None

    def without_path(self, message: str) -> str:
        """The message with this run's folder left out: files are named by their name alone,
        the folder by the run's name (a client is not to learn where the runs live)."""
        folder = str(self.path)
        return message.replace(folder + os.sep, "").replace(folder, f"run {self.name!r}")

    def samples(self) -> list[dict]:
        if not (self.path / SAMPLES_JSONL).exists():
            return []
        return RunFolder(self.path).read_samples()

    def checkpoint_file(self) -> Path | None:
        for name in (BEST, LATEST):
            if (self.path / name).exists():
                return self.path / name
        return None

    def is_training(self) -> bool:
        """Whether a charnn process holds the folder's lock now (that is, trains into it)."""
        lock = self.path / LOCK
        if fcntl is None or not lock.exists():
            return False
        try:
            with open(lock) as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            return False
        except OSError:
            return True

    def summary(self) -> dict:
        doc = self.config_doc()
        config, corpus = doc.get("config", {}), doc.get("corpus", {})
        try:
            rows = self.log()
            log_error = None
        except CharnnError as exc:
            rows, log_error = [], str(exc)
        train_rows = [r for r in rows if r["loss"]]
        val_rows = [r for r in rows if r["val_bpc"]]
        best_val = min((v for r in val_rows if (v := _number(r["val_bpc"])) is not None),
                       default=None)
        network = _network(config, doc.get("K", corpus.get("K")))
        return {
            "name": self.name,
            "network": network.summary() if network else "?",
            "settings": _settings(network, config),
            "corpus": corpus.get("name"),
            "iteration": int(rows[-1]["iteration"]) if rows else 0,
            "total_updates": doc.get("total_updates"),
            "latest_loss": _number(train_rows[-1]["smooth_loss"]) if train_rows else None,
            "best_loss": min((v for r in train_rows if (v := _number(r["smooth_loss"]))
                              is not None), default=None),
            "val_bpc": _number(val_rows[-1]["val_bpc"]) if val_rows else None,
            "best_val_bpc": best_val,
            "training": self.is_training(),
            "has_checkpoint": self.checkpoint_file() is not None,
            "log_error": log_error,
        }


def _network(config: dict, K) -> Network | None:
    """The network a run's config.json states (its config names the model: a run written
    before the model was a setting is the vanilla RNN); None when it names none that
    exists."""
    try:
        network = Network.from_config(config, K if isinstance(K, int) else None).check()
    except (TypeError, ValueError):
        return None
    return network if "hidden" in config else None


def _settings(network: Network | None, config: dict) -> dict:
    """The settings line: the network first (cell, layers, hidden size, dropout when there
    is any), then how it trains."""
    settings = {} if network is None else {
        "model": network.cell, "layers": network.layers, "hidden": network.hidden,
        **({"dropout": network.dropout} if network.dropout else {}),
        **({"output_dropout": network.output_dropout} if network.output_dropout else {})}
    settings.update({k: config.get(k) for k in ("seq_length", "batch_size", "optimizer", "eta",
                                                 "dtype", "order", "val_frac", "records")
                     if k in config})
    return settings


def _number(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG).is_file()


class RunTable:
    """The runs named on the command line, and the run folders inside --runs-dir (looked for
    again at every listing, so that a run started later appears)."""

    def __init__(self, runs: list[str | Path] = (), runs_dir: str | Path | None = "runs"):
        from ..bundled import resolve_model
        self.given = [resolve_model(r).resolve() for r in runs]
        for path in self.given:
            if not is_run_folder(path):
                raise CharnnError(f"{path} is not a run folder (it has no {CONFIG}); give a "
                                  "folder that `charnn train` wrote")
        self.runs_dir = Path(runs_dir).resolve() if runs_dir else None
        self._lock = threading.Lock()
        self._by_name: dict[str, Run] = {}
        self.refresh()

    def refresh(self) -> list[Run]:
        paths = list(self.given)
        if self.runs_dir is not None and self.runs_dir.is_dir():
            found = sorted((p for p in self.runs_dir.iterdir() if is_run_folder(p)),
                           key=lambda p: p.name)
            paths += [p.resolve() for p in found if p.resolve() not in paths]
        with self._lock:
            known = {run.path: run for run in self._by_name.values()}
            table: dict[str, Run] = {}
            for path in paths:
                run = known.get(path)
                if run is None:
                    name, n = path.name, 2
                    while name in table or name in self._by_name:
                        name, n = f"{path.name}-{n}", n + 1
                    run = Run(name, path)
                table[run.name] = run
            self._by_name = table
            return list(table.values())

    def without_paths(self, message: str) -> str:
        """The message with every run folder, and the runs folder, left out (see
        Run.without_path): the last guard before an error goes over HTTP."""
        with self._lock:
            runs = sorted(self._by_name.values(), key=lambda r: -len(str(r.path)))
        for run in runs:
            message = run.without_path(message)
        for folder in (self.runs_dir, Path.cwd(), Path.home()):
            if folder is not None and len(folder.parts) > 1:
                message = message.replace(str(folder) + os.sep, "").replace(str(folder),
                                                                             folder.name)
        return message

    def get(self, name: str) -> Run:
        with self._lock:
            run = self._by_name.get(name)
        if run is None:
            run = {r.name: r for r in self.refresh()}.get(name)
        if run is None:
            raise UnknownRun(f"no run named {name!r}; the runs are listed at /api/runs")
        return run
