"""Named sets of training settings (`charnn train --preset NAME`); flags given override them.

    assignment   the assignment's settings: TrainConfig's defaults, nothing changed
    best-cpu     the most held-out text per CPU-minute that benchmarks/bench_learning.py found
                 on a 2-core machine (see docs/learning.md); meant to be run with
                 --time-limit, over which its learning-rate schedule spans
    fine-tune    for `charnn train --init-from MODEL` (the default there): a trained model's
                 weights need smaller steps than a new model's, after a short warm-up that
                 lets Adam's fresh moments settle; found by benchmarks/bench_finetune.py
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    "assignment": {},
    "best-cpu": {
        "model": "gru", "layers": 2, "hidden": 256, "dtype": "float32", "optimizer": "adam",
        "eta": 0.004, "lr_schedule": "cosine", "warmup_updates": 100, "min_eta": 0.0004,
        "seq_length": 50, "batch_size": 32,
    },
    "fine-tune": {
        "optimizer": "adam", "eta": 0.002, "lr_schedule": "cosine", "warmup_updates": 20,
        "min_eta": 0.0002, "seq_length": 50, "batch_size": 32,
    },
}

SUMMARY = {
    "assignment": "the assignment's settings (the default)",
    "best-cpu": "the best held-out loss per CPU-minute found on 2 cores",
    "fine-tune": "for --init-from: smaller steps after a short warm-up",
}


def describe_presets() -> str:
    """The presets in a line of help: 'assignment (...); best-cpu (...: --hidden 256 ...)'."""
    return "; ".join(f"{name} ({SUMMARY[name]}" + (f": {as_flags(values)}" if values else "")
                     + ")" for name, values in PRESETS.items())


def as_flags(values: dict) -> str:
    """Settings as the flags that give them: {'hidden': 256} -> '--hidden 256'."""
    parts = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "")
        elif value is not None:
            shown = repr(value) if isinstance(value, str) and (not value or value.isspace()
                                                               or " " in value) else value
            parts.append(f"{flag} {shown}")
    return " ".join(p for p in parts if p)
