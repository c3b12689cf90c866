"""The network as one stated object (networks.Network): its parameters, state, count, scale
and description for every network; what the checkpoints, the trainer's memory check, the
command line's errors and inspect read from it."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from charnn import TrainConfig, Trainer, load_checkpoint, load_corpus
from charnn.checkpoint import LATEST, save_checkpoint
from charnn.cli import chosen_unit, main
from charnn.errors import CharnnError, SettingError, setting
from charnn.insight import UnitMatch
from charnn.model import Params
from charnn.networks import CELLS, Network, network_of, state_shape
from charnn.options import message_of
from charnn.train import check_memory, describe_network, initial_state, memory_needed
from conftest import TINY_TEXT

K = 11
NETWORKS = [Network("rnn", 1, 7, K), Network("lstm", 1, 6, K), Network("lstm", 2, 5, K, 0.2),
            Network("gru", 1, 4, K), Network("gru", 3, 3, K)]
IDS = [f"{n.cell}-{n.layers}" for n in NETWORKS]


# -- the spec itself --------------------------------------------------------------------------

@pytest.mark.parametrize("spec", NETWORKS, ids=IDS)
def test_shapes_and_count_are_those_of_the_initial_parameters(spec):
    params = spec.initial_params(rng=np.random.default_rng(0))
    assert params.network is spec
    assert {n: a.shape for n, a in params.items()} == spec.param_shapes()
    assert spec.param_names == params.names
    assert spec.param_count == sum(a.size for _, a in params.items())
    # the same arrays, with no spec carried, are recognised as this network
    bare = Params(dict(params.items()))
    assert bare.network is None and Network.of_params(bare) == spec.__class__(
        spec.cell, spec.layers, spec.hidden, spec.vocab)
    assert network_of(bare) is spec.module and state_shape(bare) == spec.state_shape


def test_the_counts_by_hand():
    m, l, k = 512, 2, 80
    lstm = 4 * m * (k + m + 2) + 4 * m * (m + m + 2) + k * m + k
    assert Network("lstm", l, m, k).param_count == lstm
    assert Network("rnn", 1, 100, 65).param_count == 100 * 65 * 2 + 100 * 100 + 100 + 65
    gru = 3 * 1024 * (k + 1024 + 2) + 2 * 3 * 1024 * (2 * 1024 + 2) + k * 1024 + k
    assert Network("gru", 3, 1024, k).param_count == gru


@pytest.mark.parametrize("spec", NETWORKS, ids=IDS)
def test_the_state_and_its_layout(spec):
    zeros = spec.zero_state(np.float32, lanes=3)
    assert zeros.shape == (3,) + spec.state_shape and zeros.dtype == np.float32
    assert spec.layered_shape == (spec.layers, spec.state_vectors, spec.hidden)
    assert spec.layered(zeros).shape == (3,) + spec.layered_shape
    assert spec.unlayered(spec.layered(zeros)).shape == zeros.shape
    states = np.arange(np.prod(spec.state_shape) * 2, dtype=float).reshape(
        (2,) + spec.state_shape)
    assert spec.hidden_of(states).shape == (2, spec.layers, spec.hidden)
    np.testing.assert_array_equal(spec.top_hidden(states),
                                  spec.layered(states)[:, -1, 0, :])
    # the networks' interface starts from this layout
    assert spec.module.zero_state(spec.hidden, spec.layers).shape == spec.layered_shape
    assert spec.state_shape == spec.layered_shape      # every cell's, the vanilla RNN's too


def test_the_default_scale_is_stated_once_and_followed():
    assert Network("rnn", 1, 100).default_sigma == 0.01
    assert Network("gru", 2, 64).default_sigma == 1 / 8
    assert Network("lstm", 1, 256).default_sigma == 1 / 16
    for cell in CELLS:
        config = TrainConfig(model=cell, hidden=64)
        assert config.sigma == config.network().default_sigma
    assert TrainConfig(model="lstm", hidden=64, sigma=0.5).sigma == 0.5


@pytest.mark.parametrize("spec, words, short", [
    (Network("rnn", 1, 100, 65), "the vanilla RNN of 100 units", "vanilla RNN, m = 100, K = 65"),
    (Network("gru", 2, 256, 65), "a GRU of 2 layers of 256 units", "GRU, 2 layers, m = 256, K = 65"),
    (Network("gru", 1, 256), "a GRU of 256 units", "GRU, m = 256"),
    (Network("lstm", 2, 128, 80, 0.2), "an LSTM of 2 layers of 128 units, dropout 0.2 between them",
     "LSTM, 2 layers, m = 128, K = 80, dropout 0.2"),
    (Network("lstm", 1, 64, 80), "an LSTM of 64 units", "LSTM, m = 64, K = 80"),
    (Network("gru", 2, 64, 80, 0.2, 0.3),
     "a GRU of 2 layers of 64 units, dropout 0.2 between them and 0.3 on the output",
     "GRU, 2 layers, m = 64, K = 80, dropout 0.2, output dropout 0.3"),
    (Network("rnn", 1, 100, 65, 0.0, 0.1), "a vanilla RNN of 100 units, dropout 0.1 on the output",
     "vanilla RNN, m = 100, K = 65, output dropout 0.1"),
])
def test_every_network_in_words(spec, words, short):
    assert spec.describe() == str(spec) == words
    assert spec.summary() == short
    config = TrainConfig(model=spec.cell, layers=spec.layers, hidden=spec.hidden,
                         dropout=spec.dropout, output_dropout=spec.output_dropout)
    assert describe_network(config) == words


def test_a_spec_round_trips_and_refuses_what_no_network_is():
    spec = Network("lstm", 2, 5, K, 0.1, 0.25)
    assert Network.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    # a spec saved before dropout on the output was a fact of the network drops none there
    saved = {name: value for name, value in spec.to_dict().items() if name != "output_dropout"}
    assert Network.from_dict(saved).output_dropout == 0.0
    with pytest.raises(ValueError, match="output dropout 1.5 is not a probability"):
        Network.from_dict(dict(saved, output_dropout=1.5))
    for bad in ({"cell": "qrnn", "layers": 1, "hidden": 4, "vocab": 3, "dropout": 0},
                {"cell": "rnn", "layers": 0, "hidden": 4, "vocab": 3, "dropout": 0},
                {"cell": "gru", "layers": 1, "hidden": 0, "vocab": 3, "dropout": 0},
                {"cell": "gru", "layers": 1, "hidden": 4, "vocab": 3},
                ["gru"]):
        with pytest.raises(ValueError):
            Network.from_dict(bad)
    with pytest.raises(ValueError, match="vocabulary"):
        Network("gru", 1, 4).param_shapes()


def test_parameters_of_no_network_are_named_as_such():
    with pytest.raises(ValueError, match="no network"):
        Network.of_params({"V": np.zeros((3, 2)), "c": np.zeros(3), "X": np.zeros(4)})


def test_copies_keep_the_spec():
    spec = Network("gru", 2, 3, K)
    params = spec.initial_params()
    for other in (params.copy(), params.astype(np.float32), Params.zeros_like(params)):
        assert other.network is spec


# -- the memory check -------------------------------------------------------------------------

@pytest.mark.parametrize("cell, layers", [(cell, layers) for cell in CELLS for layers in (1, 2)]
                         + [("gru", 3)])
@pytest.mark.parametrize("optimizer", ["adagrad", "adam"])
def test_check_memory_counts_the_networks_real_parameters(cell, layers, optimizer):
    config = TrainConfig(model=cell, layers=layers, hidden=6, optimizer=optimizer)
    counted, needed = memory_needed(config, K)
    assert counted == config.network(K).param_count
    assert counted == sum(a.size for _, a in initial_state(config, K).params.items())
    assert needed > counted * 8


def test_a_network_too_big_names_itself_and_the_flag(monkeypatch):
    monkeypatch.setattr("charnn.train.memory_available", lambda: 100 * 2**20)
    config = TrainConfig(model="lstm", layers=2, hidden=512)
    with pytest.raises(SettingError) as caught:
        check_memory(config, 80)
    library = str(caught.value)
    assert "an LSTM of 2 layers of 512 units (3,358,800 parameters)" in library
    assert "give a smaller hidden or fewer layers" in library and "--" not in library
    assert "give a smaller --hidden or fewer --layers" in message_of(caught.value)


# -- errors name settings, the command line its flags -------------------------------------------

def test_setting_errors_read_as_the_caller_wrote_them():
    exc = SettingError(f"{setting('batch_size')} 9 is more than 3; give {setting('batch_size')} 3")
    assert str(exc) == "batch_size 9 is more than 3; give batch_size 3"
    assert exc.settings == ("batch_size",)
    assert message_of(exc) == "--batch-size 9 is more than 3; give --batch-size 3"
    assert message_of(CharnnError("plain")) == "plain"
    with pytest.raises(CharnnError, match="^hidden is 0; give a whole number"):
        TrainConfig(hidden=0).validate()
    with pytest.raises(CharnnError, match="^dropout 0.2 acts between stacked layers; give "
                                          "layers 2 or more"):
        TrainConfig(dropout=0.2).validate()
    with pytest.raises(CharnnError, match="^output_dropout is 1; give a probability"):
        TrainConfig(output_dropout=1).validate()
    TrainConfig(output_dropout=0.5).validate()                   # one layer can drop its output


def test_the_command_line_names_the_flag(tiny_text_file, tmp_path, capsys):
    assert main(["train", str(tiny_text_file), "--dropout", "0.2", "--out",
                 str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--dropout 0.2 acts between stacked layers; give --layers 2 or more" in err


# -- checkpoints state their network ------------------------------------------------------------

@pytest.fixture(scope="module")
def gru_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("spec")
    text = root / "tiny.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    config = TrainConfig(model="gru", layers=2, hidden=6, backend="numpy", seq_length=10,
                         updates=10, sample_every=10, sample_length=20, log_every=10,
                         checkpoint_every=10, seed=1)
    Trainer(load_corpus(text), config, root / "run").run()
    return root / "run"


def _meta(path):
    with np.load(path) as z:
        return json.loads(z["meta"].tobytes())


def test_a_checkpoint_states_its_network_and_round_trips(gru_run, tmp_path):
    ckpt = load_checkpoint(gru_run / LATEST)
    K = len(ckpt.meta["vocab"])
    spec = Network("gru", 2, 6, K, 0.0)
    assert _meta(gru_run / LATEST)["network"] == spec.to_dict()
    assert ckpt.network == spec and ckpt.params.network == spec
    assert ckpt.h.shape == (1,) + spec.state_shape
    save_checkpoint(tmp_path / "c.npz", ckpt)
    back = load_checkpoint(tmp_path / "c.npz")
    assert back.network == spec and back.meta == ckpt.meta


def test_a_checkpoint_without_the_spec_still_loads(gru_run, tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(gru_run, folder)
    with np.load(folder / LATEST) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("meta").tobytes())
    del meta["network"]                             # as written before the spec was
    np.savez(folder / LATEST, **arrays,
             meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    ckpt = load_checkpoint(folder / LATEST)
    assert "network" not in ckpt.meta
    assert ckpt.network == Network("gru", 2, 6, len(meta["vocab"]))
    assert ckpt.params.network == ckpt.network


def test_the_first_format_reads_as_the_vanilla_rnn():
    from pathlib import Path
    ckpt = load_checkpoint(Path(__file__).parent / "data" / "checkpoint-format1.npz")
    assert ckpt.network.cell == "rnn" and ckpt.network.hidden == 12
    assert ckpt.network.state_shape == ckpt.h.shape[1:]


@pytest.mark.parametrize("stated, expected", [
    ({"cell": "lstm", "layers": 2, "hidden": 6, "vocab": None, "dropout": 0.0},
     "states its network is LSTM, 2 layers, m = 6, but its config and vocabulary make GRU"),
    ("gru", "is not one charnn writes"),
])
def test_a_checkpoint_whose_stated_network_disagrees_is_refused(gru_run, tmp_path, stated,
                                                                expected):
    folder = tmp_path / "bad"
    shutil.copytree(gru_run, folder)
    with np.load(folder / LATEST) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("meta").tobytes())
    meta["network"] = stated
    np.savez(folder / LATEST, **arrays,
             meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(CharnnError, match=expected):
        load_checkpoint(folder / LATEST)


def test_a_loaded_model_knows_its_network(gru_run):
    import charnn
    model = charnn.load(gru_run, backend="numpy")
    assert model.network.describe() == "a GRU of 2 layers of 6 units"
    analysis = model.analyse("the ")
    assert len(analysis.layers) == 2 and analysis.layers[1].shape == (4, 6)


# -- inspect colours the best unit's own layer -------------------------------------------------

def test_the_chosen_unit_brings_its_layer():
    units = [UnitMatch("in_quotes", 1, 181, 0.9), UnitMatch("after_newline", 0, 7, 0.5)]
    assert chosen_unit(units, None, None) == (1, 181)
    assert chosen_unit(units, 0, None) == (0, 7)       # the best of the layer given
    assert chosen_unit(units, None, 3) == (0, 3)       # a unit given: layer 0 unless given
    assert chosen_unit(units, 1, 3) == (1, 3)
    assert chosen_unit([], None, None) == (0, 0)


def test_inspect_colours_the_layer_of_the_best_unit(gru_run, tmp_path, capsys, monkeypatch):
    from charnn import insight
    found = [UnitMatch("in_quotes", 1, 4, 0.9)]
    monkeypatch.setattr(insight, "find_units", lambda layers, text, per_feature=3: found)
    seen = {}
    real = insight.inspect_html

    def spy(analysis, units, unit, layer, title, source):
        seen.update(unit=unit, layer=layer, title=title)
        return real(analysis, units, unit, layer, title, source)

    monkeypatch.setattr(insight, "inspect_html", spy)
    text = tmp_path / "t.txt"
    text.write_text(TINY_TEXT[:300])
    out = tmp_path / "page.html"
    assert main(["inspect", str(gru_run), str(text), "--html", str(out),
                 "--backend", "numpy"]) == 0
    assert seen["layer"] == 1 and seen["unit"] == 4
    assert "layer 1 unit 4" in seen["title"] and "Layer 1, unit 4" in out.read_text()
    assert "(layer 1 unit 4)" in capsys.readouterr().out


def test_config_network_matches_the_trainers(gru_run):
    ckpt = load_checkpoint(gru_run / LATEST)
    config = TrainConfig.from_dict(ckpt.meta["config"])
    assert config.network(len(ckpt.meta["vocab"])) == ckpt.network
    assert math.isclose(config.sigma, ckpt.network.default_sigma)
