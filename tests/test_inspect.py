"""charnn inspect: the units found, and the coloured text as a static page."""

from __future__ import annotations

import re

import pytest

from charnn import cli

from _serve_fixtures import SERVE_TEXT, train_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("inspect") / "run")


def test_inspect_writes_the_text_coloured_by_a_unit(run, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text(SERVE_TEXT[:500])
    out = tmp_path / "out.html"
    assert cli.main(["inspect", str(run), str(text), "--unit", "3", "--html", str(out),
                     "--backend", "numpy"]) == 0
    printed = capsys.readouterr().out
    assert "inside double quotes" in printed and "inside parentheses" in printed
    page = out.read_text()
    assert "unit 3" in page and "://" not in page
    assert len(re.findall(r'<span style="background:rgba', page)) >= 2 * 500 - 1
    assert "next: " in page and "loss" in page


def test_inspect_defaults_to_the_runs_sample_and_the_best_unit(run, capsys):
    assert cli.main(["inspect", str(run), "--backend", "numpy"]) == 0
    assert "the run's sample at update 300" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [(["--unit", "99"], "from 0 to 15"),
                                            (["--layer", "1"], "layer 0"),
                                            (["--max-chars", "0"], "at least 1")])
def test_inspect_refuses_bad_settings(run, capsys, flags, message):
    assert cli.main(["inspect", str(run), "--backend", "numpy", *flags]) == 2
    assert message in capsys.readouterr().err
