"""The products' blocking (compiled/tuning.py, tiles.py): any blocking gives the same bits, the
measurement picks the fastest per kind and records it by CPU, the kernels compile with the
record, and `charnn tune` shows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from charnn.backends.compiled import cache, products, tiles, tuning
from charnn.cli import main

# shapes the tiles cover with their own height, 4 rows and 1 row, whole panels and single
# vectors (N a multiple of 16 in float32 on AVX-512, of 8 on AVX2), and the loops (N = 20)
SHAPES = [(8, 256, 128, False), (7, 48, 80, False), (13, 96, 32, False), (9, 5, 32, True),
          (31, 32, 96, True), (3, 16, 48, False), (5, 30, 20, False), (6, 11, 20, True)]


@pytest.mark.parametrize("blocking", [tuning.Blocking(4, 2, "rows"),
                                      tuning.Blocking(6, 4, "columns"),
                                      tuning.Blocking(12, 2, "rows")], ids=str)
def test_every_blocking_gives_the_kernels_bits(blocking):
    product = tuning._product_with(blocking)
    rng = np.random.default_rng(2)
    for dtype in (np.float32, np.float64):
        for R, depth, N, transpose_a in SHAPES:
            A = rng.standard_normal((depth, R) if transpose_a else (R, depth)).astype(dtype)
            B = rng.standard_normal((depth, N)).astype(dtype)
            for accumulate in (False, True):
                C = rng.standard_normal((R + 1, N)).astype(dtype)   # one row past the product
                ours, theirs = C.copy(), C.copy()
                products._gemm(A, B, ours, transpose_a, accumulate)
                product(A, B, theirs, transpose_a, accumulate)
                assert np.array_equal(ours, theirs)
                expected = (A.T if transpose_a else A).astype(np.float64) @ B + \
                    (C[:R] if accumulate else 0)
                assert np.allclose(ours[:R], expected, rtol=1e-4, atol=1e-4)
                assert np.array_equal(ours[R:], C[R:])


def test_a_product_of_one_row_gives_that_rows_bits_of_a_taller_product():
    # one lane's products (evaluation, sampling) run on the wide one-row tile, _lane; the
    # training's on the tuned tiles: a row must come out the same either way
    assert products._LANE_VECTORS >= 2 and tiles.fits(1, products._LANE_VECTORS)
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        for depth, N in ((256, 1024), (48, 400), (30, 160), (7, 20)):
            A = rng.standard_normal((9, depth)).astype(dtype)
            B = rng.standard_normal((depth, N)).astype(dtype)
            for accumulate in (False, True):
                C = rng.standard_normal((9, N)).astype(dtype)
                tall = C.copy()
                products._gemm(A, B, tall, False, accumulate)
                for r in (0, 5, 8):
                    row = C[r:r + 1].copy()
                    products._gemm(A[r:r + 1], B, row, False, accumulate)
                    assert np.array_equal(row[0], tall[r]), (dtype, depth, N, r)


def test_the_candidates_fit_the_registers_and_include_the_default():
    every = tuning.candidates()
    assert len(every) >= 3 and all(tiles.fits(b.rows, b.vectors) for b in every)
    assert next(iter(tuning.default().values())) in every


def fake_measurements(speed):
    """_measure_here reporting seconds = 1 / speed(blocking, kind, lanes), nothing timed."""
    def measure_here(blockings, budget, report):
        for b in blockings:
            report(b, {f"{kind} {lanes}": 1 / speed(b, kind, lanes)
                       for kind in tuning.KINDS for lanes in tuning.LANES})
    return measure_here


def test_the_fastest_blocking_of_each_kind_is_chosen_and_recorded_by_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARNN_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("CHARNN_BLOCKING", raising=False)
    favourite = {"forward": (8, 2), "backward": (4, 4), "gradient": (6, 4)}

    def speed(b, kind, lanes):                 # the favourite shape, fastest rows first
        return 10 + ((b.rows, b.vectors) == favourite[kind]) + 0.5 * (b.order == "rows") + \
            lanes / 100

    monkeypatch.setattr(tuning, "_measure_here", fake_measurements(speed))
    candidates = [tuning.Blocking(r, v, "columns") for r, v in favourite.values()] + \
        [tuning.Blocking(4, 2, "columns")]
    monkeypatch.setattr(tuning, "candidates", lambda: candidates)
    assert tuning.recorded() is None and tuning.chosen() == tuning.default()
    progress = []
    record = tuning.measure(processes=1, progress=lambda done, total: progress.append(done))
    assert progress == list(range(1, 8))          # 4 shapes, then 3 of them rows first
    chosen = tuning.chosen()
    assert {kind: (b.rows, b.vectors, b.order) for kind, b in chosen.items()} == \
        {kind: (*shape, "rows") for kind, shape in favourite.items()}
    assert tuning.record_path().parent == tmp_path / "tuning"
    assert tuning.record_path().stem == record["cpu"]
    assert json.loads(tuning.record_path().read_text())["choice"] == record["choice"]
    assert "forward 8x2 rows-first" in tuning.describe()
    monkeypatch.setenv("CHARNN_BLOCKING", "default")
    assert tuning.chosen() == tuning.default()


def test_a_damaged_record_counts_as_none(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARNN_CACHE_DIR", str(tmp_path))
    tuning.record_path().parent.mkdir(parents=True)
    tuning.record_path().write_text('{"choice": {"forward": [8')
    assert tuning.recorded() is None and tuning.chosen() == tuning.default()


def test_compiling_tiled_kernels_measures_first_and_only_once(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARNN_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("CHARNN_BLOCKING", raising=False)
    monkeypatch.setattr(tuning, "_measure_here", fake_measurements(lambda b, kind, n: b.rows))
    monkeypatch.setattr(tuning, "candidates", lambda: [tuning.Blocking(4, 2, "columns")])
    monkeypatch.setattr(cache, "_marker", lambda family, job, dtype:
                        tmp_path / f"{family}-{job}-{np.dtype(dtype).name}.ok")
    monkeypatch.setattr(cache, "_compile_here", lambda *args: None)
    monkeypatch.setattr(cache.os, "cpu_count", lambda: 1)     # measured and compiled here
    messages = []
    cache.ensure_compiled(messages.append, dtypes=("float64",), networks=("rnn",),
                          jobs=("sample",), progress=lambda *a: None)
    assert tuning.recorded() is None                  # the vanilla RNN's one lane: no tiles
    cache.ensure_compiled(messages.append, dtypes=("float64",), networks=("lstm",),
                          jobs=("sample",), progress=lambda *a: None)
    assert messages[1].startswith("measuring this CPU's products")
    assert "products' blocking for this CPU" in messages[2]
    assert tuning.recorded() is not None
    (tmp_path / "lstm-sample-float64.ok").unlink(missing_ok=True)
    count = len(messages)
    cache.ensure_compiled(messages.append, dtypes=("float64",), networks=("gru",),
                          jobs=("sample",), progress=lambda *a: None)
    assert not any("measuring" in m for m in messages[count:])


def test_charnn_tune_shows_the_recorded_choice(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHARNN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tuning, "_measure_here", fake_measurements(
        lambda b, kind, n: b.rows + (b.order == "rows")))
    monkeypatch.setattr(tuning, "candidates", lambda: [tuning.Blocking(4, 2, "columns"),
                                                       tuning.Blocking(8, 2, "columns")])
    tuning.measure(processes=1)
    assert main(["tune"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("products' blocking for this CPU")
    assert "forward 8x2 rows-first" in out and "4x2 columns-first" in out
    assert str(tuning.record_path()) in out


def test_a_fresh_process_compiles_with_the_recorded_blocking(tmp_path):
    env = {**os.environ, "CHARNN_CACHE_DIR": str(tmp_path)}
    env.pop("CHARNN_BLOCKING", None)
    code = ("from charnn.backends.compiled import tuning, products; "
            "print(products._ROWS, products._VECTORS, products._BY_ROWS)")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    default = next(iter(tuning.default().values()))
    assert run.stdout.split("\n")[0] == f"{(default.rows,) * 3} {(default.vectors,) * 3} " \
                                        f"{(False,) * 3}"
    path = tmp_path / "tuning"
    path.mkdir()
    cpu = subprocess.run([sys.executable, "-c", "from charnn import paths; "
                          "print(paths.compile_target())"], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    (path / f"{cpu}.json").write_text(json.dumps({"cpu": cpu, "choice": {
        "forward": [6, 2, "rows"], "backward": [4, 3, "columns"], "gradient": [4, 2, "rows"]},
        "seconds": 1, "gflops": {}}))
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert run.stdout.split("\n")[0] == "(6, 4, 4) (2, 3, 2) (True, False, True)"


def test_tune_again_measures_afresh_and_makes_the_kernels_compile_again(tmp_path, monkeypatch,
                                                                       capsys):
    monkeypatch.setenv("CHARNN_CACHE_DIR", str(tmp_path))
    folder = tmp_path / "numba"
    monkeypatch.setattr(cache.numba.config, "CACHE_DIR", str(folder))
    kernels = folder / "compiled_0123"
    kernels.mkdir(parents=True)
    index, code = kernels / "stack._train_batch-1.py311.nbi", kernels / "stack._train_batch-1.nbc"
    marker = folder / "charnn-x-lstm-train-batch-float32.ok"
    for path in (index, code, marker):
        path.write_text("")
    favourite = {"rows": 4}                            # the fastest rows, as measured

    def measure_here(blockings, budget, report):
        for b in blockings:
            report(b, {f"{kind} {n}": 1 / (1 + (b.rows == favourite["rows"]))
                       for kind in tuning.KINDS for n in tuning.LANES})

    monkeypatch.setattr(tuning, "_measure_here", measure_here)
    monkeypatch.setattr(tuning, "candidates", lambda: [tuning.Blocking(4, 2, "columns"),
                                                       tuning.Blocking(8, 2, "columns")])
    monkeypatch.setattr(tuning.os, "cpu_count", lambda: 1)
    assert main(["tune"]) == 0                         # nothing recorded: measured
    assert "measuring" in capsys.readouterr().err
    assert tuning.chosen()["forward"].rows == 4
    favourite["rows"] = 8
    assert main(["tune"]) == 0                         # recorded: shown, not measured
    assert "measuring" not in capsys.readouterr().err
    assert tuning.chosen()["forward"].rows == 4
    index.write_text("")
    marker.write_text("")
    assert main(["tune", "--again"]) == 0
    assert tuning.chosen()["forward"].rows == 8
    assert not index.exists() and not marker.exists() and code.exists()
