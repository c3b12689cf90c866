"""Shared by the fine-tuning and export tests: small runs of every network, trained in a
second or two on the numpy reference."""

from __future__ import annotations

from pathlib import Path

import charnn

# Every character of the model cards' prime ("The ") and of the page's.
TEXT_A = ("The king said to the queen: come, let us go (now) and see the sea.\n"
          "Then the queen said: no, the sea is cold; the fire is warm.\n") * 12
# Characters A lacks (x, z, é, !) and lacks some of A's (colons, parentheses).
TEXT_B = ("The fox jumps over the lazy dog! Quiet, quick, bizarre zebras jump; é.\n"
          "The dog sleeps, the fox runs, the zebra waits.\n") * 12

NETWORKS = [("rnn", 1), ("lstm", 2), ("gru", 2), ("mlstm", 2)]


def train_tiny(folder: Path, model: str = "gru", layers: int = 2, text: str = TEXT_A,
               updates: int = 200, seed: int = 1, **settings) -> Path:
    """A run folder of a small network trained on `text` (numpy backend, held-out tail)."""
    text_file = folder.parent / f"{folder.name}.txt"
    text_file.write_text(text, encoding="utf-8")
    config = charnn.TrainConfig(model=model, layers=layers, hidden=12, updates=updates,
                                backend="numpy", val_frac=0.1, log_every=50, eval_every=100,
                                sample_every=1000, checkpoint_every=100, seed=seed,
                                **settings)
    charnn.Trainer(charnn.load_corpus(text_file, records=config.records), config, folder).run()
    return folder
