"""The safetensors file format, read and written with numpy alone: loading runs no code.

A file is (https://github.com/huggingface/safetensors, "Format"):

    8 bytes      N, the header's length, an unsigned little-endian 64-bit integer
    N bytes      a JSON object: {name: {"dtype": "F32", "shape": [...], "data_offsets":
                 [begin, end]}, ..., "__metadata__": {str: str}}, padded with spaces
    the rest     the tensors' bytes, little-endian, C order; offsets count from here

Tensors are written one after another in name order (so the same model gives the same file),
the header padded to a multiple of 8 bytes so that every tensor starts aligned. Reading checks
what a damaged or hostile file could get wrong before numpy sees any of it: the header's
length, its JSON, each entry's dtype and shape, and that the offsets match the shapes and tile
the data exactly (no gaps, no overlaps, nothing past the end).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import CharnnError

DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
          "I8": "i1", "U8": "u1", "BOOL": "?"}
_CODES = {np.dtype(v): k for k, v in DTYPES.items()}
# A header longer than this is not a model's (charnn's are a few kilobytes).
MAX_HEADER = 100 << 20


def write(path: str | Path, tensors: dict[str, np.ndarray],
          metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` (name -> array) and string `metadata` to `path`, atomically."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        if a.dtype not in _CODES:
            raise ValueError(f"safetensors has no dtype for {a.dtype} ({name})")
        blob = a.tobytes()
        header[name] = {"dtype": _CODES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(len(text).to_bytes(8, "little"))
            f.write(text)
            for blob in blobs:
                f.write(blob)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; a damaged one raises one CharnnError."""
    path = Path(path)

    def bad(problem: str):
        raise CharnnError(f"{path} is not a readable safetensors file ({problem}); export the "
                          "model again (charnn export RUN OUT_DIR)")

    raw = path.read_bytes()
    if len(raw) < 8:
        bad("shorter than its 8-byte header length")
    n = int.from_bytes(raw[:8], "little")
    if n > MAX_HEADER or 8 + n > len(raw):
        bad(f"its header claims {n:,} bytes of a {len(raw):,}-byte file")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        bad("its header is not JSON text")
    if not isinstance(header, dict):
        bad("its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        bad("its __metadata__ is not an object of strings")
    data = memoryview(raw)[8 + n:]
    tensors, spans = {}, []
    for name, entry in header.items():
        if not isinstance(entry, dict) or entry.get("dtype") not in DTYPES:
            bad(f"tensor {name!r} has no dtype this reader knows")
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool)
                                                and d >= 0 for d in shape)):
            bad(f"tensor {name!r} has shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= len(data)):
            bad(f"tensor {name!r} has data offsets {offsets!r} outside the file")
        dtype = np.dtype(DTYPES[entry["dtype"]])
        if offsets[1] - offsets[0] != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            bad(f"tensor {name!r} has {offsets[1] - offsets[0]} bytes for shape {shape}")
        tensors[name] = np.frombuffer(data[offsets[0]:offsets[1]], dtype).reshape(shape) \
            .astype(dtype.newbyteorder("="))              # a native-order copy of its own
        spans.append(tuple(offsets))
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            bad("its tensors overlap or leave gaps")
        end = stop
    if end != len(data):
        bad("bytes follow its last tensor")
    return tensors, metadata
