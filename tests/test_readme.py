"""The documentation: its Python examples run as written and give what the command line
gives, README.md stays short, and every relative link leads to a file and heading that exist."""

import re
from collections import Counter
from pathlib import Path

import pytest

from charnn.cli import main

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# the pages whose ```python blocks run, in this order, in one namespace
PYTHON_PAGES = [README, DOCS / "api.md"]
README_LIMIT = 12_000   # bytes


def python_blocks() -> list[tuple[Path, str]]:
    return [(page, block) for page in PYTHON_PAGES
            for block in re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"),
                                    re.S)]


def test_every_python_block_of_the_docs_runs_and_matches_the_cli(tmp_path, monkeypatch,
                                                                 capsys):
    from charnn.corpus import shakespeare_text
    monkeypatch.chdir(tmp_path)
    Path("my_book.txt").write_text(shakespeare_text()[:100_000], encoding="utf-8")
    blocks = python_blocks()
    assert blocks
    namespace = {}
    for page, block in blocks:
        exec(compile(block, str(page), "exec"), namespace)
    assert "bits per character" in capsys.readouterr().out

    # the API's text is the command line's text: same state, vocabulary, backend and seed
    text = namespace["model"].generate(300, prime="ROMEO:", temperature=0.8, seed=1)
    assert main(["sample", "runs/mine", "--prime", "ROMEO:", "--temperature", "0.8",
                 "--seed", "1", "-n", "300"]) == 0
    assert capsys.readouterr().out == "ROMEO:" + text + "\n"
    # and it is text, not the one-character loop a pointer-walk model falls into from h = 0
    assert Counter(text).most_common(1)[0][1] < 0.3 * len(text) and text.count(" ") > 20
    assert namespace["states"].shape == (19, 1, 1, 100)


def test_the_readme_is_short():
    size = len(README.read_bytes())
    assert size < README_LIMIT, (f"README.md is {size:,} bytes, over {README_LIMIT:,}: "
                                 "move the detail into a page of docs/ and link to it")


def test_the_readme_keeps_the_two_commands_a_fresh_machine_runs():
    # .ci/run runs the second as a new user would
    text = README.read_text(encoding="utf-8")
    assert ("python3 -m venv .venv && . .venv/bin/activate && pip install -e . && charnn train"
            in text)
    assert ('python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" '
            "&& pytest" in text)


# --- links ---------------------------------------------------------------------------------

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def without_code(text: str) -> str:
    """The text less its fenced blocks, indented blocks and code spans, where a link is not
    a link and a # line is not a heading."""
    text = FENCE.sub("", text)
    lines, previous_blank = [], True
    for line in text.split("\n"):
        indented = line.startswith(("    ", "\t")) and previous_blank
        previous_blank = (not line.strip()) or indented
        lines.append("" if indented else line)
    return INLINE_CODE.sub("", "\n".join(lines))


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: the text as shown (links and images by their text,
    emphasis and code marks dropped), lowercased, punctuation other than - and _ dropped,
    spaces made hyphens."""
    heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    heading = re.sub(r"[^\w\- ]", "", heading.lower())
    return heading.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    seen: Counter[str] = Counter()
    found = set()
    for _, heading in HEADING.findall(text):
        base = anchor(heading)
        found.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
        seen[base] += 1
    return found


def test_the_anchor_rule_is_githubs():
    assert anchor("Watch, play, look inside: `charnn serve`") == \
        "watch-play-look-inside-charnn-serve"
    assert anchor("PyTorch: a GPU, several processes, several machines") == \
        "pytorch-a-gpu-several-processes-several-machines"
    assert anchor("Fine-tune, export, share") == "fine-tune-export-share"
    assert anchor("Learning per CPU-minute") == "learning-per-cpu-minute"


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(without_code(page.read_text(encoding="utf-8")))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target, re.I)]   # http:, mailto:, ...


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page):
    broken = []
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            shown = dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest
            broken.append(f"{target}: no {shown}")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no heading #{fragment} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_link_check_sees_links_and_not_code():
    text = ("[a](x.md) ![b](img.png) [c](https://example.org) `[d](e.md)`\n\n"
            "    [f](g.md)\n\n```\n[h](i.md)\n```\n[j](k.md#l)")
    assert LINK.findall(without_code(text)) == ["x.md", "img.png", "https://example.org",
                                                "k.md#l"]
