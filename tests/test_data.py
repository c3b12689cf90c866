import numpy as np
import pytest

from charnn.config import TrainConfig
from charnn.corpus import END_OF_RECORD, load_corpus
from charnn.data import build_dataset, epoch_schedule


def windows(sched, lane=0):
    rows = sched.lengths[:, lane] > 0
    return list(zip(sched.starts[rows, lane], sched.lengths[rows, lane], sched.resets[rows, lane]))


def test_sequential_walk_is_the_assignments_pointer(tiny_text_file):
    corpus = load_corpus(tiny_text_file)
    config = TrainConfig(seq_length=25)
    ds = build_dataset(corpus, config)
    sched = epoch_schedule(ds, config, 1)
    N = len(corpus.text)
    assert len(sched) == (N - 26) // 25 + 1
    w = windows(sched)
    assert [s for s, _, _ in w] == list(range(0, N - 25, 25))[: len(sched)]
    assert all(L == 25 for _, L, _ in w)
    assert [r for _, _, r in w] == [1] + [0] * (len(w) - 1)      # h reset only at the epoch start
    assert w[-1][0] + 25 + 1 <= N


def test_validation_tail_is_never_trained_on(tiny_text_file):
    corpus = load_corpus(tiny_text_file)
    config = TrainConfig(val_frac=0.2)
    ds = build_dataset(corpus, config)
    (v0, v1), = ds.val
    assert v1 == len(corpus.text) and v1 - v0 == round(0.2 * len(corpus.text))
    sched = epoch_schedule(ds, config, 1)
    assert (sched.starts[:, 0] + sched.lengths[:, 0] + 1 <= v0).all()


def test_batch_lanes_are_contiguous_streams(tiny_text_file):
    corpus = load_corpus(tiny_text_file)
    config = TrainConfig(batch_size=4, seq_length=10)
    sched = epoch_schedule(build_dataset(corpus, config), config, 1)
    stream = len(corpus.text) // 4
    for lane in range(4):
        w = windows(sched, lane)
        assert w[0][0] == lane * stream and w[0][2] == 1
        assert all(b[0] - a[0] == 10 for a, b in zip(w, w[1:]))


def test_shuffled_chunks_cover_the_text_in_a_new_order_each_epoch(tiny_text_file):
    corpus = load_corpus(tiny_text_file)
    config = TrainConfig(order="shuffled", chunk_length=100, seq_length=30)
    ds = build_dataset(corpus, config)
    e1, e2 = epoch_schedule(ds, config, 1), epoch_schedule(ds, config, 2)
    assert sorted(e1.starts[:, 0].tolist()) == sorted(e2.starts[:, 0].tolist())
    assert e1.starts[:, 0].tolist() != e2.starts[:, 0].tolist()
    # every chunk start resets h, and no window crosses a chunk's end
    resets = e1.starts[e1.resets[:, 0] == 1, 0]
    assert sorted(resets.tolist()) == list(range(0, len(corpus.text) - 1, 100))
    ends = (e1.starts[:, 0] // 100) * 100 + 100
    assert (e1.starts[:, 0] + e1.lengths[:, 0] + 1 <= np.minimum(ends, len(corpus.text)) ).all()


def test_records_never_train_across_a_boundary(tmp_path):
    path = tmp_path / "tweets.txt"
    path.write_text("short one\nа second, longer record of text\n\nthird\n", encoding="utf-8")
    corpus = load_corpus(path, records=True)
    assert END_OF_RECORD in corpus.vocab and len(corpus.records) == 3
    config = TrainConfig(records=True, seq_length=8)
    ds = build_dataset(corpus, config)
    eor = corpus.vocab.index[END_OF_RECORD]
    sched = epoch_schedule(ds, config, 1)
    for (start, length, reset) in windows(sched):
        x = ds.data[start:start + length + 1]
        # a window may start at a record's opening marker and end at its closing one,
        # but no marker sits strictly inside it
        assert eor not in x[1:-1].tolist()
    assert sum(r for _, _, r in windows(sched)) == 3


def test_val_frac_too_large_for_a_tiny_record_corpus(tmp_path):
    from charnn.errors import CharnnError
    path = tmp_path / "two.txt"
    path.write_text("one\ntwo\n")
    corpus = load_corpus(path, records=True)
    with pytest.raises(CharnnError, match="--val-frac"):
        build_dataset(corpus, TrainConfig(records=True, val_frac=0.99))
