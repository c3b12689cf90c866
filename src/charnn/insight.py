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

from dataclasses import dataclass

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
