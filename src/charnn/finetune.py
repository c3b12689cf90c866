"""Fine-tuning: a new run that starts from a trained model's weights.

    charnn train MY.txt --init-from shakespeare      (or a run folder, a checkpoint, an export)

The network is the base model's: its kind, layers, hidden size and initial scale sigma come
from it, and flags that would change them are refused by name. Everything else is a new run's:
the optimiser starts fresh (its moments describe the base's text, not this one), the settings
are --preset fine-tune's unless --preset or flags say otherwise, and the run folder is new.

The vocabulary is the union of the base's and the text's: the base's characters first, in its
order (so every weight it learnt keeps its index), then the text's new characters in code point
order. A character the text lacks keeps its rows, so the model can still write it. A new
character k gets what a new model would give it (networks/): an input column (U[:, k] of the
vanilla RNN, W_ih0[:, k] of a stacked network) and an output row V[k] drawn from N(0, sigma^2)
with the base's sigma, and an output bias c[k] = 0. They are drawn, in the network's parameter
order, from a generator of their own (seed, 3), so the same seed gives the same start.

config.json and every checkpoint of the run record where it started (`init_from`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .corpus import END_OF_RECORD, Corpus, Vocabulary
from .errors import CharnnError
from .model import Params
from .networks import Network

# The settings that make the network: the base model's, never the command line's.
NETWORK_SETTINGS = ("model", "layers", "hidden", "sigma")
PRESET = "fine-tune"


@dataclass
class Base:
    """The model a fine-tuned run starts from."""
    params: Params
    network: Network             # its spec (networks.Network)
    vocab: Vocabulary
    config: dict                 # its training settings
    facts: dict                  # what config.json and the checkpoints record as init_from


def load_base(source: str | Path) -> Base:
    """The model `source` names (a pretrained model's name, a run folder's best checkpoint,
    a checkpoint file or an exported folder), as charnn.load reads it."""
    from .trained import load
    model = load(source, backend="numpy")                # only its arrays are used here
    meta = model.checkpoint.meta
    state, corpus = meta.get("state", {}), meta.get("corpus", {})
    network = model.checkpoint.network
    facts = {"source": str(source), "path": str(_resolved(source)),
             "model": network.cell, "updates": state.get("iteration"),
             "corpus": corpus.get("name")}
    return Base(model.params, network, model.vocab, dict(model.config), facts)


def _resolved(source) -> Path:
    from .bundled import resolve_model
    return Path(resolve_model(source)).resolve()


def union_vocabulary(base: Vocabulary, text: Vocabulary) -> Vocabulary:
    """The base's characters in its order, then the text's new ones in code point order."""
    return Vocabulary(base.chars + "".join(sorted(ch for ch in text.chars if ch not in base)))


def widen_corpus(corpus: Corpus, vocab: Vocabulary) -> Corpus:
    """The corpus encoded in `vocab`, which holds every character of the corpus's own."""
    if corpus.vocab == vocab:
        return corpus
    missing = [ch for ch in corpus.vocab.chars if ch not in vocab]
    if missing:
        raise CharnnError(f"{corpus.name} has characters {''.join(missing[:10])!r} that the "
                          "run's vocabulary lacks; give the text the run trained on")
    # one lookup: the text's own index of a character -> its index in the wider vocabulary
    table = np.array([vocab.index[ch] for ch in corpus.vocab.chars], vocab.dtype)
    return replace(corpus, data=table[corpus.data], vocab=vocab)


def widen_params(params: Params, network: Network | str, vocab: Vocabulary, sigma: float,
                 seed: int, dtype: str) -> Params:
    """The base's weights for the wider vocabulary: the old rows and columns as they are, the
    new ones as a new model draws them (see the module's docstring), in `dtype`. `network` is
    the base's spec; a cell's name alone stands for the network the parameters are
    (Network.of_params: the one they carry, or for arrays built by hand the one whose shapes
    they have), which must be of that cell."""
    if not isinstance(network, Network):
        named, network = network, Network.of_params(params)
        if network.cell != named:
            raise ValueError(f"these parameters are {network.summary()}, not of the cell "
                             f"{named!r}")
    K_old, K = network.vocab, len(vocab)
    wide = replace(network, vocab=K)
    shapes = wide.param_shapes()
    rng = np.random.default_rng([seed, 3])
    out = {}
    for name, shape in shapes.items():
        old = params[name]
        a = np.zeros(shape, dtype)
        a[tuple(slice(0, n) for n in old.shape)] = old   # (a cast from float32 is exact)
        if shape != old.shape and name != "c":           # the output bias of a new one is 0
            axis = next(i for i, (n, o) in enumerate(zip(shape, old.shape)) if n != o)
            new = [slice(None)] * len(shape)
            new[axis] = slice(K_old, K)
            a[tuple(new)] = sigma * rng.standard_normal(a[tuple(new)].shape)
        out[name] = a
    return Params(out).carrying(wide)


def finetune_config(args, base: Base):
    """The TrainConfig of `charnn train --init-from`: --preset fine-tune (unless --preset is
    given) and the flags given, with the base's network; a flag that would change the
    network is refused by name."""
    from .options import config_from_args
    given = getattr(args, "given", set())
    fixed = [g for g in NETWORK_SETTINGS if g in given]
    if fixed:
        shown = ", ".join(f"--{g} (the base model has {base.config.get(g)!r})" for g in fixed)
        raise CharnnError(f"{shown}: a fine-tuned run keeps the network of the model it starts "
                          f"from; leave {'it' if len(fixed) == 1 else 'them'} out, or train a "
                          "new model without --init-from")
    if "preset" not in given:
        args.preset = PRESET
    config = config_from_args(args)
    # the network is the base's spec; sigma, which no spec holds, its settings'
    config.model, config.layers, config.hidden = (base.network.cell, base.network.layers,
                                                  base.network.hidden)
    config.sigma = base.config.get("sigma")
    if config.sigma is None:                             # an export without its settings
        from .config import TrainConfig
        config.sigma = TrainConfig(model=config.model, hidden=config.hidden).sigma
    for name in ("dtype", "dropout", "output_dropout"):  # the base's, unless given
        if name not in given:
            setattr(config, name, base.config.get(name, getattr(config, name)))
    if "dtype" not in given:
        config.dtype = base.params.dtype.name
    if END_OF_RECORD in base.vocab and not config.records:
        # its end-of-record character makes every model that holds it a record model
        raise CharnnError(f"{base.facts['source']} was trained on records; give --records "
                          "(and --record-separator if the text's records are not lines)")
    return config.validate()


def finetune_trainer(base: Base, corpus: Corpus, config, run_dir, **kwargs):
    """A Trainer for a new run on `corpus` that starts from the base model's weights."""
    from .train import Trainer
    vocab = union_vocabulary(base.vocab, corpus.vocab)
    corpus = widen_corpus(corpus, vocab)
    params = widen_params(base.params, base.network, vocab, config.sigma, config.seed,
                          config.dtype)
    added = vocab.chars[len(base.vocab):]
    facts = dict(base.facts, K_base=len(base.vocab), added=added)
    announce = kwargs.get("announce") or (lambda message: None)
    announce(describe_start(base, added, len(vocab)))
    return Trainer(corpus, config, run_dir, params=params, init_from=facts, **kwargs)


def describe_start(base: Base, added: str, K: int) -> str:
    """'starting from shakespeare (gru, 9,695 updates on shakespeare); 3 new characters
    'éàü' get new rows; the vocabulary is 80 characters'."""
    f = base.facts
    updates = f"{f['updates']:,} updates" if isinstance(f.get("updates"), int) else "trained"
    new = (f"{len(added)} new character{'s' if len(added) != 1 else ''} {added[:20]!r} "
           "get new rows" if added else "no new characters")
    return (f"starting from {f['source']} ({f['model']}, {updates} on {f['corpus']}); {new}; "
            f"the vocabulary is {K:,} characters")
