"""Where charnn keeps files of its own: the converted corpus and the compiled kernels (and
the CPU they are compiled for)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """A writable folder for caches: $CHARNN_CACHE_DIR, else $XDG_CACHE_HOME/charnn, else
    ~/.cache/charnn, else a folder under the system's temporary directory."""
    candidates = []
    if os.environ.get("CHARNN_CACHE_DIR"):
        candidates.append(Path(os.environ["CHARNN_CACHE_DIR"]))
    xdg = os.environ.get("XDG_CACHE_HOME")
    candidates.append(Path(xdg) / "charnn" if xdg else Path.home() / ".cache" / "charnn")
    candidates.append(Path(tempfile.gettempdir()) / f"charnn-{os.getuid()}")
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / ".write-test"
            probe.touch()
            probe.unlink()
            return folder
        except OSError:
            continue
    raise OSError("no writable cache folder; set CHARNN_CACHE_DIR to one")


def compile_target() -> str:
    """The CPU that numba generates code for, as a short key: the host's, or the one that
    NUMBA_CPU_NAME and NUMBA_CPU_FEATURES name. numba keys its cached code by it, so the
    files that say "compiled" must be keyed by it too, or a compile for another CPU would go
    unannounced."""
    import hashlib

    import numba
    from llvmlite import binding
    name = numba.config.CPU_NAME or binding.get_host_cpu_name()
    features = numba.config.CPU_FEATURES
    if features is None:
        features = binding.get_host_cpu_features().flatten()
    return f"{name}-{hashlib.sha256(features.encode()).hexdigest()[:8]}"
