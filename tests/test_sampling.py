import numpy as np
import pytest

from charnn.backends import reference
from charnn.corpus import Vocabulary
from charnn.model import softmax
from charnn.networks import Network
from charnn.sampling import SamplingOptions, generate

VOCAB = Vocabulary("abcdef")
LOGITS = np.log(np.array([0.40, 0.25, 0.15, 0.10, 0.06, 0.04]))


def vanilla(m, K, sigma, seed):
    """The vanilla RNN of one layer (the assignment's U, W, b are W_ih0, W_hh0, b_ih0)."""
    return Network("rnn", 1, m, K).initial_params(sigma, np.random.default_rng(seed))


def fixed_distribution_model():
    """W = U = V = 0: every step draws from softmax(c), whatever came before."""
    params = vanilla(4, 6, 0.01, 0)
    for _, a in params.items():
        a[...] = 0
    params.c[:] = LOGITS
    return params


def frequencies(options, n=20000, seed=0):
    text = generate(fixed_distribution_model(), VOCAB, n, np.random.default_rng(seed), reference,
                    options)
    counts = np.array([text.count(ch) for ch in VOCAB.chars])
    return counts / counts.sum()


def test_plain_sampling_follows_the_model_distribution():
    np.testing.assert_allclose(frequencies(SamplingOptions()), np.exp(LOGITS), atol=0.015)


def test_temperature_one_with_no_filter_is_plain_inverse_cdf_sampling():
    params = vanilla(5, 6, 0.5, 1)
    text = generate(params, VOCAB, 300, np.random.default_rng(11), reference, SamplingOptions(),
                    prime="ab")
    # the same draws written out by hand
    rng = np.random.default_rng(11)
    h = reference.advance(params, np.zeros((1, 1, 5)), VOCAB.encode("a"))[0, 0]
    x, out = VOCAB.index["b"], []
    uniforms = np.concatenate([rng.random(64) for _ in range(5)])[:300]
    for u in uniforms:
        h = np.tanh(params.W_hh0 @ h + params.W_ih0[:, x] + params.b_ih0)
        cdf = np.cumsum(softmax(params.V @ h + params.c))
        x = int(np.searchsorted(cdf, u * cdf[-1], side="right"))
        out.append(VOCAB.chars[x])
    assert text == "".join(out)


def test_top_p_never_draws_outside_the_nucleus():
    # 0.40 + 0.25 = 0.65 < 0.7 <= 0.80: the nucleus is {a, b, c}
    freq = frequencies(SamplingOptions(top_p=0.7))
    assert freq[3:].sum() == 0
    np.testing.assert_allclose(freq[:3], np.array([0.40, 0.25, 0.15]) / 0.80, atol=0.015)


def test_top_k_keeps_the_k_most_likely():
    freq = frequencies(SamplingOptions(top_k=2))
    assert freq[2:].sum() == 0
    np.testing.assert_allclose(freq[:2], np.array([0.40, 0.25]) / 0.65, atol=0.015)


def test_low_temperature_approaches_greedy():
    assert frequencies(SamplingOptions(temperature=0.05), n=2000)[0] > 0.99
    assert frequencies(SamplingOptions(greedy=True), n=200)[0] == 1.0
    hot = frequencies(SamplingOptions(temperature=3.0))
    assert hot[-1] > 0.1                                  # flatter than the model's 0.04


def test_stop_at_ends_the_text_after_the_string():
    params = vanilla(8, 6, 0.8, 2)
    text = generate(params, VOCAB, 5000, np.random.default_rng(3), reference, SamplingOptions(),
                    stop_at="ab")
    assert text.endswith("ab") and text.count("ab") == 1


def test_streamed_text_equals_the_returned_text():
    pieces = []
    text = generate(fixed_distribution_model(), VOCAB, 500, np.random.default_rng(4), reference,
                    on_text=pieces.append)
    assert "".join(pieces) == text and len(pieces) > 1


@pytest.mark.parametrize("bad", [dict(temperature=0), dict(temperature=-1), dict(top_p=0),
                                 dict(top_p=1.5), dict(top_k=-1)])
def test_impossible_sampling_options_are_refused(bad):
    from charnn.errors import CharnnError
    with pytest.raises(CharnnError):
        SamplingOptions(**bad).validate()


def test_sampling_from_a_checkpoint_starts_where_training_left_h(tiny_text_file, tmp_path):
    from charnn import TrainConfig, Trainer, load_checkpoint, load_corpus
    from charnn.sampling import carried_state
    corpus = load_corpus(tiny_text_file)
    common = dict(hidden=8, backend="numpy", updates=60, sample_every=60, log_every=20, seed=3)
    Trainer(corpus, TrainConfig(**common), tmp_path / "walk").run()
    Trainer(corpus, TrainConfig(order="shuffled", chunk_length=100, **common),
            tmp_path / "chunks").run()
    walk = load_checkpoint(tmp_path / "walk")
    np.testing.assert_array_equal(carried_state(walk), walk.h[0])     # the pointer walk
    assert carried_state(load_checkpoint(tmp_path / "chunks")) is None  # trained from h = 0
    # a prime runs from the given state
    h0 = carried_state(walk)
    from_carried = generate(walk.params, corpus.vocab, 50, np.random.default_rng(1), reference,
                            prime="All:", h=h0)
    by_hand = generate(walk.params, corpus.vocab, 50, np.random.default_rng(1), reference,
                       h=reference.advance(walk.params, h0, corpus.vocab.encode("All")),
                       x=corpus.vocab.index[":"])
    assert from_carried == by_hand
