"""Checkpoints: one .npz file of plain arrays (loaded with allow_pickle=False, so loading
runs no code) whose entry "meta" holds a JSON document: format name and version, the
config, the vocabulary, the corpus, and the training counters and RNG state.

Writes are atomic: the file is written beside its destination under a temporary name,
flushed to disk, then renamed over it, so a failed or interrupted save leaves the last
good checkpoint in place.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CharnnError
from .model import PARAM_NAMES, Params

FORMAT = "charnn-checkpoint"
FORMAT_VERSION = 1
LATEST = "latest.npz"
BEST = "best.npz"


@dataclass
class Checkpoint:
    params: Params
    meta: dict                                    # config, vocab, corpus, counters, rng ...
    opt_state: dict[str, np.ndarray] = field(default_factory=dict)
    h: np.ndarray | None = None                   # (B, m) hidden state of every lane


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> None:
    path = Path(path)
    meta = dict(ckpt.meta, format=FORMAT, version=FORMAT_VERSION)
    arrays = {f"param_{name}": a for name, a in ckpt.params.items()}
    arrays.update({f"opt_{key}": a for key, a in ckpt.opt_state.items()})
    if ckpt.h is not None:
        arrays["h"] = ckpt.h
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CharnnError(f"cannot save checkpoint {path} ({exc.strerror or exc}); "
                              "free some disk space or choose another --out folder") from None
        raise


def resolve_checkpoint_path(source: str | Path, prefer: str = LATEST) -> Path:
    """A checkpoint file as it is, or a run folder's checkpoint named `prefer` (LATEST to
    resume, BEST to sample), falling back to the other one."""
    path = Path(source)
    if path.is_dir():
        for name in dict.fromkeys((prefer, LATEST, BEST)):
            if (path / name).exists():
                return path / name
        raise CharnnError(f"{path} holds no checkpoint ({LATEST}); give a run folder that "
                          "training has written, or a checkpoint file")
    if not path.exists():
        raise CharnnError(f"{path}: no such checkpoint or run folder; check the path")
    return path


def load_checkpoint(source: str | Path, prefer: str = LATEST) -> Checkpoint:
    """Load a checkpoint file, or the checkpoint named `prefer` of a run folder."""
    path = resolve_checkpoint_path(source, prefer)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError) as exc:
        raise CharnnError(f"{path} is not a readable checkpoint (corrupt or truncated: "
                          f"{type(exc).__name__}); use another checkpoint, such as the run's "
                          f"{BEST}") from None
    if "meta" not in arrays:
        raise CharnnError(f"{path} is not a charnn checkpoint (no metadata); give a file "
                          "written by charnn train")
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CharnnError(f"{path} has corrupt metadata; use another checkpoint") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CharnnError(f"{path} is not a charnn checkpoint; give a file written by charnn train")
    version = meta.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CharnnError(f"{path} has checkpoint format {version}, newer than this charnn "
                          f"reads ({FORMAT_VERSION}); upgrade charnn (pip install -U charnn)")
    missing = [n for n in PARAM_NAMES if f"param_{n}" not in arrays]
    if missing or "vocab" not in meta or "config" not in meta:
        raise CharnnError(f"{path} is incomplete (missing {', '.join(missing) or 'metadata'}); "
                          "use another checkpoint")
    params = Params(**{n: arrays[f"param_{n}"] for n in PARAM_NAMES})
    m, K = params.W.shape[0], params.V.shape[0]
    expected = {"b": (m,), "c": (K,), "U": (m, K), "W": (m, m), "V": (K, m)}
    if any(getattr(params, n).shape != s for n, s in expected.items()) or len(meta["vocab"]) != K:
        raise CharnnError(f"{path} has parameters of inconsistent shapes; use another checkpoint")
    opt_state = {k[4:]: a for k, a in arrays.items() if k.startswith("opt_")}
    return Checkpoint(params=params, meta=meta, opt_state=opt_state, h=arrays.get("h"))

