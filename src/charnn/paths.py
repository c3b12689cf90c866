"""Where charnn keeps files of its own: the converted corpus and the compiled kernels."""

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
