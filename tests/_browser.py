"""Which Chromium the browser tests drive: $CHARNN_CHROMIUM, else Debian's `chromium` (or
another Chromium or Chrome on the PATH); none found, the tests are skipped with the reason."""

from __future__ import annotations

import os
import shutil

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
              "chrome", "headless_shell")


def find_chromium() -> str | None:
    chosen = os.environ.get("CHARNN_CHROMIUM")
    if chosen:
        return chosen
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    for path in ("/usr/bin/chromium", "/usr/lib/chromium/chromium", "/snap/bin/chromium"):
        if os.access(path, os.X_OK):
            return path
    return None


CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium found (install Debian's `chromium` package, or set "
                             "CHARNN_CHROMIUM to a Chromium or Chrome binary)")
