"""`charnn export MODEL OUT_DIR`: a trained model in the Hugging Face layout, and `--html
OUT.html`: the model as one web page that writes text by itself (page.py).

    OUT_DIR/model.safetensors   the weights under PyTorch's names and layouts (layout.py); the
                                format holds only arrays, so loading it runs no code
    OUT_DIR/config.json         the network's spec (networks.Network.to_dict: cell, layers,
                                hidden size, vocabulary size, dropout; mirrored under Hugging
                                Face's names), the dtype, the vocabulary, and the training
                                facts: corpus, updates, seconds, held-out figure, every setting
    OUT_DIR/README.md           the model card: what it learnt from, for how long, how well,
                                how to sample from it, and how to load it into PyTorch

charnn.load(OUT_DIR), `charnn sample OUT_DIR` and `charnn eval OUT_DIR` read the folder back
(exported.py) and give what the checkpoint it came from gives.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from . import __version__, layout, tensorfile
from .errors import CharnnError
from .evaluation import carries_state
from .exported import (CARD, CONFIG, FORMAT, FORMAT_VERSION, WEIGHTS, network_fields,
                       open_checkpoint)
from .networks import Network

# What the model card says of each cell: the PyTorch module that loads it (and the import it
# needs where PyTorch has none), and its gates' order
PYTORCH_MODULES = {"rnn": 'torch.nn.RNN(K, m, num_layers=L, nonlinearity="tanh")',
                   "lstm": "torch.nn.LSTM(K, m, num_layers=L)",
                   "gru": "torch.nn.GRU(K, m, num_layers=L)",
                   "mlstm": "MLSTM(K, m, num_layers=L)"}
IMPORTS = {"mlstm": "from charnn.backends.torch_cells.mlstm import MLSTM   # PyTorch has none\n"}
GATES = {"rnn": "", "lstm": " (4 gates stacked i, f, g, o: PyTorch's order)",
         "gru": " (3 gates stacked r, z, n: PyTorch's order)",
         "mlstm": " (the input's 5 blocks m, i, f, g, o; W_hm's 4 gates i, f, g, o)"}
# PyTorch's names for each vector of a layer's state, in the order start_state holds them
STATE_NAMES = ("h0", "c0")


def add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="write a model in the Hugging Face layout, or as one "
                                      "web page",
                       description="Write a trained model as a folder in the Hugging Face "
                                   "layout (model.safetensors, config.json, a README.md model "
                                   "card), which charnn sample, eval and charnn.load read, and "
                                   "PyTorch's nn.RNN/LSTM/GRU load; or (--html) as one web page "
                                   "that generates text in any browser, offline.")
    p.add_argument("model", help="a run folder (its best checkpoint), a checkpoint file, a "
                                 "pretrained model's name or an exported folder")
    p.add_argument("out_dir", nargs="?", default=None, help="the folder to write")
    p.add_argument("--html", default=None, metavar="OUT.html",
                   help="write the model as one self-contained web page")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    if args.out_dir is None and args.html is None:
        raise CharnnError("give the folder to write (charnn export MODEL OUT_DIR), a page "
                          "(--html OUT.html), or both")
    ckpt = open_checkpoint(args.model)
    given = Path(str(args.model))
    name = given.parent.name if given.suffix == ".npz" else given.name   # runs/x/best.npz: x
    if args.out_dir is not None:
        written = export_folder(ckpt, args.out_dir, name)
        print(f"wrote {', '.join(str(p) for p in written)}\n"
              f"sample from it: charnn sample {args.out_dir} -n 500", flush=True)
    if args.html is not None:
        from .page import write_page
        size = write_page(ckpt, args.html, name)
        shown = f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.0f} KiB"
        print(f"wrote {args.html} ({shown}): open it in a browser, or share the one file",
              flush=True)
    return 0


# -- what is written ------------------------------------------------------------------------

def start_state(ckpt) -> np.ndarray:
    """Where sampling and scoring start (sampling.carried_state), zeros where they start
    from zeros: as (layers, S, m)."""
    network = ckpt.network
    config = ckpt.meta.get("config", {})
    if ckpt.h is not None and carries_state(config):
        return network.layered(np.asarray(ckpt.h)[0].reshape(network.state_shape))
    return network.layered(network.zero_state(ckpt.params.dtype))


def training_facts(ckpt) -> dict:
    """What the model learnt from and how well it does, from the checkpoint's metadata."""
    meta = ckpt.meta
    if "export" in meta:                                 # exported once already: as it was
        return dict(meta["export"].get("training", {}))
    config, state, corpus = meta.get("config", {}), meta.get("state", {}), meta.get("corpus", {})
    held = None
    # the held-out figure belongs to these weights only where it was scored on them: in the
    # best checkpoint, the update of the best validation loss is the checkpoint's own
    if config.get("val_frac") and state.get("best_iteration") == state.get("iteration") \
            and math.isfinite(state.get("best_value", math.inf)):
        nats = state["best_value"]
        chars = corpus.get("chars") or 0
        held = {"nats": nats, "bits": nats / math.log(2),
                "what": (f"the last {config['val_frac']:.0%} of the text (at most "
                         f"{config.get('eval_chars', 0):,} characters scored), as charnn eval "
                         "scores it" if not config.get("records") else
                         f"{config['val_frac']:.0%} of the records, as charnn eval scores "
                         "them"),
                "chars": min(round(config["val_frac"] * chars),
                             config.get("eval_chars") or chars)}
    facts = {"corpus": corpus.get("name"), "corpus_chars": corpus.get("chars"),
             "corpus_sha256": corpus.get("sha256"), "updates": state.get("iteration"),
             "seconds": state.get("elapsed"),
             "characters_seen": (state.get("iteration") or 0) * config.get("seq_length", 0)
             * config.get("batch_size", 1), "held_out": held, "settings": dict(config)}
    if meta.get("init_from"):
        facts["init_from"] = meta["init_from"]
    return facts


def export_config(ckpt) -> dict:
    """config.json: the network first (what a loader needs), then the training facts."""
    params, config, network = ckpt.params, ckpt.meta.get("config", {}), ckpt.network
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model_type": "charnn",
        "network": network.to_dict(), **network_fields(network),
        "torch_dtype": params.dtype.name,
        "input": "one-hot vector of vocab_size (the character's index in vocab)",
        "vocab": ckpt.meta["vocab"],
        "start_state": "carried" if carries_state(config) else "zeros",
        "records": bool(config.get("records")),
        "training": training_facts(ckpt),
        "charnn_version": __version__,
    }


def export_folder(ckpt, out_dir: str | Path, name: str = "model") -> list[Path]:
    """Write the three files into out_dir (created; files of another kind there refused)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CharnnError(f"{out} is a file; give a folder to export into")
    ours = {WEIGHTS, CONFIG, CARD}
    if out.is_dir():
        others = sorted(p.name for p in out.iterdir() if p.name not in ours)
        if others:
            raise CharnnError(f"{out} already holds other files ({', '.join(others[:3])}); "
                              "give an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    config = export_config(ckpt)
    tensors = layout.to_exported(ckpt.params, ckpt.network, start_state(ckpt))
    tensorfile.write(out / WEIGHTS, tensors, {"format": "pt", "producer": "charnn"})
    (out / CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                              encoding="utf-8")
    (out / CARD).write_text(model_card(config, name), encoding="utf-8")
    return [out / WEIGHTS, out / CONFIG, out / CARD]


# -- the model card -------------------------------------------------------------------------

def model_card(config: dict, name: str) -> str:
    t = config["training"]
    network = Network.from_dict(config["network"])
    K, S = network.vocab, network.state_vectors
    held = t.get("held_out")
    corpus = t.get("corpus") or "an unrecorded text"
    chars = f" ({t['corpus_chars']:,} characters)" if t.get("corpus_chars") else ""
    how_long = (f"{t['updates']:,} updates" if isinstance(t.get("updates"), int) else
                "an unrecorded number of updates")
    if isinstance(t.get("seconds"), (int, float)):
        how_long += f" in {t['seconds'] / 60:.1f} minutes"
    if t.get("characters_seen"):
        how_long += f", {t['characters_seen']:,} characters read"
    settings = t.get("settings", {})
    started = ""
    if t.get("init_from"):
        f = t["init_from"]
        started = (f" It was fine-tuned from `{f.get('source')}` ({f.get('model')}, "
                   f"{f.get('updates') or 0:,} updates on {f.get('corpus')}).")
    score = (f"**{held['nats']:.4f} nats/char = {held['bits']:.4f} bits/char** on "
             f"{held['what']}." if held else
             "No held-out figure: it was trained without a held-out part (--val-frac).")
    gates, module = GATES[network.cell], PYTORCH_MODULES[network.cell]
    rows = "\n".join(f"| `{ours}` | `{theirs}` |" for ours, theirs in
                     layout.exported_names(network).items())
    for theirs in layout.folded_biases(network):
        rows += (f"\n| (none) | `{theirs}`: zeros (charnn's {network.abbreviation} cell has "
                 "one bias) |")
    # PyTorch's LSTM takes its state as the tuple (h0, c0), the others h0 alone
    vectors = [f"start[:, {s}, None].contiguous()" for s in range(S)]
    state = f"({', '.join(vectors)})" if S > 1 else vectors[0]
    described = network.describe()
    return f"""---
library_name: charnn
tags:
- character-level
- text-generation
- {network.cell}
---

# {name}: a character-level {network.abbreviation} language model

{described[0].upper() + described[1:]}, {config['torch_dtype']}, reading and
writing one character at a time over a vocabulary of {K} characters. Trained with
[charnn](https://pypi.org/project/charnn/) on **{corpus}**{chars} for {how_long}.{started}

Held-out loss: {score}

## Sample from it

```sh
pip install charnn
charnn sample . --prime "The " -n 500 --temperature 0.8 --seed 1
charnn eval . some_text.txt         # its loss on a text, in nats and bits per character
```

or in Python: `charnn.load(".").generate(500, prime="The ", temperature=0.8, seed=1)`.
Sampling starts from the state stored as `start_state` ({config['start_state']}: {
"the hidden state training carried" if config['start_state'] == 'carried' else "zeros"}),
as charnn does.

## The weights in PyTorch

`model.safetensors` holds the network under the names of `{module}` (`rnn`) and
`torch.nn.Linear(m, K)` (`out`){gates}; the character enters as a one-hot vector of K.

| charnn | PyTorch |
|---|---|
{rows}
| `start_state` (layers, {S}, m) | {" and ".join(STATE_NAMES[:S])} (not a module weight) |

```python
import json
import torch
from safetensors.torch import load_file
{IMPORTS.get(network.cell, "")}
folder = "."                                    # this folder
cfg = json.load(open(f"{{folder}}/config.json", encoding="utf-8"))
K, m, L = cfg["vocab_size"], cfg["hidden_size"], cfg["num_layers"]
tensors = load_file(f"{{folder}}/model.safetensors")
start = tensors.pop("start_state")              # (layers, S, m): where sampling starts
model = torch.nn.ModuleDict({{"rnn": {module}, "out": torch.nn.Linear(m, K)}})
model.to({'torch.float64' if config['torch_dtype'] == 'float64' else 'torch.float32'}).load_state_dict(tensors)

prime = "The "
index = {{ch: i for i, ch in enumerate(cfg["vocab"])}}
x = torch.nn.functional.one_hot(torch.tensor([index[ch] for ch in prime]), K)
y, state = model["rnn"](x.to(start.dtype)[:, None], {state})
logits = model["out"](y[-1, 0])                 # the next character's, softmax for p
```

Settings: {json.dumps({k: settings.get(k) for k in ("optimizer", "eta", "lr_schedule",
                                                      "seq_length", "batch_size", "seed")
                       if k in settings})}. The rest are in `config.json`.
"""
