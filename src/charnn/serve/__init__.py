"""`charnn serve`: watch training, play with a model and look inside it, in the browser.

The web server is an optional extra (`pip install "charnn[serve]"`: Starlette and uvicorn);
the rest of charnn does not need it. The page is plain HTML, CSS and JavaScript shipped in
charnn/web/, served by the app itself: nothing is fetched from elsewhere.
"""

from __future__ import annotations

from ..errors import CharnnError

INSTALL_HINT = 'charnn serve needs the web server extra: pip install "charnn[serve]"'


def require_extra() -> None:
    """Raise a CharnnError naming the install command when Starlette or uvicorn is missing."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise CharnnError(INSTALL_HINT) from None
