"""Where a training update's time goes, kernel by kernel, as the CPU saw it: Linux `perf`
samples a compiled training run (float32, seq_length 25, AdaGrad, as bench_batch.py trains,
on every thread numba has) and each sample is charged to the compiled function it fell in.

    python benchmarks/profile_perf.py gru 2 32 [--hidden 384] [--seconds 8]

profile_stack.py times each product alone, on one thread, with its operands hot in cache;
this one measures the products where they run, between the gates and the other lanes'
work, which is what a change of the kernels has to move. Needs `perf` (linux-perf) allowed
to sample the user's own processes (kernel.perf_event_paranoid <= 2).

numba's cached kernels are loaded without symbols, so the run compiles afresh into a
temporary cache folder (a minute or so) and writes where each compiled function starts; a
sample is charged to the nearest start below it. LLVM inlines small functions into their
callers, so a name stands for itself and what it inlined. Only the samples after the timing
starts count (perf's clock is CLOCK_MONOTONIC, as the child's).
"""

from __future__ import annotations

import argparse
import bisect
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def short_name(symbol: str) -> str:
    """'module.function' of a numba symbol (_ZN<len><part>...), the symbol itself otherwise."""
    if "parfor_gufunc" in symbol:
        return "a parallel loop's body (prange)"
    at = symbol.find("_ZN")
    if at < 0:
        return symbol
    parts, i = [], at + 3
    while i < len(symbol) and symbol[i].isdigit():
        j = i
        while symbol[j].isdigit():
            j += 1
        length = int(symbol[i:j])
        parts.append(symbol[j:j + length])
        i = j + length
    parts = [p for p in parts if p != "cpython"]     # the Python wrapper of a kernel
    return ".".join(parts[-2:]) or symbol


def child(args, folder: Path) -> None:
    """Train, write the compiled functions' addresses, then train `seconds` more, timed."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_batch
    from charnn.backends.compiled import rnn_one_layer, stack
    from charnn.corpus import load_corpus

    run = bench_batch.charnn_runner(load_corpus(), args.batch, args.hidden, args.network,
                                    args.layers)
    run(4)                                            # compiles
    starts = {}
    for module in (stack, rnn_one_layer):
        for dispatcher in vars(module).values():
            for result in getattr(dispatcher, "overloads", {}).values():
                library = result.library
                for function in library._final_module.functions:
                    if not function.is_declaration and function.name not in starts:
                        starts[function.name] = library.get_pointer_to_function(function.name)
    (folder / "starts").write_text("".join(f"{a} {n}\n" for n, a in starts.items() if a))
    (folder / "from").write_text(repr(time.monotonic()))
    began, chars = time.perf_counter(), 0
    while time.perf_counter() - began < args.seconds:
        chars += run(10)
    print(f"{args.network} x{args.layers}, m = {args.hidden}, B = {args.batch}: "
          f"{chars / (time.perf_counter() - began):,.0f} characters/s under perf")


def report(folder: Path, top: int) -> None:
    pairs = sorted((int(a), short_name(n)) for a, n in
                   (line.split(" ", 1) for line in (folder / "starts").read_text().splitlines()))
    addresses = [a for a, _ in pairs]
    since = float((folder / "from").read_text())
    lines = subprocess.run(["perf", "script", "-i", str(folder / "perf.data"), "-F",
                            "time,ip,sym,dso"], capture_output=True, text=True).stdout
    counts, total = collections.Counter(), 0
    for line in lines.splitlines():
        fields = line.split()
        try:
            when, ip = float(fields[0].rstrip(":")), int(fields[1], 16)
        except (IndexError, ValueError):
            continue
        if when < since:
            continue
        total += 1
        i = bisect.bisect_right(addresses, ip) - 1
        if i >= 0 and ip - addresses[i] < 1 << 20:
            counts[pairs[i][1]] += 1
        else:                                         # outside the kernels: perf's own name
            counts[" ".join(fields[2:])[:60]] += 1
    print(f"{total:,} samples")
    for name, count in counts.most_common(top):
        print(f"  {100 * count / total:5.1f}%  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("network", choices=["rnn", "lstm", "gru", "mlstm"])
    parser.add_argument("layers", type=int)
    parser.add_argument("batch", type=int)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args, Path(args.child))
        return 0
    if shutil.which("perf") is None:
        print("profile_perf.py needs Linux perf (apt install linux-perf)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = dict(os.environ, CHARNN_CACHE_DIR=str(folder / "cache"),
                   NUMBA_CACHE_DIR=str(folder / "cache" / "numba"))
        from charnn import paths                      # the machine's blocking: no re-tuning
        tuning = paths.cache_dir() / "tuning"
        if tuning.is_dir():
            shutil.copytree(tuning, folder / "cache" / "tuning")
        recorded = subprocess.run(
            ["perf", "record", "-q", "-e", "cpu-clock", "-F", "1999", "-k", "CLOCK_MONOTONIC",
             "-o", str(folder / "perf.data"), "--", sys.executable, __file__,
             args.network, str(args.layers), str(args.batch), "--hidden", str(args.hidden),
             "--seconds", str(args.seconds), "--child", str(folder)], env=env)
        if recorded.returncode != 0:
            print("perf record failed (is kernel.perf_event_paranoid above 2?)",
                  file=sys.stderr)
            return 1
        report(folder, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
