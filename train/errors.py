"""Errors a user of the training tools can cause, and how the entry points report them.

Every bad input (a config value, a missing data folder, a bad checkpoint or model file)
raises a :class:`TrainingError` with a message that fits on one line and says how to fix
it; ``python -m train``, ``train.export``, ``train.evaluate`` and ``train.fit_priors``
print it as ``PROG: message`` and exit with its ``exit_code`` (the codes follow
``hybridcodec``'s CLI).
:func:`report` also turns Hydra's, OmegaConf's and Lightning's configuration errors and the
codec's own errors into that one line. ``HYBRIDCODEC_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable

from hybridcodec.errors import HybridCodecError


class TrainingError(Exception):
    """A bad configuration value or option (exit status 2)."""

    exit_code = 2


class DataError(TrainingError):
    """Training or evaluation audio that is missing or unusable (exit status 3)."""

    exit_code = 3


class CheckpointError(TrainingError):
    """A checkpoint or model file that cannot be used (exit status 5)."""

    exit_code = 5


def positive_int(text: str) -> int:
    """argparse type of the counts the entry points take (--frames, --max-files, ...)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def one_line(message: str) -> str:
    """``message`` on one line: its non-empty lines joined, Hydra's search-path listing dropped."""
    message = message.split("\nConfig search path", 1)[0]
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def describe(exc: BaseException) -> tuple[str, int]:
    """(one-line message, exit status) for an exception escaping a training tool."""
    from hydra.errors import HydraException, InstantiationException, OverrideParseException
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        # "Error in call to target 'X': <cause> full_key: trainer": the cause is what the
        # user has to fix, the key says where.
        cause, status = describe(exc.__cause__)
        key = re.search(r"full_key: (\S+)", str(exc))
        if isinstance(exc.__cause__, (TrainingError, HybridCodecError)) or key is None:
            return cause, status
        return f"{key.group(1)}: {cause}", 2
    if isinstance(exc, (TrainingError, HybridCodecError)):
        return one_line(str(exc)), exc.exit_code
    if isinstance(exc, OverrideParseException):
        return f"bad override {exc.override!r}: {one_line(exc.message)}", 2
    if isinstance(exc, (HydraException, OmegaConfBaseException, MisconfigurationException)):
        text = one_line(str(exc))
        if isinstance(exc.__cause__, OmegaConfBaseException):
            text += f" ({str(exc.__cause__).splitlines()[0]})"
        return text, 2
    if _raised_in(exc, ("hydra.", "omegaconf.")):  # e.g. 'logger=null' (a group is dropped with ~logger)
        hint = " (drop a config group with ~GROUP, e.g. ~logger)" if "Got NoneType" in str(exc) else ""
        return one_line(str(exc)) + hint, 2
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename or ''}{': ' if exc.filename else ''}{exc.strerror}", 1
    # Not one of ours: say what it is; the traceback is one environment variable away.
    return (f"{type(exc).__name__}: {one_line(str(exc))} "
            "(HYBRIDCODEC_DEBUG=1 shows the traceback)"), 1


def _raised_in(exc: BaseException, packages: tuple[str, ...]) -> bool:
    """Whether ``exc`` was raised by code of one of ``packages`` (module name prefixes)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).startswith(packages)


def report(prog: str, run: Callable[[], int | None]) -> int:
    """Run an entry point; an error becomes ``PROG: message`` on stderr and its exit status."""
    if os.environ.get("HYBRIDCODEC_DEBUG"):
        return run() or 0
    try:
        return run() or 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the entry point's one-line report
        message, status = describe(exc)
        print(f"{prog}: {message}", file=sys.stderr)
        return status
