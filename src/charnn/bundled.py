"""The pretrained models charnn ships, known by name: `charnn sample` with no run folder,
`charnn sample|eval|inspect|serve shakespeare`, charnn.load("shakespeare").

Each is a run folder under charnn/pretrained/ (its best.npz, config.json and log.csv),
written by scripts/train_pretrained.py. A name is looked for only where no file or folder
of that name exists, so a run folder called `shakespeare` in the working directory wins.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CharnnError

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
DEFAULT_MODEL = "shakespeare"


def pretrained_names() -> list[str]:
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / "best.npz").is_file())


def resolve_model(source: str | Path) -> Path:
    """The path `source` names: itself when it exists, else the pretrained model of that
    name; a bare name that is neither is refused in one line that lists the names."""
    path = Path(source)
    if path.exists():
        return path
    names = pretrained_names()
    if str(source) in names:
        return PRETRAINED_DIR / str(source)
    if len(path.parts) == 1 and not path.suffix:
        raise CharnnError(f"{str(source)!r} is neither a run folder, a checkpoint nor a "
                          f"pretrained model; the pretrained models are: "
                          f"{', '.join(names) or 'none (this install has none)'}")
    return path
