"""Cooperative interruption: a signal stops the codec between two frames, never inside one.

A Python signal handler that raises runs in whatever frame the main thread is in. While
frames are being coded that is often C code calling back into Python: numba's
dispatcher, llvmlite's cache callbacks, soundfile's I/O callbacks. There an exception is
swallowed ("Exception ignored ...", and the run goes on to write its output) or turned
into a ``SystemError``. So the CLI's SIGINT/SIGTERM handler calls :func:`interrupt`:
outside :func:`deferred` sections it raises at once, as usual; inside them (the codec's
entry points) it only records the exception, and :func:`checkpoint`, called between
frames, raises it. A frame takes a fraction of a second, so the delay is short; the
exception then unwinds through the usual cleanup (temporary files, worker processes).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

_depth = 0
_pending: BaseException | None = None


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within this block :func:`interrupt` records instead of raising."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1


def interrupt(exc: BaseException) -> None:
    """Called from a signal handler: raise ``exc`` now, or at the next :func:`checkpoint`."""
    global _pending
    if _depth:
        if _pending is None:
            _pending = exc
        return
    raise exc


def checkpoint() -> None:
    """Raise the interrupt recorded by :func:`interrupt`, if any (once)."""
    global _pending
    exc, _pending = _pending, None
    if exc is not None:
        raise exc


def reset() -> None:
    """Forget a recorded interrupt (the CLI calls this when it returns)."""
    global _pending
    _pending = None
