"""The report as pages: report.md and the self-contained report.html, from a ReportData."""

from __future__ import annotations

import base64
import datetime
import html
import math
import re
import struct
from dataclasses import replace

import numpy as np

from .. import __version__
from ..corpus import END_OF_RECORD
from ..evaluation import WARMUP, carries_state, warmup_length
from ..train import describe_network
from .data import BEST_SAMPLE_LENGTH, REFERENCE, GradCheck, LookInside, ReportData, format_duration

def _network_name(d) -> str:
    return d.config.network().abbreviation


def _inside_text(inside: LookInside) -> str:
    return (f"Which hidden units track simple features of the text: {inside.source} run "
            "through the best model, each unit's activation correlated (Pearson r) with inside "
            "quotes, inside parentheses, position in the line, start of a word and after a "
            "newline; the best units of each feature, best first. charnn serve and charnn "
            "inspect show the same interactively.")


def _inside_rows(inside: LookInside) -> list[list[str]]:
    from ..insight import FEATURES
    return [[FEATURES[u.feature], str(u.layer), str(u.unit), f"{u.r:+.3f}"]
            for u in inside.units]


def _visible(text: str) -> str:
    """Sample text as shown: the end-of-record mark made visible."""
    return text.replace(END_OF_RECORD, "\u241e")


def _facts(d: ReportData) -> dict[str, list[tuple[str, str]]]:
    """The tables of section 5, as (label, value) rows, shared by the page and the Markdown."""
    c, corpus = d.config, d.corpus
    tau, K = c.seq_length, len(d.vocab)
    rows = d.train_rows
    first = float(rows[0]["smooth_loss"]) if rows else math.nan
    last = float(rows[-1]["smooth_loss"]) if rows else math.nan
    best_row = min(rows, key=lambda r: float(r["smooth_loss"])) if rows else None
    epochs_done = d.iteration / d.updates_per_epoch if d.updates_per_epoch else math.nan
    corpus_rows = [
        ("name", str(corpus.get("name"))),
        ("source", str(corpus.get("source"))),
        ("characters", f"{corpus.get('chars', 0):,}"),
        ("K (distinct characters)", str(K)),
        ("SHA-256", str(corpus.get("sha256"))),
        ("encoding", str(corpus.get("encoding"))),
    ]
    if corpus.get("records") is not None:
        corpus_rows.append(("records", f"{corpus['records']:,}"))
    settings_rows = [("network", describe_network(c))] + [
        (k, "(none)" if v is None else repr(v) if isinstance(v, str) else str(v))
        for k, v in c.to_dict().items()]
    speed = d.iteration / d.elapsed if d.elapsed > 0 else math.nan
    run_rows = [
        ("run folder", str(d.run_dir)),
        ("updates", f"{d.iteration:,}" + (" (stopped early)" if d.interrupted else "")),
        ("updates per epoch", f"{d.updates_per_epoch:,}"),
        ("epochs", f"{epochs_done:.2f} (ended in epoch {d.epoch})"),
        ("wall time of training", f"{d.elapsed:.1f} s" + (f" ({format_duration(d.elapsed)})"
                                                            if d.elapsed >= 60 else "")),
        ("speed", f"{speed:,.0f} updates/s = {speed * tau * c.batch_size:,.0f} characters/s "
                  "over the whole run (evaluation and sampling included); "
                  f"{_training_speed(rows):,.0f} updates/s while training (median over the "
                  "log's intervals)"),
        ("backend", f"{c.backend} (training); {d.backend} (this report's evaluation and text)"),
        ("smooth loss at update 0", f"{first:.2f} (tau ln K = {tau * math.log(K):.2f}; the "
                                    f"assignment's report: {REFERENCE['initial_smooth_loss']} "
                                    "with K = 80)"),
        ("final smooth loss", f"{last:.2f} = {last / (tau * math.log(2)):.3f} bits/char"),
    ]
    if best_row is not None:
        run_rows.append(("best smooth loss",
                         f"{float(best_row['smooth_loss']):.2f} at update "
                         f"{int(best_row['iteration']):,} (epoch {best_row['epoch']}) = "
                         f"{float(best_row['smooth_loss']) / (tau * math.log(2)):.3f} bits/char"))
    if d.best_kind == "val_loss":
        chosen = f"lowest held-out loss, {d.best_value:.4f} nats/char"
    else:
        chosen = f"lowest smooth loss, {d.best_value:.2f}"
    run_rows.append(("best checkpoint (best.npz)",
                     f"update {d.best_iteration:,} (epoch {d.best_epoch}): {chosen}"))
    h = d.held_out
    ln2 = math.log(2)
    held_rows = [
        ("evaluated on", h.where),
        ("characters predicted", f"{h.chars:,}" + (
            "" if d.config.records and not h.seen_in_training else
            f", after a warm-up of {warmup_length(h.chars + WARMUP)} characters from "
            + ("the state training carried" if carries_state(d.config.to_dict())
               else "h = 0") + " (as charnn eval scores a text)")),
        ("held out from training", "no: it WAS seen in training" if h.seen_in_training else "yes"),
        ("final model (latest.npz)", f"{h.final_nats:.4f} nats/char = "
                                     f"{h.final_nats / ln2:.4f} bits/char "
                                     f"({h.final_nats * tau:.2f} per {tau} characters)"),
        ("best model (best.npz)", f"{h.best_nats:.4f} nats/char = "
                                  f"{h.best_nats / ln2:.4f} bits/char "
                                  f"({h.best_nats * tau:.2f} per {tau} characters)"),
    ]
    held_title = ("Loss on the text's tail (seen in training)" if h.seen_in_training
                  else "Loss on held-out text")
    return {"Corpus": corpus_rows, "Settings": settings_rows, "Run": run_rows,
            held_title: held_rows}





def _training_speed(rows: list[dict]) -> float:
    """Updates per second between consecutive log rows, the median over the run, so that
    the intervals holding an evaluation or a sample do not count."""
    rates = []
    for a, b in zip(rows, rows[1:]):
        updates = int(b["iteration"]) - int(a["iteration"])
        seconds = float(b["elapsed"]) - float(a["elapsed"])
        if updates > 0 and seconds > 0:
            rates.append(updates / seconds)
    return float(np.median(rates)) if rates else math.nan


def _gradcheck_rows(gc: GradCheck) -> list[list[str]]:
    return [[r.name, "x".join(map(str, r.shape)), f"{r.max_abs:.3e}", f"{r.max_rel:.3e}",
             "pass" if r.passed else "FAIL"] for r in gc.rows]


_GC_HEADERS = ["parameter", "shape", "max absolute difference", "max relative difference",
               "result"]


def _texts(d: ReportData) -> dict[str, str]:
    """The captions and paragraphs, as plain text, shared by the page and the Markdown."""
    gc, c = d.gradcheck, d.config
    epochs_done = d.iteration / d.updates_per_epoch if d.updates_per_epoch else 0
    t = {
        "intro": (f"A character-level network, {c.network().describe()} (seq_length = "
                  f"{c.seq_length}, eta = {c.eta:g}, {c.optimizer}), trained on "
                  f"{d.corpus.get('name')} "
                  f"({d.corpus.get('chars', 0):,} characters, K = {len(d.vocab)}), reported as "
                  "in the DD2424 Assignment 4 report: the gradient check, the loss over the "
                  "epochs, the text while learning and the best model's text."),
        "gc": (f"Analytic gradients of {gc.gradients_of} against centred differences "
               f"(L(theta + h) - L(theta - h)) / 2h, h = {gc.step:g}, for every element of "
               f"{', '.join(r.name for r in gc.rows)}, on a small network: m = {gc.hidden}, "
               f"K = {gc.K}, the first {gc.seq_length} characters of the text, a random "
               "starting state. An element passes "
               f"when its relative difference |a - n| / (|a| + |n|) is at most "
               f"{gc.threshold:g}. " + ("All parameters pass." if gc.passed else
                                        "Some parameters FAIL: the gradients are wrong.")
               + f" The assignment's report found absolute differences up to about "
               f"{REFERENCE['gradcheck_max_abs']:.0e}."),
        "gc_caption": "Figure 1: maximal differences between analytic and numerical gradients.",
        "loss": (f"Smooth loss (0.999 smooth + 0.001 loss; the loss is summed over the "
                 f"{c.seq_length} characters of a sequence) against updates over "
                 f"{epochs_done:.2f} epochs of {d.updates_per_epoch:,} updates; dashed lines "
                 "mark where each epoch starts, and the right axis gives bits per character."
                 + (" The held-out loss, multiplied by the sequence length so that it is in "
                    "the same units, is drawn as well." if c.val_frac > 0 else "")
                 + (" This run is shorter than the two epochs the assignment asks for."
                    if epochs_done < 2 else "")),
        "loss_caption": f"Figure 2: smooth loss over {epochs_done:.2f} epochs.",
        "samples": (f"{c.sample_length} characters drawn from the model before the first "
                    f"update and every {c.sample_every:,} updates (and after the last), each "
                    "headed with its update, epoch and smooth loss."),
        "samples_caption": "Figure 3: text generated while learning.",
        "best": (f"{BEST_SAMPLE_LENGTH:,} characters from the best checkpoint (best.npz, "
                 f"update {d.best_iteration:,}, chosen by its "
                 + ("held-out loss" if d.best_kind == "val_loss" else "smooth loss")
                 + f"), drawn with seed {d.best_seed} from "
                 + ("the hidden state training carried" if c.order == "sequential"
                    and not c.records else "a zero hidden state")
                 + ". The assignment's "
                 f"report reached a smooth loss of {REFERENCE['smooth_loss_20_epochs']} after "
                 "20 epochs."),
        "best_caption": "Figure 4: text generated by the best model.",
        "made": (f"Made by charnn {__version__} on "
                 f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}"
                 + (f" with: {d.command}" if d.command else "") + ". "
                 + ("The run was trained for this report." if d.trained_here else
                    "The run was trained before; this report did not train it again.")),
    }
    return t


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(map(_md_cell, headers)) + " |",
             "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(d: ReportData, figure_name: str) -> str:
    # Markdown passes HTML through: what names files (the corpus facts, the run folder, the
    # command line, notes naming them) is escaped, as report.html escapes it
    def text(value: str) -> str:
        return html.escape(value, quote=False)
    d = replace(d, corpus={k: text(v) if isinstance(v, str) else v for k, v in d.corpus.items()},
                run_dir=text(str(d.run_dir)), command=text(d.command),
                notes=[text(n) for n in d.notes])
    t, facts = _texts(d), _facts(d)
    samples = "\n".join(f"{s.header}\n{_visible(s.text)}" for s in d.samples)
    best = _visible(d.best_text)
    parts = [
        f"# Character-level {_network_name(d)} on {d.corpus.get('name')}", "", t["intro"], "",
        *(["> " + n for n in d.notes] + [""] if d.notes else []),
        "## 1 Gradient check", "", t["gc"], "",
        _md_table(_GC_HEADERS, _gradcheck_rows(d.gradcheck)), "", f"*{t['gc_caption']}*", "",
        "## 2 Training", "", t["loss"], "",
        f"![Smooth loss against updates]({figure_name})", "", f"*{t['loss_caption']}*", "",
        "## 3 Samples while learning", "", t["samples"], "",
        _fence(samples), samples, _fence(samples), "", f"*{t['samples_caption']}*", "",
        "## 4 The best model's text", "", t["best"], "",
        _fence(best), best, _fence(best), "", f"*{t['best_caption']}*", "",
        "## 5 Facts of the run", "",
    ]
    for title, rows in facts.items():
        parts += [f"### {title}", "", _md_table(["what", "value"], [list(r) for r in rows]), ""]
    if d.inside is not None:
        parts += ["## 6 Look inside", "", _inside_text(d.inside), "",
                  _md_table(["feature", "layer", "unit", "r"], _inside_rows(d.inside)), ""]
    parts += ["---", "", t["made"], ""]
    return "\n".join(parts)


_CSS = """
body { font-family: Georgia, 'Times New Roman', serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #1d1d1f; background: #fff; line-height: 1.45; }
h1 { font-size: 1.8rem; margin-bottom: .3rem; }
h2 { font-size: 1.35rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
h3 { font-size: 1.1rem; margin-top: 1.4rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .95rem; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-family: 'DejaVu Sans Mono', Menlo, Consolas, monospace; }
td.pass { color: #176b2c; font-weight: bold; }
td.fail { color: #b00020; font-weight: bold; }
table.facts td:first-child { white-space: nowrap; color: #444; }
table.facts td { overflow-wrap: anywhere; }
pre { font-family: 'DejaVu Sans Mono', Menlo, Consolas, monospace; font-size: .85rem;
      background: #f7f7f5; border: 1px solid #e2e2dd; padding: .8rem; white-space: pre-wrap;
      overflow-wrap: anywhere; }
pre .head { color: #0b4f8a; font-weight: bold; display: inline-block; margin-top: .7em; }
pre .head:first-child { margin-top: 0; }
figure { margin: 1rem 0; }
figcaption { font-style: italic; color: #444; margin-top: .3rem; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.note { background: #fff6d6; border-left: 4px solid #e0b400; padding: .4rem .8rem; }
.verdict { font-weight: bold; }
footer { margin-top: 2.5rem; color: #666; font-size: .85rem; border-top: 1px solid #ddd;
         padding-top: .6rem; }
"""


def _h(text) -> str:
    return html.escape(str(text), quote=True)


def _html_table(headers: list[str] | None, rows: list[list[str]], cls: str = "",
                cell_classes: list[str] | None = None) -> str:
    out = [f'<table class="{_h(cls)}">' if cls else "<table>"]
    if headers:
        out.append("<tr>" + "".join(f"<th>{_h(x)}</th>" for x in headers) + "</tr>")
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            klass = (cell_classes[i] if cell_classes else "") or ""
            if klass == "verdict":
                klass = "pass" if value == "pass" else "fail"
            cells.append(f'<td class="{klass}">{_h(value)}</td>' if klass else f"<td>{_h(value)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def render_html(d: ReportData, png: bytes) -> str:
    t, facts = _texts(d), _facts(d)
    title = f"Character-level {_network_name(d)} on {d.corpus.get('name')}"
    image = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    width, height = struct.unpack(">II", png[16:24])          # the PNG's IHDR
    samples = "\n".join(f'<span class="head">{_h(s.header)}</span>\n{_h(_visible(s.text))}'
                        for s in d.samples)
    gc_verdict = ("all gradients pass" if d.gradcheck.passed else "the gradient check FAILED")
    body = [
        f"<h1>{_h(title)}</h1>",
        f"<p>{_h(t['intro'])}</p>",
        *(f'<p class="note">{_h(n)}</p>' for n in d.notes),
        '<h2 id="gradcheck">1 Gradient check</h2>',
        f"<p>{_h(t['gc'])}</p>",
        "<figure>",
        _html_table(_GC_HEADERS, _gradcheck_rows(d.gradcheck), "gradcheck",
                    ["", "num", "num", "num", "verdict"]),
        f'<figcaption>{_h(t["gc_caption"])} <span class="verdict">{_h(gc_verdict)}.</span>'
        "</figcaption>",
        "</figure>",
        '<h2 id="training">2 Training</h2>',
        f"<p>{_h(t['loss'])}</p>",
        "<figure>",
        f'<img src="{image}" alt="{_h("Smooth loss against updates, epochs marked")}" '
        f'width="{width}" height="{height}">',
        f"<figcaption>{_h(t['loss_caption'])}</figcaption>",
        "</figure>",
        '<h2 id="samples">3 Samples while learning</h2>',
        f"<p>{_h(t['samples'])}</p>",
        "<figure>",
        f'<pre class="samples">{samples}</pre>',
        f"<figcaption>{_h(t['samples_caption'])}</figcaption>",
        "</figure>",
        '<h2 id="best">4 The best model\'s text</h2>',
        f"<p>{_h(t['best'])}</p>",
        "<figure>",
        f'<pre class="best">{_h(_visible(d.best_text))}</pre>',
        f"<figcaption>{_h(t['best_caption'])}</figcaption>",
        "</figure>",
        '<h2 id="facts">5 Facts of the run</h2>',
    ]
    for title_, rows in facts.items():
        body.append(f"<h3>{_h(title_)}</h3>")
        body.append(_html_table(None, [list(r) for r in rows], "facts"))
    if d.inside is not None:
        body += ['<h2 id="inside">6 Look inside</h2>', f"<p>{_h(_inside_text(d.inside))}</p>",
                 _html_table(["feature", "layer", "unit", "r"], _inside_rows(d.inside), "inside")]
        if d.inside.units:
            best = d.inside.units[0]
            caption = (f"Figure 5: the text coloured by unit {best.unit} (layer {best.layer}), "
                       "the best ranked: blue -1, white 0, red +1; hover a character for its "
                       "loss and the model's guesses for the next one.")
            body += ["<figure>", f'<pre class="inside">{d.inside.coloured_html}</pre>',
                     f"<figcaption>{_h(caption)}</figcaption>", "</figure>"]
    body.append(f"<footer>{_h(t['made'])}</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_h(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
