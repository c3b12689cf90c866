"""Texts, their vocabulary, and the bundled Shakespeare corpus.

A corpus is a text encoded once into an array of character indices, uint8 when the
vocabulary has at most 256 characters and int32 otherwise. The vocabulary is the sorted set
of the text's characters (code point order, which is Python's string order), so the same
text always gives the same indices.

Encoding makes no Python object per character or per record: an ASCII text is worked on as
bytes (a 256-entry table maps each byte to its index), any other text is decoded in bounded
chunks into arrays of code points. Records are framed in two passes over the text (its
bytes, or its chunks decoded again), so that only the framed array, its offsets and one flag
per record are ever held whole. The encoded array of a large text is cached on disk, keyed
by the hash of the file's bytes, the encoding and the record settings, so that a later run
memory-maps it instead of encoding again.
"""

from __future__ import annotations

import codecs
import encodings
import hashlib
import json
import lzma
import os
import re
import stat
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import CharnnError
from .paths import cache_dir

BUNDLED = "shakespeare"
# Marks the start and the end of a record in record corpora (ASCII "record separator").
END_OF_RECORD = "\x1e"

_BUNDLED_FILE = "corpora/shakespeare.txt.xz"   # made by scripts/build_corpus.py
_READ = 1 << 22                  # bytes (or characters) handled at a time
_UNICODE = 0x110000
# Codecs that read an ASCII-only file as those same characters, one per byte.
_ASCII_CODECS = {"utf-8", "utf-8-sig", "ascii", "latin-1", "iso8859-1", "iso8859-15", "cp1252"}
# Python's codecs that are text encodings in name only: "undefined" refuses every input,
# and "idna" and "punycode" read internet domain names (their decoders split at dots, refuse
# labels longer than 63 characters and lower-case them), not files.
_NOT_FOR_FILES = {"undefined", "idna", "punycode"}
_SURROGATES = re.compile("[\ud800-\udfff]")

# The on-disk cache of encoded texts: texts of at least CACHE_MIN_BYTES bytes, the
# CACHE_KEEP most recently used. CACHE_FORMAT changes whenever the files' meaning does.
CACHE_MIN_BYTES = 16 << 20
CACHE_KEEP = 8
CACHE_FORMAT = 1


class Vocabulary:
    """The characters a model knows, with char -> index and index -> char maps."""

    def __init__(self, chars):
        self.chars = "".join(chars)
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("vocabulary characters must be distinct")
        self.index = {ch: i for i, ch in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> "Vocabulary":
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.chars == other.chars

    def __contains__(self, ch: str) -> bool:
        return ch in self.index

    @property
    def dtype(self) -> np.dtype:
        """The smallest integer type that holds every index: uint8 for K <= 256, else int32."""
        return _index_dtype(len(self))

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of `text` this vocabulary does not hold, in order of appearance."""
        return list(dict.fromkeys(ch for ch in text if ch not in self.index))

    def encode(self, text: str) -> np.ndarray:
        missing = self.unknown(text)
        if missing:
            shown = "".join(missing[:10])
            raise CharnnError(f"characters {shown!r} are not in the model's vocabulary of "
                              f"{len(self)}; use only characters of the training text")
        table = self.index
        return np.fromiter((table[ch] for ch in text), dtype=np.int32, count=len(text))

    def decode(self, indices) -> str:
        chars = self.chars
        return "".join(chars[i] for i in indices)


def _cut(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _index_dtype(K: int) -> np.dtype:
    return np.dtype(np.uint8 if K <= 256 else np.int32)


def text_codec(encoding: str) -> codecs.CodecInfo:
    """The standard library's codec called `encoding`, or a one-line CharnnError.

    Only Python's own codecs count: a search function that some installed package registers
    (one that accepts any name, say) is not asked, so a misspelt name is refused everywhere.
    """
    # codecs.lookup's own normalisation: lower case, then encodings' rules ("UTF 8" -> utf_8)
    info = encodings.search_function(encoding.lower()) if isinstance(encoding, str) else None
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise CharnnError(f"unknown encoding {encoding!r}; give one Python knows, "
                          "such as utf-8 or latin-1")
    if info.name in _NOT_FOR_FILES:
        why = "it refuses every input" if info.name == "undefined" else "it reads domain names"
        raise CharnnError(f"--encoding {encoding} does not read text files ({why}); give the "
                          "file's encoding, such as utf-8 or latin-1")
    return info


def _no_surrogates(text: str, label: str, before: int = 0) -> None:
    """Refuse a text that decodes to a lone surrogate (utf-7 and the escape codecs can give
    one): half of a UTF-16 pair is no character, and no output can print it."""
    lone = _SURROGATES.search(text)
    if lone:
        raise CharnnError(f"{label}: character {before + lone.start():,} is a lone surrogate "
                          f"({lone.group()!r}), which is no character; give the file's real "
                          "encoding with --encoding, or remove it")


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """Read a text file, turning every way it can fail into a one-line CharnnError."""
    path = Path(path)
    codec = text_codec(encoding)
    raw = _read_file(path)
    try:
        text, _ = codec.decode(raw, "strict")
    except UnicodeDecodeError as exc:
        raise CharnnError(f"{path}: byte {exc.start} is not valid {encoding}; give its "
                          "encoding with --encoding (for example latin-1)") from None
    except (UnicodeError, ValueError) as exc:    # codecs that name no byte
        raise CharnnError(f"{path} is not valid {encoding} ({_cut(str(exc))}); give its "
                          "encoding with --encoding (for example latin-1)") from None
    _no_surrogates(text, str(path))
    if not text:
        raise CharnnError(f"{path} is empty; give a text file with some text in it")
    return text


def _check_file(path: Path) -> int:
    """The size of the file at `path`, after the checks read_text makes."""
    if not path.exists():
        raise CharnnError(f"{path}: no such file; give the path of a text file")
    if path.is_dir():
        raise CharnnError(f"{path} is a folder; give the path of a text file")
    # opening a FIFO waits forever for a writer, and a device can be read forever
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise CharnnError(f"{path}: cannot read ({exc.strerror}); check the path") from None
    if not stat.S_ISREG(mode):
        kind = "a pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device" \
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"
        first = " (save what the pipe gives to a file first)" if stat.S_ISFIFO(mode) else ""
        raise CharnnError(f"{path} is {kind}; give the path of a text file{first}")
    try:
        with open(path, "rb") as f:
            f.read(1)
            return os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise CharnnError(f"{path}: cannot read ({exc.strerror}); check its permissions") from None


def _read_file(path: Path) -> bytes:
    _check_file(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CharnnError(f"{path}: cannot read ({exc.strerror}); check its permissions") from None


# -- raw bytes, read in chunks ----------------------------------------------------------------

class _Raw:
    """The bytes of a text: a file, read a chunk at a time, or bytes held in memory."""

    def __init__(self, path: Path | None = None, data: bytes | None = None):
        self.path, self.data = path, data
        self.size = len(data) if data is not None else _check_file(path)

    def chunks(self, size: int | None = None, overlap: int = 0):
        """(offset, bytes[offset : offset + size + overlap], is_last) in order."""
        size = size or _READ
        if self.data is not None:
            view = memoryview(self.data)
            for start in range(0, self.size, size):
                yield start, bytes(view[start:start + size + overlap]), start + size >= self.size
            return
        with self._open() as f:
            for start in range(0, self.size, size):
                f.seek(start)
                yield start, f.read(size + overlap), start + size >= self.size

    def sha256(self) -> str:
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        with self._open() as f:
            return hashlib.file_digest(f, "sha256").hexdigest()

    def _open(self):
        try:
            return open(self.path, "rb")
        except OSError as exc:
            raise CharnnError(f"{self.path}: cannot read ({exc.strerror}); check its "
                              "permissions") from None


class _ByteCodes:
    """An ASCII text's bytes as codes (code = byte value), read from its _Raw."""

    dtype = np.dtype(np.uint8)

    def __init__(self, raw: _Raw):
        self.raw, self.size = raw, raw.size

    def chunks(self, size: int, overlap: int):
        for start, chunk, _ in self.raw.chunks(size, overlap):
            yield start, np.frombuffer(chunk, np.uint8)


class _DecodedCodes:
    """Any other text's characters as codes (table[code point]), decoded again on each pass,
    so that the codes of the whole text are never held at once."""

    def __init__(self, raw: _Raw, codec: codecs.CodecInfo, encoding: str, label: str,
                 table: np.ndarray, chars: int):
        self.raw, self.codec, self.encoding, self.label = raw, codec, encoding, label
        self.table, self.size, self.dtype = table, chars, table.dtype

    def chunks(self, size: int, overlap: int):
        """(start, codes[start : start + size + overlap]) for start = 0, size, 2 size, ..."""
        pending, start = np.zeros(0, self.dtype), 0     # pending: codes[start:]
        for points, _ in _decoded(self.raw, self.codec, self.encoding, self.label):
            pending = np.concatenate([pending, self.table[points]])
            while len(pending) >= size + overlap:
                yield start, pending[:size + overlap]
                pending, start = pending[size:], start + size
        while len(pending):
            yield start, pending[:size + overlap]
            pending, start = pending[size:], start + size


def _lookup(codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """table[codes]; for uint8 codes and table through bytes.translate, which is faster."""
    if codes.dtype == np.uint8 and table.dtype == np.uint8 and len(table) == 256:
        return np.frombuffer(codes.tobytes().translate(table.tobytes()), np.uint8)
    return table[codes]


def _present(codes: np.ndarray, size: int, seen: np.ndarray) -> None:
    """Mark in `seen` (bool, `size`) the codes that occur in `codes`."""
    if codes.dtype == np.uint8:
        # drop every code already seen (C speed); only new ones are left to count
        rest = codes.tobytes().translate(None, np.flatnonzero(seen).astype(np.uint8).tobytes())
        if rest:
            seen[np.flatnonzero(np.bincount(np.frombuffer(rest, np.uint8), minlength=256))] = True
    else:
        seen[np.flatnonzero(np.bincount(codes, minlength=size))] = True


# -- encoding -----------------------------------------------------------------------------------

@dataclass
class _Encoded:
    data: np.ndarray
    vocab: str
    chars: int
    sha256: str
    offsets: np.ndarray | None


def _decoded(raw: _Raw, codec: codecs.CodecInfo, encoding: str, label: str):
    """The text in chunks of code points (uint32 arrays), each with its str."""
    decoder = codec.incrementaldecoder("strict")
    decoded = 0                                 # characters before this chunk
    for start, chunk, last in raw.chunks():
        pending = len(decoder.getstate()[0])
        try:
            text = decoder.decode(chunk, final=last)
        except UnicodeDecodeError as exc:
            raise CharnnError(f"{label}: byte {start - pending + exc.start} is not valid "
                              f"{encoding}; give its encoding with --encoding (for example "
                              "latin-1)") from None
        except (UnicodeError, ValueError) as exc:    # codecs that name no byte
            raise CharnnError(f"{label} is not valid {encoding} ({_cut(str(exc))}); give its "
                              "encoding with --encoding (for example latin-1)") from None
        if text:
            _no_surrogates(text, label, decoded)
            decoded += len(text)
            yield np.frombuffer(text.encode("utf-32-le"), np.uint32), text


def _encode(raw: _Raw, codec: codecs.CodecInfo, encoding: str, label: str, name: str,
            raw_sha: str, records: bool, separator: str) -> _Encoded:
    """Encode the text of `raw`: its vocabulary, the array of indices and the record frame."""
    if raw.size == 0:
        raise CharnnError(f"{label} is empty; give a text file with some text in it")
    byte_path = codec.name in _ASCII_CODECS
    if byte_path:                               # is it ASCII? which bytes does it hold?
        seen = np.zeros(256, bool)
        for _, chunk, _ in raw.chunks():
            if not chunk.isascii():
                byte_path = False
                break
            _present(np.frombuffer(chunk, np.uint8), 256, seen)

    if byte_path:
        chars, sha = raw.size, raw_sha
        alphabet = np.flatnonzero(seen)
        if not records:
            table = np.zeros(256, np.uint8)
            table[alphabet] = np.arange(len(alphabet))
            data = np.empty(raw.size, np.uint8)
            for start, chunk, _ in raw.chunks():
                data[start:start + len(chunk)] = _lookup(np.frombuffer(chunk, np.uint8), table)
            return _Encoded(data, _chars(alphabet), chars, sha, None)
        source, alphabet = _ByteCodes(raw), np.arange(256)
    else:
        present = np.zeros(_UNICODE, bool)
        chars, hasher = 0, hashlib.sha256()
        same_bytes = codec.name == "utf-8"      # decoding and re-encoding gives the file back
        for points, text in _decoded(raw, codec, encoding, label):
            present[np.flatnonzero(np.bincount(points, minlength=_UNICODE))] = True
            chars += len(points)
            if not same_bytes:
                hasher.update(text.encode("utf-8"))
        if chars == 0:
            raise CharnnError(f"{label} is empty; give a text file with some text in it")
        sha = raw_sha if same_bytes else hasher.hexdigest()
        if records and present[ord(END_OF_RECORD)]:
            _refuse_end_of_record(name)
        if records:
            present[ord(END_OF_RECORD)] = True
        alphabet = np.flatnonzero(present)
        dtype = _index_dtype(len(alphabet))
        table = np.zeros(_UNICODE, dtype)
        table[alphabet] = np.arange(len(alphabet))
        if records:
            source = _DecodedCodes(raw, codec, encoding, label, table, chars)
        else:
            codes, pos = np.empty(chars, dtype), 0
            for points, _ in _decoded(raw, codec, encoding, label):
                codes[pos:pos + len(points)] = table[points]
                pos += len(points)
            return _Encoded(codes, _chars(alphabet), chars, sha, None)

    # records: frame the kept records in the codes of `alphabet`, then index their vocabulary
    if byte_path and seen[ord(END_OF_RECORD)]:
        _refuse_end_of_record(name)
    if not separator:
        raise CharnnError("--record-separator is empty; give the string between records")
    code_of = {int(c): i for i, c in enumerate(alphabet)}
    sep = [code_of.get(ord(ch)) for ch in separator]
    nonspace = np.array([not chr(c).isspace() for c in alphabet], np.uint8)
    framed, offsets = _frame_records(source, None if None in sep else sep, nonspace,
                                     code_of[ord(END_OF_RECORD)], name)
    del source
    used = np.zeros(len(alphabet), bool)
    for start in range(0, len(framed), _READ):
        _present(framed[start:start + _READ], len(alphabet), used)
    kept = np.flatnonzero(used)
    dtype = _index_dtype(len(kept))
    table = np.zeros(len(alphabet) if framed.dtype != np.uint8 else 256, dtype)
    table[kept] = np.arange(len(kept))
    data = framed if framed.dtype == dtype else np.empty(len(framed), dtype)
    for start in range(0, len(framed), _READ):
        data[start:start + _READ] = _lookup(framed[start:start + _READ], table)
    return _Encoded(data, _chars(alphabet[kept]), chars, sha, offsets)


def _chars(points) -> str:
    return "".join(map(chr, points))


def _refuse_end_of_record(name: str):
    raise CharnnError(f"{name} contains the character U+001E, which charnn uses to end "
                      "records; remove it from the text")


def _separators(source, sep: list[int] | None, nonspace: np.ndarray | None):
    """Where text.split(separator) cuts, a chunk at a time: (start, body, found, before) with
    body the chunk's codes, found the starts of the matches in it (non-overlapping, left to
    right; positions in the text, int64) and, when `nonspace` is given, before: how many
    non-space characters come before each match, then the count of the whole chunk's."""
    k = 0 if sep is None else len(sep)       # None: a separator character the text lacks
    # A separator that can overlap itself ("aa") needs the left-to-right pick among matches
    overlapping = any(sep[:i] == sep[k - i:] for i in range(1, k))
    counted, free = 0, 0                     # non-space characters so far; next match may start
    for start, ext in source.chunks(_READ, max(k - 1, 0)):
        body = ext[:_READ]
        found = np.flatnonzero(body == sep[0]) if k else np.zeros(0, np.int64)
        found = found[found + k <= len(ext)]
        for j in range(1, k):
            found = found[ext[found + j] == sep[j]]
        if overlapping and len(found):
            picked = []
            for p in (found + start).tolist():
                if p >= free:
                    picked.append(p)
                    free = p + k
            found = np.array(picked, np.int64) - start
        before = None
        if nonspace is not None:
            cumulative = np.cumsum(_lookup(body, nonspace), dtype=np.int64)
            before = counted + np.where(found > 0, cumulative[found - 1], 0)
            counted += int(cumulative[-1]) if len(cumulative) else 0
            before = np.append(before, counted)
        yield start, body, found + start, before


def _frame_records(source, sep: list[int] | None, nonspace: np.ndarray, eor: int, name: str):
    """text.split(separator), blank records dropped, each kept one framed by END_OF_RECORD:
    the framed codes and the records' offsets in them (R + 1, int64).

    Two passes over the source, which hold one bool per record besides the result: the first
    finds which records are kept and the framed length, the second finds the same cuts again,
    writes the offsets and copies the kept records' codes into place.
    """
    n = source.size
    k = 0 if sep is None else len(sep)
    sigma = 0 if sep is None else int(nonspace[sep].sum())
    # record i is text[start_i:end_i] between two matches (or an end of the text); it is
    # kept when it holds a non-space character: more of them before its end than `low`
    keeps, R, length = [], 0, 0
    start, low = 0, 0                        # the current record's start and `low`
    for _, _, found, before in _separators(source, sep, nonspace):
        if len(found):
            keep = before[:-1] > np.concatenate([[low], before[:-2] + sigma])
            keeps.append(keep)
            starts = np.concatenate([[start], found[:-1] + k])
            R += int(keep.sum())
            length += int((found - starts)[keep].sum())
            start, low = int(found[-1]) + k, int(before[-2]) + sigma
    last = int(before[-1]) > low
    keeps.append(np.array([last]))
    R, length = R + last, length + last * (n - start)
    if not R:
        raise CharnnError(f"{name} has no records; check --record-separator")
    keep = np.concatenate(keeps)
    del keeps

    offsets = np.empty(R + 1, np.int64)
    offsets[0] = 0
    framed = np.empty(length + 2 * R, source.dtype)
    record, kept, start = 0, 0, 0            # the current record, the kept ones before it
    for c0, body, found, _ in _separators(source, sep, None):
        c1 = c0 + len(body)
        m = len(found)
        # records record .. record + m meet the chunk: those up to record + m - 1 end in it
        here = keep[record:record + m + 1]
        starts = np.concatenate([[start], found + k])
        ended = here[:m]
        done = int(ended.sum())
        if done:
            sizes = found[ended] - starts[:m][ended] + 2
            np.cumsum(sizes, out=sizes)
            offsets[kept + 1:kept + 1 + done] = offsets[kept] + sizes
        # the part of each kept one inside the chunk, at its index among the kept records
        lo = np.clip(starts, c0, c1)
        hi = np.clip(np.append(found, n), c0, c1)
        index = kept + np.cumsum(here) - here
        pick = here & (hi > lo)
        if pick.any():
            lo, hi, starts, index = lo[pick], hi[pick], starts[pick], index[pick]
            o0 = int(offsets[index[0]]) + 1 + int(lo[0] - starts[0])
            if len(lo) == 1:
                framed[o0:o0 + int(hi[0] - lo[0])] = body[lo[0] - c0:hi[0] - c0]
            else:                            # parts of consecutive kept records
                o1 = int(offsets[index[-1]]) + 1 + int(hi[-1] - starts[-1])
                edge = np.zeros(len(body) + 1, np.int8)
                edge[lo - c0] = 1
                edge[hi - c0] = -1
                inside = np.cumsum(edge[:-1], dtype=np.int8).view(np.bool_)
                slots = np.ones(o1 - o0, bool)
                slots[offsets[index[1:]] - o0] = False
                slots[offsets[index[1:]] - 1 - o0] = False
                framed[o0:o1][slots] = body[inside]
        kept += done
        record += m
        if m:
            start = int(found[-1]) + k
    if last:
        offsets[R] = offsets[R - 1] + n - start + 2
    for a in range(0, R, _READ):             # the markers, a block of records at a time
        b = min(a + _READ, R)
        framed[offsets[a:b]] = eor
        framed[offsets[a + 1:b + 1] - 1] = eor
    return framed, offsets


# -- the on-disk cache ----------------------------------------------------------------------

def _cache_key(raw_sha: str, codec: str, records: bool, separator: str) -> str:
    facts = [CACHE_FORMAT, raw_sha, codec, bool(records), separator if records else None]
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:40]


def _cache_folder() -> Path | None:
    try:
        folder = cache_dir() / "corpora"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    except OSError:
        return None


def _cache_load(folder: Path, key: str) -> _Encoded | None:
    meta_path = folder / f"{key}.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        data = np.asarray(np.load(folder / f"{key}.data.npy", mmap_mode="r"))
        offsets = (np.asarray(np.load(folder / f"{key}.offsets.npy", mmap_mode="r"))
                   if meta["records"] is not None else None)
        if (meta["format"] != CACHE_FORMAT or len(data) != meta["length"]
                or data.dtype != _index_dtype(len(meta["vocab"]))
                or (offsets is not None and len(offsets) != meta["records"] + 1)):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.utime(meta_path)                  # marks the entry used, for _cache_prune
    except OSError:
        pass
    return _Encoded(data, meta["vocab"], meta["chars"], meta["sha256"], offsets)


def _cache_store(folder: Path, key: str, enc: _Encoded) -> None:
    """Write the entry atomically (each file to a temporary name, then renamed; the JSON
    sidecar last, so an entry with a sidecar is complete); a failure only costs time."""
    tag = f".{os.getpid()}.tmp"
    written = []
    try:
        arrays = {"data": enc.data}
        if enc.offsets is not None:
            arrays["offsets"] = enc.offsets
        for part, array in arrays.items():
            tmp = folder / f"{key}.{part}.npy{tag}"
            written.append(tmp)
            with open(tmp, "wb") as f:
                np.save(f, array)
            tmp.replace(folder / f"{key}.{part}.npy")
        meta = {"format": CACHE_FORMAT, "vocab": enc.vocab, "sha256": enc.sha256,
                "chars": enc.chars, "length": len(enc.data),
                "records": None if enc.offsets is None else len(enc.offsets) - 1}
        tmp = folder / f"{key}.json{tag}"
        written.append(tmp)
        tmp.write_text(json.dumps(meta), encoding="utf-8")
        tmp.replace(folder / f"{key}.json")
        _cache_prune(folder)
    except OSError:
        for tmp in written:
            try:
                tmp.unlink()
            except OSError:
                pass


def _cache_prune(folder: Path) -> None:
    """Keep the CACHE_KEEP entries used last."""
    entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for meta in entries[CACHE_KEEP:]:
        for path in folder.glob(meta.name[:-len(".json")] + ".*"):
            path.unlink(missing_ok=True)


# -- corpora --------------------------------------------------------------------------------

@dataclass(eq=False)
class Corpus:
    """A text to train on, encoded.

    data: the text as character indices (uint8 when K <= 256, else int32). For record
    corpora, the kept records one after the other, each framed by END_OF_RECORD on both
    sides; record_offsets (R + 1, int64) holds where each one starts, and records the
    (R, 2) [start, end) spans in data. vocab holds END_OF_RECORD as well.
    chars: the text's length in characters; sha256: the hash of the text in UTF-8.
    """

    name: str
    data: np.ndarray
    vocab: Vocabulary
    chars: int
    sha256: str
    record_offsets: np.ndarray | None = None
    source: str | None = None        # the file's absolute path, or "shakespeare"
    encoding: str = "utf-8"

    @property
    def records(self) -> np.ndarray | None:
        """(R, 2) int64: record i is data[records[i, 0]:records[i, 1]], both markers included
        (a view of record_offsets), or None for a corpus without records."""
        o = self.record_offsets
        if o is None:
            return None
        return np.lib.stride_tricks.as_strided(o, shape=(len(o) - 1, 2),
                                               strides=(o.strides[0], o.strides[0]),
                                               writeable=False)

    @property
    def text(self) -> str:
        """The encoded text decoded (for record corpora: the framed records). For small texts
        and for tests: it builds one str of the whole text."""
        points = np.array([ord(ch) for ch in self.vocab.chars], np.uint32)
        return points[self.data].astype("<u4").tobytes().decode("utf-32-le")

    def encoded(self) -> np.ndarray:
        return self.data

    @classmethod
    def from_text(cls, text: str, name: str = "text", records: bool = False,
                  record_separator: str = "\n") -> "Corpus":
        """A corpus of a str in memory, encoded as load_corpus encodes a UTF-8 file."""
        _no_surrogates(text, name)
        raw = text.encode("utf-8")
        return _corpus(_Raw(data=raw), name, name, "utf-8", records, record_separator,
                       cache=False)


def _corpus(raw: _Raw, name: str, label: str, encoding: str, records: bool,
            separator: str, origin: str | None = None, cache: bool = True,
            facts_encoding: str | None = None) -> Corpus:
    codec = text_codec(encoding)
    raw_sha = raw.sha256()
    folder = _cache_folder() if cache and raw.size >= CACHE_MIN_BYTES else None
    key = _cache_key(raw_sha, codec.name, records, separator)
    enc = _cache_load(folder, key) if folder is not None else None
    if enc is None:
        enc = _encode(raw, codec, encoding, label, name, raw_sha, records, separator)
        if folder is not None:
            _cache_store(folder, key, enc)
    return Corpus(name=name, data=enc.data, vocab=Vocabulary(enc.vocab), chars=enc.chars,
                  sha256=enc.sha256, record_offsets=enc.offsets, source=origin,
                  encoding=facts_encoding or encoding)


def bundled_bytes() -> bytes:
    """The bundled corpus, all of Shakespeare's plays, as UTF-8 bytes."""
    try:
        packed = resources.files("charnn").joinpath(_BUNDLED_FILE).read_bytes()
    except OSError:
        raise CharnnError("the bundled corpus is missing from this installation of charnn; "
                          "reinstall charnn, or give a text file to train on") from None
    return lzma.decompress(packed)


def shakespeare_text() -> str:
    """All of Shakespeare's plays, as plain text (the bundled corpus)."""
    return bundled_bytes().decode("utf-8")


def load_corpus(source: str | Path | None = None, encoding: str = "utf-8", records: bool = False,
                record_separator: str = "\n") -> Corpus:
    """A corpus from a text file, or the bundled one when `source` is None or 'shakespeare'."""
    text_codec(encoding)
    if source is None or str(source) == BUNDLED:
        return _corpus(_Raw(data=bundled_bytes()), BUNDLED, BUNDLED, "utf-8", records,
                       record_separator, origin=BUNDLED, facts_encoding=encoding)
    path = Path(source)
    return _corpus(_Raw(path=path), path.name, str(path), encoding, records, record_separator,
                   origin=str(path.resolve()))
