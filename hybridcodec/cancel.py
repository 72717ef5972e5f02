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

Before any of that exists (start-up: the interpreter loading the CLI, then numba and the
rest of the codec, a second or more), there is nothing to clean up, and an exception
would have to travel through other packages' import code: :func:`exit_on_signal` ends
the process at once instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
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


#: Exit status for a signal, as a shell reports a process it ended: 128 + number.
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def exit_on_signal(prog: str) -> dict:
    """Make SIGINT / SIGTERM end the process at once: one line ``<prog>: interrupted``
    (or ``terminated``) on stderr and exit status 130 (143), no traceback, no cleanup.

    Only for start-up, while nothing exists that would need cleaning up. Signals the
    caller ignores stay ignored; outside the main thread this does nothing. Returns the
    handlers it replaced, for :func:`signal.signal` to put back."""
    def handler(signum, frame):
        word = "terminated" if signum == signal.SIGTERM else "interrupted"
        try:
            os.write(2, f"{prog}: {word}\n".encode())
        finally:
            os._exit(SIGNAL_EXIT.get(signum, 128 + signum))

    previous = {}
    for sig in SIGNAL_EXIT:
        try:
            if signal.getsignal(sig) is signal.SIG_IGN:
                continue
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread of the main interpreter
            pass
    return previous
