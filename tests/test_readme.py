"""README's Python examples run as written and give what the command line gives."""

import re
from collections import Counter
from pathlib import Path

from charnn.cli import main

README = Path(__file__).parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_every_python_block_of_the_readme_runs_and_matches_the_cli(tmp_path, monkeypatch,
                                                                   capsys):
    from charnn.corpus import shakespeare_text
    monkeypatch.chdir(tmp_path)
    Path("my_book.txt").write_text(shakespeare_text()[:100_000], encoding="utf-8")
    blocks = python_blocks()
    assert blocks
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert "bits per character" in capsys.readouterr().out

    # the API's text is the command line's text: same state, vocabulary, backend and seed
    text = namespace["model"].generate(300, prime="ROMEO:", temperature=0.8, seed=1)
    assert main(["sample", "runs/mine", "--prime", "ROMEO:", "--temperature", "0.8",
                 "--seed", "1", "-n", "300"]) == 0
    assert capsys.readouterr().out == "ROMEO:" + text + "\n"
    # and it is text, not the one-character loop a pointer-walk model falls into from h = 0
    assert Counter(text).most_common(1)[0][1] < 0.3 * len(text) and text.count(" ") > 20
    assert namespace["states"].shape == (19, 100)
