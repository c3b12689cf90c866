"""Reading an exported model folder (charnn export RUN OUT_DIR; export.py writes it) back as
a checkpoint, so that charnn.load, `charnn sample` and `charnn eval` use it as they use the
run's best checkpoint, and give exactly what it gives: the same weights, in the same dtype,
from the same start state.

    OUT_DIR/model.safetensors   the weights under PyTorch's names (layout.py)
    OUT_DIR/config.json         the network's spec (networks.Network), the vocabulary, where
                                sampling starts, and the training facts (export.py writes
                                them)
    OUT_DIR/README.md           the model card (not read)

Every check a checkpoint gets (checkpoint.py) that applies to weights is made here too: the
format, the network's spec, the vocabulary, each tensor's presence, shape, dtype and
finiteness. A problem is one CharnnError naming the folder and what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import layout, tensorfile
from .checkpoint import BEST, Checkpoint, load_checkpoint
from .errors import CharnnError
from .model import Params
from .networks import Network

FORMAT = "charnn-export"
# 1: the network as cell, num_layers, hidden_size, vocab_size and dropout. 2: the network's
# spec as "network" (networks.Network.to_dict); those keys stay, mirroring it, because Hugging
# Face's tools and the model card's PyTorch code read them.
FORMAT_VERSION = 2
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"


def is_export(path: str | Path) -> bool:
    """Whether `path` is an exported model's folder (it holds model.safetensors)."""
    path = Path(path)
    return path.is_dir() and (path / WEIGHTS).is_file()


def open_checkpoint(source: str | Path) -> Checkpoint:
    """What charnn.load reads: a pretrained model's name, a run folder's best checkpoint, a
    checkpoint file, or an exported model's folder."""
    from .bundled import resolve_model
    path = resolve_model(source)
    return read_export(path) if is_export(path) else load_checkpoint(path, prefer=BEST)


def network_fields(network: Network) -> dict:
    """The keys of config.json that state the network under Hugging Face's names."""
    return {"cell": network.cell, "num_layers": network.layers, "hidden_size": network.hidden,
            "vocab_size": network.vocab, "dropout": network.dropout}


def stated_network(config: dict, version: int) -> Network | str:
    """The network config.json states, or what is wrong with it."""
    if version == 1:                     # written before the spec was: its facts in the keys
        stated = {"cell": config.get("cell"), "layers": config.get("num_layers"),
                  "hidden": config.get("hidden_size"), "vocab": config.get("vocab_size"),
                  "dropout": config.get("dropout", 0.0)}
    else:
        stated = config.get("network")
    try:
        network = Network.from_dict(stated)
    except (TypeError, ValueError) as exc:     # TypeError: a cell that is not a string
        return f"is not one charnn has ({exc})"
    if network.vocab is None:
        return "lacks its vocabulary size (vocab)"
    mirrored = network_fields(network)
    differ = [key for key, value in mirrored.items() if config.get(key) != value]
    if version > 1 and differ:
        return (f"is {network.summary()}, but {', '.join(differ)} say otherwise "
                f"({', '.join(f'{key} {config.get(key)!r}' for key in differ)})")
    return network


def read_export(folder: str | Path) -> Checkpoint:
    """An exported model as a checkpoint: its weights, its vocabulary, its training settings
    (as far as config.json keeps them) and its start state as the carried state h."""
    folder = Path(folder)

    def need(ok, problem: str):
        if not ok:
            raise CharnnError(f"{folder}: {problem}; export the model again (charnn export "
                              "RUN OUT_DIR)")

    need((folder / CONFIG).is_file(), f"{CONFIG} is missing")
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        need(False, f"{CONFIG} is not JSON text")
    need(isinstance(config, dict), f"{CONFIG} is not a JSON object")
    need(config.get("format") == FORMAT, f"{CONFIG} does not describe a charnn export "
                                         f"(format {config.get('format')!r})")
    version = config.get("format_version")
    need(isinstance(version, int) and not isinstance(version, bool) and 1 <= version,
         f"{CONFIG} has format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CharnnError(f"{folder} is export format {version}, newer than this charnn reads "
                          f"({FORMAT_VERSION}); upgrade charnn (pip install -U charnn)")
    network = stated_network(config, version)
    if not isinstance(network, Network):
        need(False, f"{CONFIG}'s network {network}")
    K = network.vocab
    vocab = config.get("vocab")
    need(isinstance(vocab, str) and len(vocab) == K and len(set(vocab)) == K,
         f"{CONFIG}'s vocab is not {K} distinct characters (vocab_size)")
    dtype = config.get("torch_dtype")
    need(dtype in ("float32", "float64"), f"{CONFIG}'s torch_dtype is {dtype!r}, where "
                                          "float32 or float64 belongs")

    tensors, _ = tensorfile.read(folder / WEIGHTS)
    shapes = layout.exported_shapes(network)
    missing, unknown = sorted(set(shapes) - set(tensors)), sorted(set(tensors) - set(shapes))
    need(not missing, f"{WEIGHTS} lacks {', '.join(missing[:4])}")
    need(not unknown, f"{WEIGHTS} holds tensors that {network.describe()} has not "
                      f"({', '.join(unknown[:4])})")
    for name, shape in shapes.items():
        a = tensors[name]
        need(a.shape == shape, f"{name} has shape {a.shape}, but {CONFIG} makes it {shape}")
        need(a.dtype == np.dtype(dtype), f"{name} is {a.dtype}, but torch_dtype is {dtype}")
        need(np.isfinite(a).all(), f"{name} holds NaN or infinity")

    params = Params(layout.from_exported(tensors, network)).carrying(network)
    training = config.get("training") if isinstance(config.get("training"), dict) else {}
    settings = training.get("settings") if isinstance(training.get("settings"), dict) else {}
    settings = dict(settings, model=network.cell, layers=network.layers, hidden=network.hidden,
                    dtype=dtype, dropout=network.dropout,
                    output_dropout=network.output_dropout)
    start = tensors[layout.START_STATE].reshape((1,) + network.state_shape)
    meta = {"config": settings, "network": network.to_dict(), "vocab": vocab, "export": config,
            "corpus": {"name": training.get("corpus"), "chars": training.get("corpus_chars")},
            "state": {"iteration": training.get("updates"), "elapsed": training.get("seconds")}}
    return Checkpoint(params=params, meta=meta, h=start)
