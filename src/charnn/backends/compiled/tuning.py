"""The blocking of the dense products, chosen by measuring them on the machine that runs them.

products.py computes each product with register tiles (tiles.py) of `rows` x `vectors`, and
walks the output either column panel by column panel (every row block of a panel while the
panel of B stays in cache: order "columns") or row block by row block (order "rows"). Which
shape and order is fastest depends on the CPU: its vector registers, load ports and caches.
So no shape is fixed here: the first time charnn compiles its kernels on a machine
(cache.ensure_compiled), measure() times every shape that fits the CPU's registers on the
products the kernels make (m = 256; the lane groups of 4, 8 and 16 rows that batches of 8,
32 and 128 give), for each of three kinds of product:

    forward    (lanes x m)(m x G m): a step's recurrent part, the inputs of a layer
    backward   (lanes x G m)(G m x m): the gradient a step sends back, to the layer below
    gradient   (T lanes x G m)^T (T lanes x m): the weights' gradients over a window

and records the fastest of each, with every measurement, in the compile cache, keyed by the
CPU numba compiles for. The kernels compile with the recorded choice; `charnn tune` shows it
(and measures again with --again).

A tile computes every output element the same way whatever its shape (tiles.py), so the
choice changes the speed only: results are the same bits on any blocking.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import types as pytypes
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ... import paths

KINDS = ("forward", "backward", "gradient")
ORDERS = ("columns", "rows")


class Blocking(NamedTuple):
    """One kind of product's tiles: rows x vectors, walked in `order` (ORDERS)."""
    rows: int
    vectors: int
    order: str

    def __str__(self) -> str:
        return f"{self.rows}x{self.vectors} {self.order}-first"


# Before a machine is measured (and where measuring is turned off): 8 rows of 2 vectors on
# AVX-512, 4 on AVX2, panels first, the kernels' blocking before it was tuned.
def default() -> dict[str, Blocking]:
    from .tiles import VECTOR_BYTES
    rows = 8 if VECTOR_BYTES == 64 else 4
    return {kind: Blocking(rows, 2, "columns") for kind in KINDS}


def candidates() -> list[Blocking]:
    """Every shape of 4 to 12 rows and 2 to 4 vectors whose accumulators fit the CPU's vector
    registers (tiles.fits), panels first; measure() then tries the best of each kind rows
    first too."""
    from .tiles import fits
    return [Blocking(r, v, "columns") for v in (2, 3, 4) for r in (4, 6, 8, 12) if fits(r, v)]


def record_path() -> Path:
    """Where this CPU's choice is kept: beside the compiled kernels, keyed by the CPU numba
    compiles for (paths.compile_target)."""
    return paths.cache_dir() / "tuning" / f"{paths.compile_target()}.json"


def recorded() -> dict | None:
    """The record of this CPU's measurement ({"cpu": ..., "choice": {kind: [rows, vectors,
    order]}, "seconds": ..., "gflops": {blocking: {"kind lanes": GFLOP/s}}}), or None when it
    has not been measured (or the file is damaged)."""
    try:
        record = json.loads(record_path().read_text())
        for kind in KINDS:                            # every kind's choice must be whole
            Blocking(*record["choice"][kind])
        return record
    except (OSError, ValueError, KeyError, TypeError):
        return None


def chosen() -> dict[str, Blocking]:
    """The blocking the kernels compile with: CHARNN_BLOCKING=default forces the untuned one;
    otherwise this CPU's record, or the default until it is measured."""
    if os.environ.get("CHARNN_BLOCKING") == "default":
        return default()
    record = recorded()
    if record is None:
        return default()
    return {kind: Blocking(*record["choice"][kind]) for kind in KINDS}


# -- measuring ---------------------------------------------------------------------------------

M = 256
LANES = (4, 8, 16)
WINDOW = 25


def _shapes(kind: str, lanes: int, G: int = 4):
    """The operands of one product of `kind` as the kernels make it (transpose_a, A, B, C)."""
    rng = np.random.default_rng(0)

    def a(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    if kind == "forward":
        return False, a(lanes, M), a(M, G * M), np.zeros((lanes, G * M), np.float32)
    if kind == "backward":
        return False, a(lanes, G * M), a(G * M, M), np.zeros((lanes, M), np.float32)
    rows = WINDOW * lanes
    return True, a(rows, G * M), a(rows, M), np.zeros((G * M, M), np.float32)


def _product_with(blocking: Blocking):
    """products._gemm compiled (not cached) with tiles of `blocking` for every kind: the
    kernels' code with other globals (and one set of tiles for the three kinds, which
    compiles three times faster)."""
    from numba import njit

    from . import products
    from .numerics import JIT_OPTIONS
    from .tiles import make_tile
    names = dict(vars(products))
    names.update(_ROWS=(blocking.rows,) * 3, _VECTORS=(blocking.vectors,) * 3,
                 _BY_ROWS=(blocking.order == "rows",) * 3)
    full, four, one = (make_tile(rows, blocking.vectors) for rows in (blocking.rows, 4, 1))
    narrow = make_tile(blocking.rows, 1)
    for kind in "fbg":
        names.update({f"_{kind}_full": full, f"_{kind}_4": four, f"_{kind}_1": one,
                      f"_{kind}_narrow": narrow})
    options = {k: v for k, v in JIT_OPTIONS.items() if k != "cache"}
    for name in ("_tile", "_row_blocks", "_gemm"):
        source = products.__dict__[name].py_func
        names[name] = njit(**options)(pytypes.FunctionType(source.__code__, names, name))
    return names["_gemm"]


def _seconds(product, operands, budget: float) -> float:
    """The best of a few timings of one product, each repeated for about budget / 4."""
    transpose_a, A, B, C = operands
    product(A, B, C, transpose_a, False)
    reps, elapsed = 1, 0.0
    while elapsed < budget / 20:
        reps *= 2
        t0 = time.perf_counter()
        for _ in range(reps):
            product(A, B, C, transpose_a, False)
        elapsed = time.perf_counter() - t0
    best = elapsed / reps
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            product(A, B, C, transpose_a, False)
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def _measure_here(blockings, budget: float, report) -> None:
    """Time each blocking on every kind's products in this process: report(blocking, row)."""
    shapes = {(kind, lanes): _shapes(kind, lanes) for kind in KINDS for lanes in LANES}
    for blocking in blockings:
        product = _product_with(blocking)
        report(blocking, {f"{kind} {lanes}": _seconds(product, operands, budget)
                          for (kind, lanes), operands in shapes.items()})


_WORKER = ("import sys, json; from charnn.backends.compiled import tuning; "
           "tuning._measure_here([tuning.Blocking(*b) for b in json.loads(sys.argv[1])], "
           "float(sys.argv[2]), lambda b, row: print(json.dumps([list(b), row]), flush=True))")


def _measure(blockings, budget: float, processes: int, report) -> None:
    """_measure_here over `processes` worker processes (each a core: numba compiles on one
    thread, and each product runs on one), sharing the blockings out in turn."""
    if processes <= 1 or len(blockings) <= 1:
        _measure_here(blockings, budget, report)
        return
    shares = [blockings[i::processes] for i in range(processes)]
    workers = [subprocess.Popen([sys.executable, "-c", _WORKER,
                                 json.dumps([list(b) for b in share]), str(budget)],
                                stdout=subprocess.PIPE, text=True)
               for share in shares if share]
    lock = threading.Lock()

    def read(worker):
        for line in worker.stdout:
            blocking, row = json.loads(line)
            with lock:
                report(Blocking(*blocking), row)

    readers = [threading.Thread(target=read, args=(w,)) for w in workers]
    for thread in readers:
        thread.start()
    for thread, worker in zip(readers, workers):
        thread.join()
        if worker.wait() != 0:
            raise RuntimeError("measuring the products' blocking failed in a worker process")


def measure(budget: float = 0.05, processes: int | None = None, progress=None) -> dict:
    """Time every candidate on every kind's products, then the best shape of each kind rows
    first; choose the fastest per kind (the least sum over the lane counts of its time
    relative to the best candidate's) and record the choice; returns the record.
    progress(done, total) is called after each candidate."""
    processes = processes or min(os.cpu_count() or 1, 4)
    table: dict[Blocking, dict[str, float]] = {}
    started = time.perf_counter()
    first = candidates()
    total = len(first) + len(KINDS)

    def report(blocking, row):
        table[blocking] = row
        if progress:
            progress(len(table), total)

    def best(kind):
        fastest = {lanes: min(row[f"{kind} {lanes}"] for row in table.values())
                   for lanes in LANES}
        return min(table, key=lambda b: sum(table[b][f"{kind} {lanes}"] / fastest[lanes]
                                            for lanes in LANES))

    _measure(first, budget, processes, report)
    turned = sorted({best(kind)._replace(order="rows") for kind in KINDS}, key=str)
    total = len(first) + len(turned)
    _measure(turned, budget, processes, report)
    choice = {kind: best(kind) for kind in KINDS}
    record = {"cpu": paths.compile_target(),
              "choice": {kind: list(b) for kind, b in choice.items()},
              "seconds": round(time.perf_counter() - started, 1),
              "gflops": {str(b): {shape: _gflops(shape, seconds) for shape, seconds in
                                  row.items()} for b, row in table.items()}}
    path = record_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.with_suffix(f".{os.getpid()}.tmp")
        aside.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(aside, path)
    except OSError:
        pass                                          # a read-only cache: measured each time
    return record


def _gflops(shape: str, seconds: float) -> float:
    kind, lanes = shape.split()
    rows = int(lanes) * (WINDOW if kind == "gradient" else 1)
    return round(2 * rows * M * 4 * M / seconds / 1e9, 1)


def describe(record: dict | None = None) -> str:
    """The choice in one line: each kind's blocking and its speed at 8 lanes."""
    record = record or recorded()
    if record is None:
        return "the products' blocking is not measured on this CPU yet (default: " + \
            ", ".join(f"{kind} {b}" for kind, b in default().items()) + ")"
    parts = []
    for kind in KINDS:
        b = Blocking(*record["choice"][kind])
        parts.append(f"{kind} {b} ({record['gflops'][str(b)][f'{kind} 8']:.0f} GFLOP/s)")
    return f"products' blocking for this CPU ({record['cpu']}): " + ", ".join(parts)
