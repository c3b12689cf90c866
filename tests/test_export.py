"""charnn export RUN OUT_DIR: the Hugging Face layout, read back by charnn and by PyTorch."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import charnn
from charnn import tensorfile
from charnn.cli import main
from charnn.exported import read_export
from charnn.networks import Network

from _tiny_runs import NETWORKS, TEXT_A, train_tiny


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A small trained run of each network, and its export."""
    root = tmp_path_factory.mktemp("export")
    made = {}
    for model, layers in NETWORKS:
        run = train_tiny(root / model, model, layers)
        assert main(["export", str(run), str(root / f"{model}-export")]) == 0
        made[model] = (run, root / f"{model}-export")
    return made


def cli(capsys, *argv) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("model", [m for m, _ in NETWORKS])
def test_the_export_samples_and_scores_exactly_as_the_best_checkpoint(runs, model, capsys,
                                                                      tmp_path):
    run, out = runs[model]
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json",
                                                     "model.safetensors"]
    for backend in ("numpy",):
        flags = ["-n", "300", "--prime", "The ", "--seed", "7", "--temperature", "0.9",
                 "--backend", backend]
        assert cli(capsys, "sample", str(out), *flags) == cli(capsys, "sample", str(run), *flags)
    text = tmp_path / "t.txt"
    text.write_text(TEXT_A[:600], encoding="utf-8")
    assert cli(capsys, "eval", str(out), str(text), "--backend", "numpy") == \
        cli(capsys, "eval", str(run), str(text), "--backend", "numpy")
    a, b = charnn.load(out, backend="numpy"), charnn.load(run, backend="numpy")
    assert a.vocab == b.vocab and a.params.dtype == b.params.dtype
    assert all(np.array_equal(a.params[n], b.params[n]) for n in b.params.names)
    assert np.array_equal(a.carried, b.carried)


def test_config_json_describes_the_network_and_the_training(runs):
    run, out = runs["lstm"]
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    ckpt = charnn.load_checkpoint(run / "best.npz")
    assert config["network"] == ckpt.network.to_dict()
    assert (config["cell"], config["num_layers"], config["hidden_size"]) == ("lstm", 2, 12)
    assert config["vocab"] == ckpt.meta["vocab"] and config["vocab_size"] == len(config["vocab"])
    assert config["dropout"] == 0.0 and config["torch_dtype"] == "float64"
    t = config["training"]
    assert t["corpus"] == "lstm.txt" and t["updates"] == ckpt.meta["state"]["iteration"]
    assert t["held_out"]["nats"] == pytest.approx(ckpt.meta["state"]["best_value"])
    assert t["held_out"]["bits"] == pytest.approx(t["held_out"]["nats"] / np.log(2))
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "lstm.txt" in card and f"{t['held_out']['bits']:.4f} bits/char" in card
    assert "charnn sample ." in card and "rnn.weight_ih_l0" in card


def test_config_json_states_the_network_as_its_spec_and_format_1_is_still_read(runs,
                                                                               tmp_path):
    import shutil
    run, out = runs["lstm"]
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert Network.from_dict(config["network"]) == \
        charnn.load_checkpoint(run / "best.npz").network
    old = tmp_path / "format-1"                  # before the spec: its facts in the keys alone
    shutil.copytree(out, old)
    first = {k: v for k, v in config.items() if k != "network"}
    (old / "config.json").write_text(json.dumps(dict(first, format_version=1)), "utf-8")
    a, b = read_export(old), read_export(out)
    assert a.network == b.network and a.meta["config"] == b.meta["config"]
    assert all(np.array_equal(a.params[n], b.params[n]) for n in b.params.names)
    bad = tmp_path / "disagrees"
    shutil.copytree(out, bad)
    (bad / "config.json").write_text(json.dumps(dict(config, num_layers=3)), "utf-8")
    with pytest.raises(charnn.CharnnError, match="num_layers say otherwise"):
        read_export(bad)


def test_our_safetensors_files_are_the_libraries(tmp_path):
    st = pytest.importorskip("safetensors.numpy", reason="safetensors is an optional extra")
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3),
              "e": np.zeros((0, 4), np.float32)}
    tensorfile.write(tmp_path / "ours.safetensors", arrays, {"k": "v"})
    theirs = st.load_file(str(tmp_path / "ours.safetensors"))
    assert all(np.array_equal(theirs[k], arrays[k]) for k in arrays)
    st.save_file(arrays, str(tmp_path / "theirs.safetensors"))
    back, _ = tensorfile.read(tmp_path / "theirs.safetensors")
    assert all(np.array_equal(back[k], arrays[k]) and back[k].dtype == arrays[k].dtype
               for k in arrays)


@pytest.mark.parametrize("model", [m for m, _ in NETWORKS])
def test_pytorch_modules_loaded_from_the_export_give_charnns_logits(runs, model):
    """The model card's own PyTorch code, run on the export."""
    pytest.importorskip("torch", reason="PyTorch is an optional extra")
    pytest.importorskip("safetensors.torch", reason="safetensors is an optional extra")
    run, out = runs[model]
    card = (out / "README.md").read_text(encoding="utf-8")
    code, = re.findall(r"```python\n(.*?)```", card, re.S)
    code = code.replace('folder = "."', f"folder = {str(out)!r}")
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    ours = charnn.load(run, backend="numpy")
    h, x = ours.start_state(namespace["prime"])
    expected = ours.logits(ours.advance(h, x))
    assert np.allclose(namespace["logits"].detach().numpy(), expected, atol=1e-10, rtol=1e-10)


def test_the_export_layout_is_the_torch_backends(runs):
    pytest.importorskip("torch", reason="PyTorch is an optional extra")
    from charnn.backends.pytorch import CharNet
    from charnn import layout
    for model, layers in NETWORKS:
        spec = Network(model, layers, hidden=4, vocab=5)
        net = CharNet(spec, per_layer=False)
        theirs = {name: ours for ours, p in net.named.items()
                  for name, q in net.named_parameters() if q is p}
        assert {layout.exported_names(spec)[n]: n for n in net.named} == \
            {("rnn." + k[len("rnns.0."):] if k.startswith("rnns.0.") else k): v
             for k, v in theirs.items()}


def test_a_damaged_export_is_refused_in_one_line(runs, tmp_path, capsys):
    import shutil
    _, out = runs["gru"]
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    tensors, meta = tensorfile.read(bad / "model.safetensors")
    del tensors["rnn.weight_hh_l1"]
    tensorfile.write(bad / "model.safetensors", tensors, meta)
    assert main(["sample", str(bad), "-n", "5"]) == 2
    err = capsys.readouterr().err
    assert "lacks rnn.weight_hh_l1" in err and len(err.strip().splitlines()) == 1
    raw = (out / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    assert main(["eval", str(bad), str(bad / "README.md")]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err
    with pytest.raises(charnn.CharnnError, match="not a readable safetensors"):
        read_export(bad)


def test_export_refuses_a_folder_of_other_files_and_needs_somewhere_to_write(runs, tmp_path,
                                                                              capsys):
    run, _ = runs["rnn"]
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert main(["export", str(run), str(tmp_path / "taken")]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert main(["export", str(run)]) == 2
    assert "--html" in capsys.readouterr().err


def test_an_export_exports_again_to_the_same_files(runs, tmp_path):
    _, out = runs["gru"]
    assert main(["export", str(out), str(tmp_path / "again")]) == 0
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()


def test_the_shipped_models_page_is_under_5_mb(tmp_path):
    page = tmp_path / "shakespeare.html"
    assert main(["export", "shakespeare", "--html", str(page)]) == 0
    assert page.stat().st_size < 5 * 2**20
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text
