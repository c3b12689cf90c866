"""charnn report: the report folder, its self-contained page, --from a finished run, bad input."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from charnn import cli
from charnn.report import format_duration, parse_samples

PARAMS = ("b", "c", "U", "W", "V")


def write_text(path: Path) -> Path:
    rng = random.Random(3)
    words = "the cat sat on a mat and then it ran to the hat where a rat was fat".split()
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 8))).capitalize() + "."
             for _ in range(240)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained_report(tmp_path_factory):
    """A report that trains: numpy backend, a tiny text, ~2.4 epochs."""
    root = tmp_path_factory.mktemp("report")
    text = write_text(root / "tiny.txt")
    out = root / "rep"
    code = cli.main([
        "report", str(text), "--updates", "400", "--hidden", "12", "--sample-every", "100",
        "--eval-every", "100", "--backend", "numpy", "--out", str(out), "--no-progress"])
    assert code == 0
    return out


def test_report_folder_holds_page_markdown_and_figures(trained_report):
    out = trained_report
    for name in ("report.html", "report.md", "loss.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "run" / "best.npz").is_file()
    assert "](loss.png)" in (out / "report.md").read_text(encoding="utf-8")


def test_page_is_self_contained(trained_report):
    page = (trained_report / "report.html").read_text(encoding="utf-8")
    assert "http:" not in page and "https:" not in page and "file:" not in page
    sources = re.findall(r"""\bsrc\s*=\s*["']?([^"'\s>]*)""", page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"""\bhref\s*=""", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page


def test_page_holds_the_four_figures_and_the_facts(trained_report):
    page = (trained_report / "report.html").read_text(encoding="utf-8")
    md = (trained_report / "report.md").read_text(encoding="utf-8")
    for doc in (page, md):
        for name in PARAMS:                          # Figure 1, one row per parameter
            assert re.search(rf"(<td>|\| ){name}(</td>| \|)", doc), name
        assert "max absolute difference" in doc and "max relative difference" in doc
        assert "pass" in doc and "FAIL" not in doc
        for it in (0, 100, 200, 300, 400):           # Figure 3's headers
            assert re.search(rf"iter {it} , epoch \d , smooth loss \d+\.\d\d", doc), it
        assert "Figure 4" in doc and "best.npz" in doc
        assert "Loss on held-out text" in doc and "bits/char" in doc and "nats/char" in doc
        assert "held out from training" in doc
        assert "SHA-256" in doc and "updates/s" in doc and "best smooth loss" in doc
    best = re.search(r'<pre class="best">(.*?)</pre>', page, re.S).group(1)
    assert len(best) >= 900                          # 1,000 characters, some escaped


def test_html_escapes_text(tmp_path):
    text = tmp_path / "angle.txt"
    text.write_text("<b>&amp;</b> a < b > c & d \"q\" 'x'\n" * 60, encoding="utf-8")
    out = tmp_path / "rep"
    assert cli.main(["report", str(text), "--updates", "60", "--hidden", "6",
                     "--sample-every", "30", "--backend", "numpy", "--out", str(out),
                     "--no-progress"]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    body = page.split("<body>", 1)[1]
    tags = set(re.findall(r"</?([a-zA-Z0-9]+)", body))
    assert "b" not in tags                          # the text's <b> never became markup


def test_from_a_finished_run_without_training(tmp_path, capsys):
    text = write_text(tmp_path / "tiny.txt")
    run = tmp_path / "run"
    assert cli.main(["train", str(text), "--updates", "200", "--hidden", "8",
                     "--sample-every", "100", "--backend", "numpy", "--out", str(run),
                     "--no-progress"]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    capsys.readouterr()
    out = tmp_path / "rep"
    assert cli.main(["report", "--from", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "updates/s (measured)" not in printed and "iter 0 , epoch 1" not in printed
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before   # untouched
    assert not (out / "run").exists()
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "WAS seen in training" in page           # no held-out part: said plainly
    assert "iter 200 , epoch" in page
    for name in ("report.md", "loss.png"):
        assert (out / name).is_file()


def test_missing_run_folder_is_exit_2_with_one_line(tmp_path, capsys):
    code = cli.main(["report", "--from", str(tmp_path / "no-such-run"),
                     "--out", str(tmp_path / "rep")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("charnn: error: ") and err.count("\n") == 1
    assert "no-such-run" in err
    assert not (tmp_path / "rep").exists()


def test_existing_run_is_not_overwritten_without_force(trained_report, capsys):
    code = cli.main(["report", "--updates", "10", "--backend", "numpy",
                     "--out", str(trained_report)])
    err = capsys.readouterr().err
    assert code == 2 and "--from" in err and err.count("\n") == 1


def test_from_with_training_options_is_refused(trained_report, capsys):
    code = cli.main(["report", "--from", str(trained_report / "run"), "--hidden", "7",
                     "--out", str(trained_report / "other")])
    assert code == 2 and "--hidden" in capsys.readouterr().err


def test_estimate_is_printed_before_training(tmp_path, capsys):
    text = write_text(tmp_path / "tiny.txt")
    assert cli.main(["report", str(text), "--updates", "50", "--hidden", "6",
                     "--sample-every", "50", "--backend", "numpy",
                     "--out", str(tmp_path / "rep"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    estimate = printed.index("updates/s (measured)")
    assert "about" in printed[estimate:].splitlines()[0]
    assert estimate < printed.index("iter 0 , epoch 1 , smooth loss")


def test_parse_samples_keeps_text_and_headers():
    blocks = parse_samples("iter 0 , epoch 1 , smooth loss 83.30\nab\n\ncd\n\n"
                           "iter 10 , epoch 2 , smooth loss 70.00\nx\n\n\n")
    assert [(b.iteration, b.epoch, b.smooth_loss) for b in blocks] == [(0, 1, 83.3), (10, 2, 70.0)]
    assert blocks[0].text == "ab\n\ncd" and blocks[1].text == "x\n"


def test_format_duration():
    assert format_duration(12.4) == "12 s"
    assert format_duration(125) == "2 min 5 s"
    assert format_duration(3 * 3600 + 600) == "3 h 10 min"


def test_the_report_looks_inside_with_the_units_the_finder_ranks(trained_report):
    page = (trained_report / "report.html").read_text(encoding="utf-8")
    md = (trained_report / "report.md").read_text(encoding="utf-8")
    assert "6 Look inside" in page and "## 6 Look inside" in md
    rows = re.findall(r"^\| (start of a word|after a newline|position in the line|inside "
                      r"quotes|inside parentheses) \| 0 \| (\d+) \| ([+-]\d\.\d{3}) \|$", md, re.M)
    assert rows, md[md.index("## 6"):]
    r = [abs(float(x)) for _, _, x in rows]
    assert r == sorted(r, reverse=True)              # best first
    assert page.count('<span style="background:rgba(') > 100   # the text coloured by a unit


def test_a_report_names_the_network_and_checks_every_layer(tiny_text_file, tmp_path):
    from charnn.cli import main
    out = tmp_path / "lstm-report"
    assert main(["report", str(tiny_text_file), "--model", "lstm", "--layers", "2",
                 "--hidden", "8", "--updates", "60", "--out", str(out), "--no-progress"]) == 0
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# Character-level LSTM on tiny.txt")
    assert "| network | an LSTM of 2 layers of 8 units |" in md
    for name in ("W_ih0", "W_hh0", "b_ih1", "W_hh1", "V", "c"):
        assert re.search(rf"^\| {name} \| .* \| pass \|$", md, re.M), name


def test_the_api_loads_and_runs_a_stacked_network(tiny_text_file, tmp_path):
    import charnn
    corpus = charnn.load_corpus(tiny_text_file)
    charnn.Trainer(corpus, charnn.TrainConfig(model="gru", layers=2, hidden=8, updates=40,
                                              sample_every=40, log_every=20,
                                              checkpoint_every=40), tmp_path / "run").run()
    model = charnn.load(tmp_path / "run")
    assert model.backend.__name__ == "charnn.backends.compiled"     # auto: the fastest for GRU
    text = model.generate(50, prime="All:", seed=1)
    assert len(text) == 50 and model.generate(50, prime="All:", seed=1) == text
    assert model.hidden_states("Speak").shape == (5, 2, 1, 8)
    assert 0 < model.evaluate(corpus.text[:400]).bits < 10
    analysis = model.analyse("Speak, speak.")
    assert len(analysis.layers) == 2 and analysis.layers[1].shape == (13, 8)
