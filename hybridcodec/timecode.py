"""Positions in a stream as flac's ``--skip`` / ``--until`` give them, resolved to samples.

The syntax follows flac's (``flac --skip=#|mm:ss.ss --until=#|[+|-]mm:ss.ss``):

* ``N``: a sample number (per channel), e.g. ``441000``;
* ``M:SS.SS``: minutes and seconds, e.g. ``1:30``, ``0:12.5``, ``90:00`` (any number of
  minutes; the seconds may exceed 59 and take ``.`` or ``,`` as the decimal mark); a time
  becomes the sample it falls in, ``floor(seconds * sample_rate)``, computed exactly;
* ``until`` only: a leading ``-`` counts back from the end (``-0:10``: the last ten
  seconds; ``-0``: the end), a leading ``+`` forward from ``skip`` (``+0:10``: ten
  seconds from the skip point).

The range is ``[skip, until)``: ``skip`` must lie inside the stream and ``until`` after
``skip``, at most at the end. No numpy here: the command line checks the syntax before it
loads the codec.
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass
from fractions import Fraction

from .errors import UsageError

_SAMPLES = re.compile(r"[0-9]+")
_TIME = re.compile(r"([0-9]+):([0-9]*[.,]?[0-9]*)")

SYNTAX = "a sample number N or a time M:SS.SS"


@dataclass(frozen=True)
class Position:
    """A parsed position: ``samples`` or ``seconds`` (exactly one is set); ``sign`` is
    ``""`` (absolute), ``"+"`` (after skip) or ``"-"`` (before the end)."""

    text: str
    sign: str = ""
    samples: int | None = None
    seconds: Fraction | None = None

    def offset(self, sample_rate: int) -> int:
        """The position's magnitude in samples (a time rounded down to a whole sample)."""
        if self.samples is not None:
            return self.samples
        return int(self.seconds * sample_rate // 1)


def parse(text: str, what: str = "until") -> Position:
    """Parse ``text`` (see the module docstring); ``what`` is ``"skip"`` (no sign
    allowed) or ``"until"``. A one-line :class:`UsageError` for anything else."""
    body = text.strip()
    sign = ""
    if body[:1] in "+-" and body:
        sign, body = body[0], body[1:]
    if sign and what == "skip":
        raise UsageError(f"skip {text!r}: skip is a position from the start, without a sign "
                         f"({SYNTAX})")
    if _SAMPLES.fullmatch(body):
        return Position(text, sign, samples=int(body))
    m = _TIME.fullmatch(body)
    if m and any(c.isdigit() for c in m.group(2)):
        seconds = Fraction(m.group(2).replace(",", ".")) + 60 * int(m.group(1))
        return Position(text, sign, seconds=seconds)
    hint = ""
    try:
        float(body)
        if "." in body or "," in body:
            hint = f"; for {body} seconds write 0:{body}"
    except ValueError:
        pass
    signs = ", with - to count from the end or + from skip" if what == "until" else ""
    raise UsageError(f"{what} {text!r}: not {SYNTAX}{signs}{hint}")


def _position(value, what: str) -> Position | None:
    """A Python API value: None, an int (samples; ``until`` < 0 counts from the end) or a
    string in the command line's syntax."""
    if value is None:
        return None
    if isinstance(value, str):
        return parse(value, what)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(f"{what} must be a sample number (int) or a time string such as "
                         f"'1:30' or '0:12.5', got {value!r}")
    value = int(value)
    if value < 0:
        if what == "skip":
            raise UsageError(f"skip must not be negative, got {value}")
        return Position(str(value), "-", samples=-value)
    return Position(str(value), samples=value)


def _describe(samples: int, sample_rate: int) -> str:
    return f"{samples} samples, {samples / sample_rate:.2f} s" if sample_rate else \
        f"{samples} samples"


def _at(sample: int, sample_rate: int) -> str:
    return f"sample {sample}, {sample / sample_rate:.2f} s" if sample_rate else \
        f"sample {sample}"


def resolve(skip, until, num_samples: int, sample_rate: int) -> tuple[int, int]:
    """``(start, stop)`` in samples for ``skip`` and ``until`` (None: the start and the
    end; ints are samples, a negative ``until`` counts from the end; strings as on the
    command line). A :class:`UsageError` for a range outside the stream or an empty one."""
    skip_p, until_p = _position(skip, "skip"), _position(until, "until")
    length = _describe(num_samples, sample_rate)
    start = 0 if skip_p is None else skip_p.offset(sample_rate)
    if skip_p is not None and start >= num_samples and (start or num_samples):
        raise UsageError(f"skip {skip_p.text} ({_at(start, sample_rate)}) is at or past the "
                         f"end of the stream ({length})")
    if until_p is None:
        return start, num_samples
    amount = until_p.offset(sample_rate)
    if until_p.sign == "-":
        stop = num_samples - amount
        if amount == 0:
            return start, num_samples  # flac's -0: the end
        if stop < 0:
            raise UsageError(f"until {until_p.text} lies before the start of the stream "
                             f"({length})")
    elif until_p.sign == "+":
        stop = start + amount
    else:
        stop = amount
    if stop > num_samples:
        raise UsageError(f"until {until_p.text} ({_at(stop, sample_rate)}) is past the end "
                         f"of the stream ({length})")
    if stop <= start:
        raise UsageError(f"until {until_p.text} (sample {stop}) is not after skip "
                         f"(sample {start}): the range would be empty")
    return start, stop
