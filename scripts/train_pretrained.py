"""Train the pretrained model charnn ships (charnn/pretrained/shakespeare): the best-cpu
preset on the bundled corpus for a wall-clock budget, its last 10% held out so that its
held-out loss is known, then copied into the package as a small run folder.

    python scripts/train_pretrained.py                 # 10 minutes
    python scripts/train_pretrained.py --time-limit 3m --preset best-cpu --hidden 256

Any `charnn train` flag may follow and overrides the preset. The shipped best.npz is the
run's best checkpoint in float32 with its optimiser state set to zero (sampling, evaluation
and serving never read it) and compressed, so that the file holds little more than the
weights; config.json and log.csv come along for `charnn serve`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from charnn.checkpoint import BEST, load_checkpoint, save_checkpoint  # noqa: E402
from charnn.cli import main as charnn  # noqa: E402


def shrink(source: Path, target: Path) -> None:
    """source's checkpoint with zero optimiser state, written compressed to target."""
    ckpt = load_checkpoint(source)
    if ckpt.params.dtype != np.float32:
        raise SystemExit(f"{source} is {ckpt.params.dtype}; train with --dtype float32")
    for array in ckpt.opt_state.values():
        array[...] = 0
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.npz"
        save_checkpoint(plain, ckpt)
        with np.load(plain) as archive:
            arrays = {key: archive[key] for key in archive.files}
    with open(target, "wb") as f:
        np.savez_compressed(f, **arrays)
    load_checkpoint(target)                              # still a valid checkpoint


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="shakespeare")
    parser.add_argument("--time-limit", default="10m")
    parser.add_argument("--preset", default="best-cpu")
    parser.add_argument("--into", type=Path, default=ROOT / "src" / "charnn" / "pretrained",
                        help="the folder of pretrained models (default: the package's)")
    args, flags = parser.parse_known_args(argv)
    target = args.into / args.name
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        status = charnn(["train", "--preset", args.preset, "--time-limit", args.time_limit,
                         "--val-frac", "0.1", "--eval-every", "2000", "--no-progress",
                         "--out", str(run), *flags])
        if status:
            return status
        target.mkdir(parents=True, exist_ok=True)
        shrink(run / BEST, target / BEST)
        for name in ("config.json", "log.csv"):
            shutil.copyfile(run / name, target / name)
    size = (target / BEST).stat().st_size
    print(f"wrote {target} (best.npz {size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
