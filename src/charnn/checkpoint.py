"""Checkpoints: one .npz file of plain arrays (loaded with allow_pickle=False, so loading
runs no code) whose entry "meta" holds a JSON document: format name and version, the
config, the vocabulary, the corpus, and the training counters and RNG state.

Writes are atomic: the file is written beside its destination under a temporary name,
flushed to disk, then renamed over it, so a failed or interrupted save leaves the last
good checkpoint in place.

Loading checks the whole file before any of it reaches a kernel (a compiled kernel trusts
the shapes it is given, so one wrong array would make it read or write out of bounds).
Every problem becomes one CharnnError that names the file, the problem and what to do:

- the file: a regular file (a FIFO or a device is refused before it is opened) holding a
  zip archive (a text or any other file is named as not a checkpoint). Every array's .npy
  header is read from its member first; its dtype and shape are checked (and its entry's
  size against them, and all of them together against the memory available) before any of
  its data is inflated, so a small file that declares a huge array is refused unread.
- meta: a JSON object; format "charnn-checkpoint"; version a whole number from 1 to
  FORMAT_VERSION (a newer one asks for a newer charnn; 0, negative or not a whole number is
  corruption). Keys this charnn does not know are allowed (meta may grow).
- config: an object holding every setting format 1 wrote (settings added to TrainConfig
  later may be missing and take their defaults), each of its TrainConfig type, and passing
  TrainConfig.validate.
- network (in files written since it was added; older files are the network their config
  names): the network's spec (networks.Network.to_dict), the one the config and vocabulary
  make.
- vocab: a non-empty string (or list of one-character strings) of distinct characters, none
  of them a lone surrogate (no text gives one, and no output can print it).
- state: every training counter, of its type: whole numbers at least 0 (epoch at least 1,
  best_iteration at most iteration); smooth_loss finite; best_value finite, or +inf before
  the run found a best; elapsed finite and at least 0; last_val null or finite and at
  least 0.
- sample_rng: a numpy PCG64 state that numpy accepts; corpus: an object with the facts
  resume uses (name, source, sha256; encoding, K, chars, records when present).
- arrays: exactly param_<name> for every parameter of the network (its spec's names and
  shapes: W_ih0, W_hh0, b_ih0, V, c for the vanilla RNN of one layer, the assignment's U, W,
  b; files before version 3 name it b, c, U, W, V), opt_<slot>_<name> for the slots of the
  config's optimiser (optim.STATE_SLOTS), h and meta; any other array is refused, since the
  arrays are what the kernels read and an unknown one means the file is not what it claims.
  Each optimiser array has its parameter's shape, h (batch_size, layers, S, m) (before
  version 3 the vanilla RNN's was (batch_size, m)), with m = config hidden and K =
  len(vocab). All of the config's dtype (float32 or float64) and finite; AdaGrad's and
  RMSProp's m and Adam's v at least 0; the weights at most MAX_WEIGHT in magnitude; every
  layer's h within [-1, 1]. Arrays come back C-contiguous, in native byte order.

A checkpoint must hold everything charnn train writes, optimiser state and h included,
even when it is loaded only to sample or evaluate: every file charnn writes has them, so a
file without them is damaged, and one rule for every use means a file that samples also
resumes.
"""

from __future__ import annotations

import json
import math
import os
import stat
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .config import LARGEST_WHOLE, TrainConfig
from .errors import CharnnError
from .memory import describe, limit_note, memory_available
from .model import Params
from .networks import Network
from .optim import STATE_SLOTS

FORMAT = "charnn-checkpoint"
# 1: the vanilla RNN (b, c, U, W, V; h (B, m)). 2: the network is named in the config (model,
# layers; rnn when absent), its arrays are that network's (networks/), h (B, layers, S, m) for
# a stacked one; the vanilla RNN keeps version 1's names and h. Version 1 files read as version
# 2 files of the vanilla RNN. Files written since version 2 hold the network's spec
# (networks.Network.to_dict) as meta["network"] too; one without it is the network its config
# names. 3: the vanilla RNN is a cell like the others: its arrays are W_ih{l}, W_hh{l}, b_ih{l},
# V, c and h (B, layers, 1, m); an older file of it reads with its names and h translated
# (_as_cell_arrays).
FORMAT_VERSION = 3
LATEST = "latest.npz"
BEST = "best.npz"

# The settings every checkpoint of format 1 holds; settings TrainConfig gains later may be
# missing from older files and take their defaults.
FORMAT1_CONFIG = ("hidden", "sigma", "dtype", "optimizer", "eta", "clip", "seq_length",
                  "batch_size", "epochs", "updates", "order", "chunk_length", "val_frac",
                  "records", "record_separator", "sample_every", "sample_length", "log_every",
                  "eval_every", "checkpoint_every", "seed", "backend")
# The training counters (train.TrainState) and what each may hold.
STATE_WHOLE = ("opt_step", "iteration", "epoch", "position", "best_iteration")
STATE_REAL = ("smooth_loss", "best_value", "elapsed", "last_val")
# Optimiser state that sums squares, so it is never negative.
NON_NEGATIVE_SLOTS = {("adagrad", "m"), ("rmsprop", "m"), ("adam", "v")}
# The largest weight a checkpoint may hold. Training moves a weight by about eta per update
# (the gradients are clipped), so no run comes near it; below it, with at most a million units
# (config.WHOLE_LIMITS), the logits stay under 1e21 and o / T under 1e24 at the lowest
# temperature, far inside float32's 3e38, so sampling and beam search never overflow.
MAX_WEIGHT = 1e15


@dataclass
class Checkpoint:
    params: Params
    meta: dict                                    # config, vocab, corpus, counters, rng ...
    opt_state: dict[str, np.ndarray] = field(default_factory=dict)
    h: np.ndarray | None = None                   # every lane's state, (B,) + state_shape

    @property
    def network(self) -> Network:
        """The network these parameters are: the spec the file states, or, in a file written
        before files stated it, the one its config names, for its vocabulary."""
        return network_of_meta(self.meta)


def network_of_meta(meta: dict) -> Network:
    """The network a checkpoint's meta states (meta["network"]), or the one its config and
    vocabulary make."""
    if "network" in meta:
        return Network.from_dict(meta["network"])
    return Network.from_config(meta["config"], len(meta["vocab"]))


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


def _require_regular_file(path: Path) -> None:
    """Refuse what is not a regular file before opening it: opening a FIFO waits forever for
    a writer, and a device can be read forever."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise CharnnError(f"cannot read {path} ({exc.strerror}); check the path") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a pipe (FIFO)" if stat.S_ISFIFO(mode) \
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"
        raise CharnnError(f"{path} is {kind}, not a checkpoint file; give a run folder or a "
                          ".npz file written by charnn train")


def load_checkpoint(source: str | Path, prefer: str = LATEST) -> Checkpoint:
    """Load a checkpoint file, or the checkpoint named `prefer` of a run folder, checked
    whole (see the module's docstring); a damaged file raises a one-line CharnnError."""
    path = resolve_checkpoint_path(source, prefer)
    with _open_archive(path) as archive:
        arrays = _members(path, archive)
        meta = _read_meta(path, arrays.pop("meta", None))
        try:
            return _checked(_Checker(path), meta, arrays)
        except CharnnError:
            raise
        except Exception as exc:        # damage no rule foresaw: still one line, not a trace
            raise CharnnError(f"{path} is corrupt ({type(exc).__name__}: {_show(str(exc))}); "
                              f"{_another(path)}") from None


# -- reading ----------------------------------------------------------------------------------

def _another(path: Path) -> str:
    other = LATEST if path.name == BEST else BEST
    return f"use another checkpoint, such as the run's {other}"


def _show(value) -> str:
    """A value of the metadata as JSON writes it, cut short: the file is not to be trusted."""
    try:
        return _cut(json.dumps(value))
    except (TypeError, ValueError):
        return type(value).__name__


def _cut(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# A checkpoint is a zip archive (.npz); a bare .npy array starts with its own magic.
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")      # the first member, or an empty archive
_NPY_MAGIC = b"\x93NUMPY"
# The metadata is JSON: the settings, the vocabulary (all of Unicode, written out as \u
# escapes, is 13 MB) and the counters.
MAX_META_BYTES = 64 << 20


class _Member:
    """An array of the archive, known by its .npy header until its data is read: its shape
    and dtype are checked before any of its data is inflated, so that a small file that
    declares a huge array (a zip bomb) is refused unread."""

    def __init__(self, path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo,
                 shape: tuple, dtype: np.dtype):
        self.path, self.archive, self.info = path, archive, info
        self.shape, self.dtype = shape, dtype

    def read(self) -> np.ndarray:
        try:
            with self.archive.open(self.info) as f:
                return np.lib.format.read_array(f, allow_pickle=False)
        except Exception as exc:
            raise CharnnError(f"{self.path} is not a readable checkpoint (corrupt or truncated: "
                              f"{type(exc).__name__}); {_another(self.path)}") from None


def _open_archive(path: Path) -> zipfile.ZipFile:
    """The checkpoint's zip archive, opened after checking that it is one: a text, a bare
    array or any other file is named for what it is, not misread."""
    _require_regular_file(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
        if head.startswith(_NPY_MAGIC):
            raise CharnnError(f"{path} is not a charnn checkpoint (it holds one bare array, "
                              "not an archive); give a file written by charnn train")
        if head[:4] not in _ZIP_MAGIC:
            raise CharnnError(f"{path} is not a charnn checkpoint (not a .npz archive: "
                              f"{'it is empty' if not head else 'it does not start as one'}); "
                              "give a file written by charnn train")
        return zipfile.ZipFile(path)
    except CharnnError:
        raise
    except (PermissionError, IsADirectoryError) as exc:
        raise CharnnError(f"cannot read {path} ({exc.strerror}); check its permissions") from None
    except Exception as exc:
        raise CharnnError(f"{path} is not a readable checkpoint (corrupt or truncated: "
                          f"{type(exc).__name__}); {_another(path)}") from None


def _members(path: Path, archive: zipfile.ZipFile) -> dict[str, _Member]:
    """The archive's arrays by name (as numpy.load names them), from their headers alone."""
    members, total = {}, 0
    try:
        for info in archive.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            with archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"npy format {version}")
                header = f.tell()
            if dtype.hasobject:
                raise CharnnError(f"{path} holds Python objects ({name}), which charnn never "
                                  "writes and does not load (loading them could run code); "
                                  f"{_another(path)}")
            size = math.prod(shape) * dtype.itemsize
            if info.file_size != header + size:
                raise CharnnError(f"{path} is corrupt: its array {_cut(name)} declares "
                                  f"{size:,} bytes of data but holds {info.file_size - header:,}"
                                  f"; {_another(path)}")
            members[name] = _Member(path, archive, info, tuple(shape), dtype)
            total += size
    except CharnnError:
        raise
    except Exception as exc:
        raise CharnnError(f"{path} is not a readable checkpoint (corrupt or truncated: "
                          f"{type(exc).__name__}); {_another(path)}") from None
    # every array is checked against the settings before it is read; this refuses, before
    # then, a file that could not be held at all
    available = memory_available()
    if available and total > available:
        raise CharnnError(f"{path} declares {describe(total)} of arrays, more than the "
                          f"{describe(available)} of memory available{limit_note()}; "
                          f"{_another(path)}")
    return members


def _read_meta(path: Path, member: _Member | None) -> dict:
    if member is None:
        raise CharnnError(f"{path} is not a charnn checkpoint (no metadata); give a file "
                          "written by charnn train")
    if member.dtype != np.uint8 or len(member.shape) != 1 or member.shape[0] > MAX_META_BYTES:
        raise CharnnError(f"{path} has corrupt metadata (not JSON text of at most "
                          f"{describe(MAX_META_BYTES)}); {_another(path)}")
    raw = member.read()
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except Exception:
        raise CharnnError(f"{path} has corrupt metadata (not JSON text); "
                          f"{_another(path)}") from None
    if not isinstance(meta, dict):
        raise CharnnError(f"{path} has corrupt metadata (a JSON {type(meta).__name__}, not "
                          f"an object); {_another(path)}")
    if meta.get("format") != FORMAT:
        raise CharnnError(f"{path} is not a charnn checkpoint (format {_show(meta.get('format'))}"
                          "); give a file written by charnn train")
    version = meta.get("version")
    if not _whole(version) or version < 1:
        raise CharnnError(f"{path} has checkpoint format version {_show(version)}, which no "
                          f"charnn writes: the file is corrupt; {_another(path)}")
    if version > FORMAT_VERSION:
        raise CharnnError(f"{path} has checkpoint format {_show(version)}, newer than this "
                          f"charnn reads ({FORMAT_VERSION}); upgrade charnn (pip install -U charnn)")
    return meta


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- checking ---------------------------------------------------------------------------------

class _Checker:
    def __init__(self, path: Path):
        self.path = path

    def fail(self, problem: str, fix: str | None = None):
        raise CharnnError(f"{self.path}: {problem}; {fix or _another(self.path)}")

    def need(self, ok: bool, problem: str, fix: str | None = None):
        if not ok:
            self.fail(problem, fix)


def _checked(c: _Checker, meta: dict, arrays: dict[str, _Member]) -> Checkpoint:
    config = _check_config(c, meta.get("config"))
    meta["vocab"] = vocab = _check_vocab(c, meta.get("vocab"))
    K, B = len(vocab), config.batch_size
    dtype = np.dtype(config.dtype)
    network = Network.from_config(config, K)
    if meta["version"] < 3 and network.assignment:     # the assignment's names, h (B, m)
        arrays = _as_cell_arrays(arrays)
    shapes = network.param_shapes()
    names = tuple(shapes)
    why = (f"hidden size {network.hidden} and {network.layers} "
           f"layer{'s' if network.layers > 1 else ''} of the {network.title} (config) and {K} "
           "characters (vocabulary) make it")
    state = network.state_shape

    slots = STATE_SLOTS[config.optimizer]
    wanted = {f"opt_{slot}_{name}" for slot in slots for name in names}
    unknown = sorted(k for k in arrays if k not in wanted and k != "h"
                     and k not in {f"param_{n}" for n in names})
    found_slots = {k.split("_")[1] for k in arrays if k.startswith("opt_") and k.count("_") == 2}
    others = [o for o, s in STATE_SLOTS.items() if set(s) == found_slots]
    if found_slots != set(slots) and others:
        c.fail(f"its config names the optimiser {config.optimizer}, but its optimiser state "
               f"is {' or '.join(others)}'s ({', '.join(sorted(found_slots))}): the optimiser "
               "was switched after it was saved")
    c.need(not unknown, f"it holds arrays no charnn checkpoint has ({_cut(', '.join(unknown))})")

    params = {}
    for name in names:
        key = f"param_{name}"
        c.need(key in arrays, f"the model's {name} ({key}) is missing")
        a = _check_array(c, key, arrays[key], shapes[name], dtype, why)
        bad = _non_finite(a)
        c.need(not bad, f"the model's {name} holds {bad}: the model diverged before this "
                        "checkpoint was saved", "use an earlier checkpoint or train again with "
                                                "a lower --eta")
        c.need(not (np.abs(a) > MAX_WEIGHT).any(),
               f"the model's {name} holds weights of magnitude {float(np.abs(a).max()):.3g}, "
               f"past any a run reaches ({MAX_WEIGHT:g}), where its outputs would overflow",
               "use an earlier checkpoint or train again with a lower --eta")
        params[name] = a

    opt_state = {}
    for slot in slots:
        for name in names:
            key = f"opt_{slot}_{name}"
            c.need(key in arrays, f"the {config.optimizer} optimiser state {key} is missing")
            a = _check_array(c, key, arrays[key], shapes[name], dtype, f"the model's {name} is")
            bad = _non_finite(a)
            c.need(not bad, f"the optimiser state {key} holds {bad}: training diverged "
                            "before this checkpoint was saved")
            c.need((config.optimizer, slot) not in NON_NEGATIVE_SLOTS or not (a < 0).any(),
                   f"the optimiser state {key} holds negative values, which "
                   f"{config.optimizer}'s running sum of squared gradients never has")
            opt_state[f"{slot}_{name}"] = a

    c.need("h" in arrays, "the hidden state h is missing")
    h = _check_array(c, "h", arrays["h"], (B,) + state, dtype,
                     f"batch size {B} and hidden size {network.hidden} of "
                     f"{network.describe()} (config) make it")
    bad = _non_finite(h)
    c.need(not bad, f"the hidden state h holds {bad}")
    outputs = network.hidden_of(h)                       # h itself; an LSTM's cell is free
    # tanh's range, give or take the rounding of the compiled float32 tanh (a few ulp)
    bound = 1 + 8 * np.finfo(dtype).eps
    c.need(not (np.abs(outputs) > bound).any(), "the hidden state h holds values outside [-1, 1], "
                                            "which tanh never gives")

    _check_stated_network(c, meta, network)
    _check_state(c, meta.get("state"))
    _check_rng(c, meta.get("sample_rng"))
    _check_corpus(c, meta.get("corpus"), K)
    return Checkpoint(params=Params(params).carrying(network), meta=meta, opt_state=opt_state,
                      h=h)


class _Reshaped:
    """A member read in another shape (the same elements)."""

    def __init__(self, member: _Member, shape: tuple):
        self.member, self.shape, self.dtype = member, shape, member.dtype

    def read(self) -> np.ndarray:
        return self.member.read().reshape(self.shape)


def _as_cell_arrays(arrays: dict) -> dict:
    """A vanilla RNN's arrays as files before version 3 name them (the assignment's b, c, U, W,
    V, model.py; h (B, m)), as the RNN cell's of one layer (W_ih0, W_hh0, b_ih0, V, c; h (B, 1,
    1, m)). An array the rules do not know keeps its name, for the checks to refuse."""
    from .model import NETWORK_NAMES
    out = {}
    for key, member in arrays.items():
        kind, _, name = key.rpartition("_")
        if name in NETWORK_NAMES and kind in ("param", *(f"opt_{s}" for s in ("m", "v"))):
            key = f"{kind}_{NETWORK_NAMES[name]}"
        elif key == "h" and len(member.shape) == 2:
            B, m = member.shape
            member = _Reshaped(member, (B, 1, 1, m))
        out[key] = member
    return out


def _check_stated_network(c: _Checker, meta: dict, made: Network) -> None:
    """A file that states its network (files written since the spec was) states the one its
    config and vocabulary make, which its arrays have been checked against."""
    if "network" in meta:
        try:
            stated = Network.from_dict(meta["network"])
        except (TypeError, ValueError) as exc:
            c.fail(f"its network {_show(meta['network'])} is not one charnn writes ({exc})")
        c.need(stated == made, f"it states its network is {stated.summary()}, but its config "
                               f"and vocabulary make {made.summary()}")


def _check_array(c: _Checker, key: str, member: _Member, shape: tuple, dtype: np.dtype,
                 why: str) -> np.ndarray:
    """The member's data, read once its header's dtype and shape are the expected ones."""
    found = member.dtype
    if found.kind == "f" and found.newbyteorder("=") == dtype:
        found = dtype                                    # read, then made native below
    if found != dtype:
        what = {"f": f"{found.name} numbers", "i": f"whole numbers ({found.name})",
                "u": f"whole numbers ({found.name})", "b": "booleans", "c": "complex numbers",
                "U": "text", "S": "bytes", "O": "objects"}.get(found.kind, str(found))
        c.fail(f"{key} holds {what}, but its config's dtype is {dtype.name}")
    c.need(member.shape == shape, f"{key} has shape {member.shape}, but {why} {shape}")
    a = member.read()
    c.need(a.shape == shape, f"{key} has shape {a.shape}, but {why} {shape}")
    return np.ascontiguousarray(a.astype(dtype, copy=False))


def _non_finite(a: np.ndarray) -> str:
    if np.isfinite(a).all():
        return ""
    return "NaN" if np.isnan(a).any() else "infinity"


def _annotation_types(annotation: str) -> tuple[type, ...]:
    names = {"int": int, "float": float, "str": str, "bool": bool, "None": type(None)}
    return tuple(names[t.strip()] for t in str(annotation).split("|") if t.strip() in names)


def _check_config(c: _Checker, config) -> TrainConfig:
    c.need(isinstance(config, dict), f"its config is {_show(config)}, not an object of settings")
    known = {f.name: _annotation_types(f.type) for f in fields(TrainConfig)}
    for name in FORMAT1_CONFIG:
        c.need(name not in known or name in config, f"its config lacks the setting {name!r}")
    for name, value in config.items():
        types = known.get(name)
        if not types:
            continue                                     # unknown settings are ignored
        if isinstance(value, bool):
            ok = bool in types
        elif _whole(value):
            ok = (int in types or float in types) and abs(value) < LARGEST_WHOLE
        else:
            ok = isinstance(value, tuple(t for t in types if t not in (int, bool)))
        if not ok:
            kinds = " or ".join({int: "a whole number", float: "a number", str: "text",
                                 bool: "true or false", type(None): "null"}[t] for t in types)
            c.fail(f"its config's {name} is {_show(value)}, where {kinds} belongs")
    try:
        return TrainConfig.from_dict(config).validate()
    except CharnnError as exc:
        c.fail(f"its config holds an impossible setting ({str(exc).split(';')[0]})")


def _check_vocab(c: _Checker, vocab) -> str:
    if isinstance(vocab, list) and all(isinstance(ch, str) and len(ch) == 1 for ch in vocab):
        vocab = "".join(vocab)
    c.need(isinstance(vocab, str), f"its vocabulary is {_show(vocab)}, not a string of characters")
    c.need(len(vocab) > 0, "its vocabulary is empty")
    lone = next((ch for ch in vocab if "\ud800" <= ch <= "\udfff"), None)
    c.need(lone is None, f"its vocabulary holds {lone!r}, half of a UTF-16 surrogate pair and "
                         "no character, which no text gives and no terminal can print")
    seen = set()
    for ch in vocab:
        c.need(ch not in seen, f"its vocabulary holds {ch!r} twice")
        seen.add(ch)
    return vocab


def _check_state(c: _Checker, state) -> None:
    c.need(isinstance(state, dict), f"its training state is {_show(state)}, not an object "
                                    "of counters")
    for name in STATE_WHOLE + STATE_REAL:
        c.need(name in state, f"its training state lacks the counter {name!r}")
    for name in STATE_WHOLE:
        value, least = state[name], 1 if name == "epoch" else 0
        c.need(_whole(value) and least <= value < LARGEST_WHOLE,
               f"its training state's {name} is {_show(value)}, where a whole number of at "
               f"least {least} belongs")
    c.need(state["best_iteration"] <= state["iteration"],
           f"its training state's best_iteration ({state['best_iteration']}) is after its "
           f"iteration ({state['iteration']})")
    rules = {"smooth_loss": (lambda v: math.isfinite(v), "a finite number"),
             "best_value": (lambda v: math.isfinite(v) or v == math.inf,
                            "a finite number (or Infinity before the first best)"),
             "elapsed": (lambda v: math.isfinite(v) and v >= 0, "a finite number of at least 0"),
             "last_val": (lambda v: math.isfinite(v) and v >= 0,
                          "null or a finite number of at least 0")}
    for name in STATE_REAL:
        value = state[name]
        if value is None and name == "last_val":
            continue
        test, kind = rules[name]
        c.need(_real(value) and test(float(value)),
               f"its training state's {name} is {_show(value)}, where {kind} belongs")
        state[name] = float(value)


def _check_rng(c: _Checker, rng_state) -> None:
    problem = "its sampling RNG state (sample_rng) is not a PCG64 state numpy accepts"
    c.need(isinstance(rng_state, dict), f"{problem} ({_show(rng_state)})")
    c.need(rng_state.get("bit_generator") == "PCG64",
           f"{problem} (its bit_generator is {_show(rng_state.get('bit_generator'))})")
    inner = rng_state.get("state")
    c.need(isinstance(inner, dict) and all(_whole(inner.get(k)) and 0 <= inner[k] < 2 ** 128
                                           for k in ("state", "inc")),
           f"{problem} (its state is {_show(inner)})")
    c.need(rng_state.get("has_uint32") in (0, 1) and _whole(rng_state.get("has_uint32"))
           and _whole(rng_state.get("uinteger")) and 0 <= rng_state["uinteger"] < 2 ** 32,
           f"{problem} (has_uint32 {_show(rng_state.get('has_uint32'))}, uinteger "
           f"{_show(rng_state.get('uinteger'))})")
    try:
        np.random.Generator(np.random.PCG64()).bit_generator.state = rng_state
    except Exception as exc:
        c.fail(f"{problem} ({type(exc).__name__}: {_cut(str(exc))})")


def _check_corpus(c: _Checker, corpus, K: int) -> None:
    c.need(isinstance(corpus, dict), f"its corpus facts are {_show(corpus)}, not an object")
    for key, types, kind in (("name", (str,), "text"), ("source", (str, type(None)), "text or null"),
                             ("sha256", (str,), "text")):
        c.need(key in corpus, f"its corpus facts lack {key!r}")
        c.need(isinstance(corpus[key], types),
               f"its corpus {key} is {_show(corpus[key])}, where {kind} belongs")
    c.need("encoding" not in corpus or isinstance(corpus["encoding"], str),
           f"its corpus encoding is {_show(corpus.get('encoding'))}, where text belongs")
    c.need("K" not in corpus or (_whole(corpus["K"]) and corpus["K"] == K),
           f"its corpus facts give K = {_show(corpus.get('K'))}, but its vocabulary has {K} "
           "characters")
    for key in ("chars", "records"):
        value = corpus.get(key)
        c.need(value is None or (_whole(value) and value >= 0),
               f"its corpus {key} is {_show(value)}, where a whole number belongs")
