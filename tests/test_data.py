import random
import sys
from pathlib import Path

import numpy as np
import pytest

from charnn import data as data_module
from charnn.config import TrainConfig
from charnn.corpus import END_OF_RECORD, Corpus, load_corpus
from charnn.data import build_dataset, epoch_schedule, epoch_updates
from charnn.errors import CharnnError
from charnn.options import message_of

sys.path.insert(0, str(Path(__file__).parent))
import _reference as old  # noqa: E402


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
    path = tmp_path / "two.txt"
    path.write_text("one\ntwo\n")
    corpus = load_corpus(path, records=True)
    with pytest.raises(CharnnError, match="val_frac"):
        build_dataset(corpus, TrainConfig(records=True, val_frac=0.99))


# -- the same datasets and schedules as the code before (tests/_reference.py) -----------------


def assert_same_schedule(new, ref):
    assert len(new) == len(ref)
    for name in ("starts", "lengths", "resets"):
        a, b = getattr(new, name), getattr(ref, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_array_equal(a, b, err_msg=name)


def compare(text, compiled, **settings):
    """build_dataset, epoch_schedule and epoch_updates against the old code, or the same
    CharnnError; returns what was compared."""
    config = TrainConfig(**settings)
    records = dict(records=config.records, record_separator=config.record_separator)
    old_c = old.old_corpus(text, **records)
    new_c = Corpus.from_text(text, **records)
    try:
        ref = old.build_dataset(old_c, config)
        ref_schedules = [old.epoch_schedule(ref, config, e) for e in (1, 2)]
    except CharnnError as exc:
        with pytest.raises(CharnnError) as caught:
            ds = build_dataset(new_c, config)
            epoch_schedule(ds, config, 1)
        assert message_of(caught.value) == str(exc)      # as the command line says it
        return "same error"
    if config.batch_size > len(ref.train) and (config.records or config.order == "shuffled"):
        with pytest.raises(CharnnError, match=f"batch_size {config.batch_size} is more than"):
            build_dataset(new_c, config)
        return "refused"
    ds = build_dataset(new_c, config)
    np.testing.assert_array_equal(ds.data, ref.data)
    for name in ("train", "val"):
        a, b = getattr(ds, name), getattr(ref, name)
        assert a.dtype == np.int64 and a.shape == b.shape, name
        np.testing.assert_array_equal(a, b)
    assert ds.full_windows_only == ref.full_windows_only
    old_threshold = data_module.COMPILE_ABOVE
    data_module.COMPILE_ABOVE = 0 if compiled else 10 ** 9
    try:
        for epoch, ref_schedule in zip((1, 2), ref_schedules):
            assert_same_schedule(epoch_schedule(ds, config, epoch), ref_schedule)
            assert epoch_updates(ds, config, epoch) == len(ref_schedule)
    finally:
        data_module.COMPILE_ABOVE = old_threshold
    return "same arrays"

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
        "All:\nSpeak, speak.\n\n \n\nFirst Citizen:\nYou are all resolved rather to die than "
        "to famish?\n\nAll:\nResolved. resolved.\n\n") * 7


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("settings", [
    dict(),
    dict(seq_length=7, batch_size=5),
    dict(seq_length=10, val_frac=0.3),
    dict(seq_length=13, batch_size=3, val_frac=0.1, seed=4),
    dict(order="shuffled", chunk_length=50, seq_length=9),
    dict(order="shuffled", chunk_length=37, seq_length=5, batch_size=4, val_frac=0.2, seed=2),
    dict(order="shuffled", chunk_length=1000, seq_length=25, batch_size=2, val_frac=0.05),
    dict(records=True, seq_length=8),
    dict(records=True, seq_length=4, batch_size=3, val_frac=0.25),
    dict(records=True, order="shuffled", seq_length=6, batch_size=5, val_frac=0.1, seed=9),
    dict(records=True, order="shuffled", seq_length=3, batch_size=8),
    dict(records=True, record_separator="\n\n", seq_length=11, batch_size=2),
    dict(records=True, record_separator="e", order="shuffled", seq_length=2, batch_size=7),
])
def test_the_same_datasets_and_schedules_as_before(settings, compiled):
    assert compare(TEXT, compiled, **settings) == "same arrays"


def test_random_settings_give_the_same_schedules_as_before():
    rng, outcomes = random.Random(11), []
    for trial in range(160):
        text = "".join(rng.choice(["ab", "c", " ", "\n", "de\n", "\n\n", "f"])
                       for _ in range(rng.randint(1, 400)))
        settings = dict(seq_length=rng.randint(1, 12), batch_size=rng.choice([1, 1, 2, 3, 8]),
                        val_frac=rng.choice([0, 0, 0.1, 0.4]), seed=rng.randint(0, 5),
                        order=rng.choice(["sequential", "shuffled"]),
                        records=rng.random() < 0.5,
                        record_separator=rng.choice(["\n", "\n\n", "c"]))
        settings["chunk_length"] = settings["seq_length"] + rng.randint(1, 30)
        outcomes.append(compare(text, compiled=rng.random() < 0.5, **settings))
    assert outcomes.count("same arrays") > 100


def test_greedy_lanes_compiled_equal_argmin_on_many_segments():
    """The heap gives np.argmin's lane (fewest windows, lowest lane on ties) for every
    segment, compiled as in Python."""
    rng = np.random.default_rng(3)
    for B, S in [(1, 50), (3, 200), (8, 5000), (33, 3000)]:
        lengths = rng.choice([2, 3, 4, 9, 30], size=S)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        order = rng.permutation(S)
        expected, load = [], np.zeros(B, np.int64)
        for j in order:
            w = (ends[j] - 2 - starts[j]) // 4 + 1
            lane = int(np.argmin(load))
            expected.append(lane)
            load[lane] += w
        for threshold in (10 ** 9, 0):
            data_module.COMPILE_ABOVE = threshold
            try:
                lanes, got = np.empty(S, np.int32), np.zeros(B, np.int64)
                data_module._run(data_module._greedy_lanes, S, starts, ends, order, 4, False, B,
                                 lanes, got)
            finally:
                data_module.COMPILE_ABOVE = 4096
            assert lanes.tolist() == expected and got.tolist() == load.tolist()


def test_more_lanes_than_chunks_or_records_is_refused_up_front():
    c = Corpus.from_text("one\ntwo\nthree\n", records=True)
    with pytest.raises(CharnnError, match=r"batch_size 4 is more than the 3 training records; "
                                          r"give batch_size 3 or less"):
        build_dataset(c, TrainConfig(records=True, batch_size=4))
    c = Corpus.from_text("x" * 250)
    with pytest.raises(CharnnError, match=r"batch_size 4 is more than the 3 training chunks"):
        build_dataset(c, TrainConfig(order="shuffled", chunk_length=100, batch_size=4))
    build_dataset(c, TrainConfig(order="shuffled", chunk_length=100, batch_size=3))


def test_a_bounded_prefix_of_the_held_out_part():
    c = Corpus.from_text("".join(f"record {i}\n" for i in range(50)), records=True)
    ds = build_dataset(c, TrainConfig(records=True, val_frac=0.2))
    lengths = ds.val[:, 1] - ds.val[:, 0]
    assert ds.val_prefix(10 ** 9) is ds.val
    for n in (2, 10, 11, 12, 25, int(lengths.sum()) - 1):
        prefix = ds.val_prefix(n)
        got = prefix[:, 1] - prefix[:, 0]
        assert got.sum() <= n and (got >= 2).all()
        assert got.sum() >= n - 1
        np.testing.assert_array_equal(prefix[:, 0], ds.val[:len(prefix), 0])
    assert len(ds.val_prefix(1)) == 0


def _double(a):
    return a * 2


def test_the_data_layouts_compile_is_announced_once(tmp_path, monkeypatch, capsys):
    from charnn import data
    monkeypatch.setattr(data, "_compile_marker", lambda function: tmp_path / function.__name__)
    monkeypatch.setattr(data, "_compiled", {})
    big = data.COMPILE_ABOVE + 1
    assert data._run(_double, big, 3) == 6
    assert "compiling the data layout's _double once" in capsys.readouterr().err
    monkeypatch.setattr(data, "_compiled", {})               # a later process: marker found
    assert data._run(_double, big, 4) == 8 and data._run(_double, 1, 5) == 10
    assert capsys.readouterr().err == ""
