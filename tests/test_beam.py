"""Beam search, TrainedModel.analyse and the unit finder, on a small trained model."""

from __future__ import annotations

import math

import numpy as np
import pytest

import charnn
from charnn import cli
from charnn.beam import beam_search
from charnn.insight import correlations, find_units, text_features

from _serve_fixtures import SERVE_TEXT, train_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("beam") / "run")


@pytest.fixture(scope="module")
def model(run):
    return charnn.load(run, backend="numpy")


def test_beam_of_width_one_is_greedy_sampling(model):
    (beam,) = model.beam_search(40, width=1, prime="He said")
    assert beam.text == model.generate(40, prime="He said", greedy=True)


def test_beams_are_best_first_and_their_totals_are_the_models_log_probabilities(model):
    beams = model.beam_search(25, width=4, prime="She")
    assert len(beams) == 4 and len({b.text for b in beams}) == 4
    assert [b.logprob for b in beams] == sorted((b.logprob for b in beams), reverse=True)
    for b in beams:                      # recomputed through analyse: -sum of the losses
        loss = model.analyse("She" + b.text).loss
        assert -np.sum(loss[3:]) == pytest.approx(b.logprob, abs=1e-9)


def test_a_wider_beam_finds_a_continuation_at_least_as_likely(model):
    narrow = model.beam_search(30, width=1, prime="They")[0].logprob
    wide = model.beam_search(30, width=8, prime="They")[0].logprob
    assert wide >= narrow - 1e-12


def test_beam_width_one_step_is_the_sorted_next_character_distribution(model):
    K = len(model.vocab)
    beams = beam_search(model, 1, width=K)
    h, x = model.start_state()
    logp = model.log_probabilities(model.advance(h, x))
    assert [b.logprob for b in beams] == pytest.approx(sorted(logp, reverse=True))


def test_bad_beam_settings_are_refused(model):
    with pytest.raises(charnn.CharnnError, match="width"):
        model.beam_search(10, width=0)
    with pytest.raises(charnn.CharnnError, match="never saw"):
        model.beam_search(10, prime="XYZ")


def test_sample_beam_prints_best_first_with_log_probabilities(run, capsys):
    assert cli.main(["sample", str(run), "--backend", "numpy", "--beam", "3", "-n", "15",
                     "--prime", "He"]) == 0
    out = capsys.readouterr().out
    totals = [float(line.split()[3]) for line in out.splitlines() if line.startswith("#")]
    assert len(totals) == 3 and totals == sorted(totals, reverse=True)
    assert "\nHe" in out


def test_analyse_gives_states_losses_and_top_guesses(model):
    text = 'He said "no" (one).\n'
    a = model.analyse(text)
    assert a.layers[0].shape == (len(text), 16)
    np.testing.assert_allclose(a.layers[0], model.hidden_states(text)[:, 0, 0])   # layer 0's h
    assert math.isnan(a.loss[0]) and np.all(a.loss[1:] >= 0)
    assert np.nanmean(a.loss) == pytest.approx(-np.mean(
        [model.log_probabilities(a.layers[0][t - 1])[model.vocab.index[text[t]]]
         for t in range(1, len(text))]))
    assert len(a.top[0]) == 5 and np.all(np.diff(a.top_p, axis=1) <= 0)
    assert a.top_p.sum(axis=1).max() <= 1 + 1e-9


def test_text_features():
    f = text_features('a "b (c)\nd"')
    assert f["in_quotes"].tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    assert f["in_parentheses"].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0]
    assert f["line_position"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2]
    assert f["word_start"].tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0]
    assert f["after_newline"].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]


def test_unit_finder_finds_a_planted_unit():
    text = SERVE_TEXT[:600]
    quotes = text_features(text)["in_quotes"]
    rng = np.random.default_rng(0)
    states = rng.uniform(-1, 1, (len(text), 8))
    states[:, 5] = 0.9 * quotes - 0.4 + 0.05 * rng.standard_normal(len(text))
    best = [u for u in find_units([states], text) if u.feature == "in_quotes"][0]
    assert best.unit == 5 and best.r > 0.95
    assert correlations(np.ones((4, 2)), np.arange(4.0)).tolist() == [0.0, 0.0]
