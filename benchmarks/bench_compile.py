"""What a fresh install waits for: the compile of each group of kernels (cache.py), cold and
then loaded from the cache, and the first-use commands of README timed end to end.

    python benchmarks/bench_compile.py [--json PATH] [--skip-commands] [--skip-groups]

Every figure comes from a child process with an empty cache folder of its own (the cold
compile), then a second child on the same folder (the load). The commands are timed from
their start to their first byte of output on stdout and to their exit: `charnn sample -n
500` (the shipped model; it samples on the numpy reference while no compiled kernels exist)
and `charnn train` with the default settings, to its first progress line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine  # noqa: E402

GROUPS = [(network, job, dtype) for network in ("rnn", "gru")
          for job in ("sample", "evaluate", "train-one", "train-batch", "gradients")
          for dtype in ("float64", "float32")
          if not (network == "gru" and job == "train-one")]    # the stack has one train kernel

CHILD = """
import sys, time
started = time.perf_counter()
from charnn.backends.compiled import cache
imported = time.perf_counter()
for step in cache._steps(cache.family_of(sys.argv[1]), sys.argv[2], sys.argv[3]):
    step()
print(imported - started, time.perf_counter() - imported)
"""


def time_group(network: str, job: str, dtype: str, cache: Path) -> tuple[float, float]:
    """(import seconds, seconds to compile, or to load from the cache, and run every kernel
    of the group once) in a child process."""
    env = dict(os.environ, CHARNN_CACHE_DIR=str(cache))
    env.pop("NUMBA_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", CHILD, network, job, dtype], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def time_command(argv: list[str], cache: Path, cwd: Path, until: str | None = None):
    """(seconds to the first stdout byte, or to the first stderr line containing `until`;
    seconds to exit, or None when stopped at `until`)."""
    env = dict(os.environ, CHARNN_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1")
    env.pop("NUMBA_CACHE_DIR", None)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "charnn", *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = None
    stream = proc.stdout if until is None else proc.stderr
    while True:
        chunk = stream.readline() if until else stream.read(1)
        if not chunk:
            break
        if until is None or until.encode() in chunk:
            first = time.perf_counter() - started
            break
    if until is not None:
        proc.terminate()
        proc.communicate(timeout=60)
        return first, None
    proc.communicate()
    return first, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--skip-commands", action="store_true")
    parser.add_argument("--skip-groups", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    rows = []
    print(f"{'network':<8}{'job':<13}{'dtype':<9}{'import s':>9}{'cold s':>8}{'load s':>8}")
    for network, job, dtype in [] if args.skip_groups else GROUPS:
        with tempfile.TemporaryDirectory() as tmp:
            imported, cold = time_group(network, job, dtype, Path(tmp))
            _, load = time_group(network, job, dtype, Path(tmp))
        rows.append(dict(network=network, job=job, dtype=dtype, import_s=imported,
                         cold_s=cold, load_s=load))
        print(f"{network:<8}{job:<13}{dtype:<9}{imported:9.2f}{cold:8.2f}{load:8.2f}",
              flush=True)
    commands = []
    if not args.skip_commands:
        with tempfile.TemporaryDirectory() as tmp:
            cache, cwd = Path(tmp) / "cache", Path(tmp) / "work"
            cwd.mkdir()
            for label, argv, until in [
                    ("charnn sample -n 500 (fresh cache)", ["sample", "-n", "500"], None),
                    ("charnn train, first progress line (fresh cache)",
                     ["train", "--log-every", "100"], "upd/s"),
                    ("charnn train, first progress line (compiled)",
                     ["train", "--log-every", "100", "--name", "again"], "upd/s"),
                    ("charnn sample -n 500 (compiled)", ["sample", "-n", "500"], None)]:
                first, total = time_command(argv, cache, cwd, until)
                commands.append(dict(command=label, first_s=first, exit_s=total))
                shown = "" if total is None else f", done in {total:.1f} s"
                print(f"{label}: first output in {first:.1f} s{shown}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "groups": rows,
                                         "commands": commands}, indent=1) + "\n")


if __name__ == "__main__":
    main()
