"""Looking inside a model: which hidden units track which simple features of a text.

After reading text[t] the network is in state h_t. For a few features of the text at t,

    in_quotes       inside "double quotes" (an odd number of them read so far)
    in_parentheses  inside ( ... ) (more opened than closed so far)
    line_position   characters read since the last newline
    word_start      text[t] is a letter that starts a word
    after_newline   text[t] is a newline

each unit j gets |r|, the absolute Pearson correlation of h_t[j] with the feature over the
text, as in Karpathy, Johnson and Fei-Fei's "Visualizing and Understanding Recurrent
Networks" (2015), which found quote, bracket and line-length cells this way. A feature the
text does not vary (no quotes at all) is left out.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

FEATURES = {
    "in_quotes": "inside double quotes",
    "in_parentheses": "inside parentheses",
    "line_position": "position in the line",
    "word_start": "start of a word",
    "after_newline": "after a newline",
}


def text_features(text: str) -> dict[str, np.ndarray]:
    """Each feature of FEATURES at every character of `text`, as floats (len(text),)."""
    T = len(text)
    out = {name: np.zeros(T) for name in FEATURES}
    quotes = depth = column = 0
    previous_letter = False
    for t, ch in enumerate(text):
        quotes += ch == '"'
        depth = depth + 1 if ch == "(" else max(depth - 1, 0) if ch == ")" else depth
        column = 0 if ch == "\n" else column + 1
        letter = ch.isalpha()
        out["in_quotes"][t] = quotes % 2
        out["in_parentheses"][t] = depth > 0 or ch == ")"
        out["line_position"][t] = column
        out["word_start"][t] = letter and not previous_letter
        out["after_newline"][t] = ch == "\n"
        previous_letter = letter
    return out


@dataclass
class UnitMatch:
    feature: str       # a key of FEATURES
    layer: int
    unit: int
    r: float           # Pearson correlation (signed); ranked by |r|


def correlations(states: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson r of every column of states (T, m) with feature (T,); 0 where either is
    constant."""
    s = states - states.mean(axis=0)
    f = feature - feature.mean()
    denom = np.sqrt((s * s).sum(axis=0) * (f * f).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (f @ s) / denom
    return np.where(denom > 0, r, 0.0)


def find_units(layers: list[np.ndarray], text: str, per_feature: int = 3) -> list[UnitMatch]:
    """For each feature the text varies, the `per_feature` units (over all layers) whose
    activation tracks it best, by |r|; all of them sorted by |r|, best first."""
    matches = []
    for name, feature in text_features(text).items():
        if feature.std() == 0:
            continue
        found = [UnitMatch(name, l, j, float(r)) for l, states in enumerate(layers)
                 for j, r in enumerate(correlations(np.asarray(states, np.float64), feature))]
        found.sort(key=lambda u: -abs(u.r))
        matches += found[:per_feature]
    matches.sort(key=lambda u: -abs(u.r))
    return matches


# -- a text to look inside with --------------------------------------------------------------

DEFAULT_TEXT = 1_000        # characters of the default text


def default_text(run: Path, model) -> tuple[str, str]:
    """(text, where it comes from): a stretch of the run's held-out part (runs on the bundled
    corpus), else the run's latest training sample, else a text the model draws. Nothing
    outside the run folder (and charnn's own data) is read."""
    import json
    from .run_folder import CONFIG, RunFolder
    try:
        doc = json.loads((Path(run) / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = {}
    corpus, config = doc.get("corpus", {}), doc.get("config", {})
    if corpus.get("source") == "shakespeare":
        text = _bundled_text()
        held = int(round(config.get("val_frac", 0) * len(text)))
        if held >= 200 and config.get("order", "sequential") == "sequential":
            start = len(text) - held
            return text[start:start + DEFAULT_TEXT], "the run's held-out part"
        return text[-DEFAULT_TEXT:], "the training text's tail"
    try:
        samples = RunFolder(run).read_samples() if Path(run).is_dir() else []
    except Exception:                                  # noqa: BLE001 - a damaged file: skip it
        samples = []
    if samples:
        text = "".join(ch for ch in samples[-1]["text"][:DEFAULT_TEXT] if ch in model.vocab)
        if text:
            return text, f"the run's sample at update {samples[-1]['iteration']:,}"
    return model.generate(DEFAULT_TEXT, seed=0), "a text the model draws"


@lru_cache(maxsize=1)
def _bundled_text() -> str:
    from .corpus import bundled_bytes
    return bundled_bytes().decode("utf-8")


# -- the same picture as a static page (charnn inspect --html) -------------------------------

def _unit_colour(a: float) -> str:
    if not math.isfinite(a):
        return "transparent"
    rgb = "229,57,53" if a >= 0 else "30,136,229"
    return f"rgba({rgb},{min(1.0, abs(a)):.3f})"


def _loss_colour(loss: float) -> str:
    return "transparent" if not math.isfinite(loss) else f"rgba(211,47,47,{min(1.0, loss / 6):.3f})"


def _coloured(analysis, colours: list[str]) -> str:
    spans = []
    for t, ch in enumerate(analysis.text):
        guesses = ", ".join(f"{c!r} {p:.1%}" for c, p in zip(analysis.top[t], analysis.top_p[t]))
        loss = analysis.loss[t]
        title = (f"{ch!r}: loss {loss:.3f} nats" if math.isfinite(loss) else f"{ch!r}") + \
            f"; next: {guesses}"
        shown = "\u21b5\n" if ch == "\n" else html.escape(ch)
        spans.append(f'<span style="background:{colours[t]}" title="{html.escape(title)}">'
                     f"{shown}</span>")
    return "".join(spans)


def coloured_by_unit(analysis, layer: int, unit: int) -> str:
    """HTML spans: the text coloured by one unit's activation (blue -1, white 0, red +1),
    each character's loss and the model's top guesses in its title."""
    return _coloured(analysis, [_unit_colour(float(a)) for a in analysis.layers[layer][:, unit]])


def inspect_html(analysis, units: list[UnitMatch], unit: int, layer: int, title: str,
                 source: str) -> str:
    """A self-contained page: the text coloured by one unit's activation, then by each
    character's loss, and the units the finder ranked. Hovering a character shows its loss and
    the model's top guesses for the next one."""
    states = analysis.layers[layer][:, unit]
    scored = analysis.loss[1:]
    bits = float(np.mean(scored) / math.log(2)) if len(scored) else float("nan")
    rows = "".join(f"<tr><td>{FEATURES[u.feature]}</td><td>{u.layer}</td><td>{u.unit}</td>"
                   f"<td>{u.r:+.3f}</td></tr>" for u in units)
    style = ("body{font:14px/1.45 system-ui,sans-serif;margin:2em;max-width:1000px;color:#222}"
             ".text{font-family:ui-monospace,monospace;white-space:pre-wrap;border:1px solid #ddd;"
             "padding:.8em;word-break:break-all}td,th{padding:.2em .8em;text-align:left}")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>text: {html.escape(source)}, {len(analysis.text):,} characters. Hover a "
            "character for its loss and the model's top guesses for the next one.</p>"
            f"<h2>Layer {layer}, unit {unit}</h2><p>its activation after each character: blue "
            f"&minus;1, white 0, red +1</p><div class=text id=unit>"
            f"{_coloured(analysis, [_unit_colour(float(a)) for a in states])}</div>"
            f"<h2>Surprise</h2><p>each character's loss, white 0 to red 6 nats; mean "
            f"{bits:.3f} bits per character</p><div class=text id=surprise>"
            f"{_coloured(analysis, [_loss_colour(float(x)) for x in analysis.loss])}</div>"
            "<h2>Units that track features of the text</h2><table><tr><th>feature</th>"
            f"<th>layer</th><th>unit</th><th>r</th></tr>{rows}</table></body></html>\n")
